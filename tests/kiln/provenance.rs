//! Data copied into the repository says where it came from: each provenance note lists the sha256 of
//! every file beside it, and those are the files' digests. And the repository stands alone: nothing in
//! it reads the workspace's shared folder it was once developed next to (docs/design.md §2, principle 22).

use std::path::Path;

use crate::support::repo_root;

/// Directories of copied data, each with a README.md that lists `SHA256  FILE` lines.
const NOTED: &[&str] = &[
    "tests/reference/cloud-init",
    "tests/reference/sarif",
    "assets/cloud-init",
    "assets/keys",
    "tests/data/kamal-docs",
];

/// The `SHA256  FILE` lines of a note, as `sha256sum` writes them.
fn listed(note: &str) -> Vec<(String, String)> {
    note.lines()
        .filter_map(|line| line.split_once("  "))
        .filter(|(hash, _)| hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
        .map(|(hash, file)| (hash.to_string(), file.to_string()))
        .collect()
}

#[test]
fn every_copied_file_has_its_current_sha256_in_the_note_beside_it() {
    for dir in NOTED {
        let dir = repo_root().join(dir);
        let note = std::fs::read_to_string(dir.join("README.md")).expect("a provenance note");
        let listed = listed(&note);
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name != "README.md")
            .collect();
        files.sort();
        let mut named: Vec<String> = listed.iter().map(|(_, file)| file.clone()).collect();
        named.sort();
        assert_eq!(named, files, "{}/README.md must list the sha256 of every file there", dir.display());
        for (hash, file) in listed {
            let actual = kiln::encoding::sha256_hex(std::fs::read(dir.join(&file)).unwrap());
            assert_eq!(actual, hash, "{}: the note's sha256 is stale", dir.join(&file).display());
        }
    }
}

#[test]
fn nothing_reads_outside_the_repository() {
    let shared = ["/work/", "shared/"].concat();
    let relative = ["../", "shared"].concat();
    let mut offenders = Vec::new();
    for top in ["src", "tests", "benches", "vm-tests", "scripts", "images", ".ci", "templates", "profiles"] {
        visit(&repo_root().join(top), &mut |path, text| {
            if text.contains(&shared) || text.contains(&relative) {
                offenders.push(path.display().to_string());
            }
        });
    }
    assert!(offenders.is_empty(), "these files refer to a folder outside the repository: {offenders:?}");
}

/// Every regular file under `path`, symlinks not followed.
fn visit(path: &Path, check: &mut dyn FnMut(&Path, &str)) {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return };
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            visit(&entry.unwrap().path(), check);
        }
    } else if meta.is_file()
        && let Ok(text) = std::fs::read_to_string(path)
    {
        check(path, &text);
    }
}
