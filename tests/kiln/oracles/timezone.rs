//! timezone: the release's tzdata has the user-data's zone as a TZif file, which is what cloud-init
//! 22.4.2 requires (`_find_tz_file`: /usr/share/zoneinfo/ZONE must be a file) and glibc reads.

use super::sandbox::{self, Mode};
use super::{Prepared, Verdicts, distinct, per_case};

const TZIF_MAGIC: &str = "TZif";

pub fn check(cases: &[Prepared]) -> Verdicts {
    let (zones, of_case) = distinct(cases.iter().map(|c| c.data.str("timezone").map(str::to_string)).collect());
    let outputs = sandbox::run("timezone.sh", Mode::Once, &zones, |input, zone| input.write("zone", zone));
    let verdicts: Vec<Vec<String>> = zones
        .iter()
        .zip(&outputs)
        .map(|(zone, out)| {
            if out.record("file").rc != 0 {
                vec![format!("/usr/share/zoneinfo/{zone} is not a file: cloud-init refuses time zone {zone:?}")]
            } else if out.record("magic").out != TZIF_MAGIC {
                vec![format!("/usr/share/zoneinfo/{zone} is not a TZif file: {zone:?} is not a zone")]
            } else {
                Vec::new()
            }
        })
        .collect();
    per_case(&of_case, &verdicts)
}
