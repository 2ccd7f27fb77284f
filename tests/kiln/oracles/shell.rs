//! shell: the release's bash parses every script kiln ships (`bash -n`): the provisioning script and
//! every other file under /usr/local/lib/kiln/.

use super::sandbox::{self, Mode};
use super::{Prepared, Verdicts, distinct};

const SCRIPTS_DIR: &str = "/usr/local/lib/kiln/";

pub fn check(cases: &[Prepared]) -> Verdicts {
    // (case, path, body) for every script of every case, each distinct body judged once.
    let scripts: Vec<(usize, &str, &[u8])> = cases
        .iter()
        .enumerate()
        .flat_map(|(i, c)| c.data.files_under(&[SCRIPTS_DIR]).map(move |f| (i, f.path.as_str(), f.content.as_slice())))
        .collect();
    let (bodies, of_script) = distinct(scripts.iter().map(|(_, _, body)| Some(*body)).collect());
    let outputs = sandbox::run("shell.sh", Mode::Once, &bodies, |input, body| input.write("script", body));
    let mut verdicts: Verdicts = cases
        .iter()
        .map(|c| match c.data.script() {
            Some(_) => Vec::new(),
            None => vec![format!("no provisioning script ({}*) in write_files", kiln::lower::PROVISION_PATH)],
        })
        .collect();
    for ((case, path, _), k) in scripts.iter().zip(of_script) {
        let syntax = outputs[k.expect("every script has a body")].record("syntax");
        if !syntax.clean() {
            verdicts[*case].push(format!("bash -n {path}: {}", syntax.said()));
        }
    }
    verdicts
}
