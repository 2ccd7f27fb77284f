//! locale: cloud-init 22.4.2's commands for the user-data's locale on Debian (`locale-gen`, then
//! `update-locale --locale-file=/etc/default/locale LANG=…`) succeed in the release, with the
//! user-data's /etc/locale.gen in place. Each distinct (locale, locale.gen) once: localedef is slow.

use super::sandbox::{self, Mode};
use super::userdata::File;
use super::{Prepared, Verdicts, distinct, per_case};

/// Files that decide what locale-gen generates and what update-locale starts from.
const LOCALE_FILES: &[&str] = &["/etc/locale.gen", "/etc/default/locale"];

pub fn check(cases: &[Prepared]) -> Verdicts {
    let inputs = cases
        .iter()
        .map(|c| {
            let locale = c.data.str("locale")?.to_string();
            let files: Vec<File> = c.data.files_under(LOCALE_FILES).filter(|f| !f.defer).cloned().collect();
            Some((locale, files))
        })
        .collect();
    let (keys, of_case) = distinct(inputs);
    let outputs = sandbox::run("locale.sh", Mode::Each, &keys, |input, (locale, files)| {
        input.write("locale", locale);
        input.files(files);
    });
    let verdicts: Vec<Vec<String>> = keys
        .iter()
        .zip(&outputs)
        .map(|((locale, files), out)| {
            let mut failures = Vec::new();
            let written = if files.iter().any(|f| f.path == "/etc/locale.gen") {
                "with the user-data's /etc/locale.gen"
            } else {
                "with the release's /etc/locale.gen (nothing uncommented)"
            };
            if let Some(generate) = out.maybe_record("gen").filter(|r| !r.clean()) {
                failures.push(format!("locale-gen {locale} {written}: {}", generate.said()));
            }
            let update = out.record("update");
            if !update.clean() {
                failures.push(format!(
                    "update-locale --locale-file=/etc/default/locale LANG={locale} {written}: {}",
                    update.said()
                ));
            }
            failures
        })
        .collect();
    per_case(&of_case, &verdicts)
}
