//! cloudflared compiles an ingress rule's `path` with Go's `regexp` and refuses its whole
//! configuration when that fails. Go's own `regexp` (Debian's golang-go, `tests/oracles/go-regexp.go`)
//! judges every path regex kiln accepts: the ones in the golden, example and VM profiles, the
//! generator's, a list of constructs where Go's syntax and Rust's differ, and 2,000 patterns made of
//! random pieces of those.

use std::io::Write as _;
use std::process::{Command, Stdio};

use kiln::consumers::cloudflared::check_path_regex;

use crate::support::{example_profiles, golden_cases, repo_root, require_tool, vm_profiles};

/// Constructs on the edge between Go's RE2 syntax and Rust's.
const EDGES: &[&str] = &[
    r"^/api/v[0-9]+/",
    r"(?i)^/ADMIN",
    r"(?s).",
    r"(?m)^x$",
    r"(?U)a+",
    r"(?i:a)b",
    r"(?P<name>x)",
    r"(?<name>x)",
    r"\Qa.b\E",
    r"\z",
    r"\A",
    r"\Z",
    r"\b\B",
    r"\<",
    r"\b{start}",
    r"[[:alpha:]]",
    r"[[:word:]]",
    r"\pL",
    r"\p{Lu}",
    r"\p{Greek}",
    r"\p{Letter}",
    r"\PN",
    r"[a-z&&[^c]]",
    r"[a--b]",
    r"[\d\s]",
    r"a{1000}",
    r"a{1001}",
    r"a{2}{3}",
    r"a**",
    r"a++",
    r"a*?",
    r"(a)\1",
    r"(?=x)",
    r"\x41",
    r"\x{10FFFF}",
    r"\u0041",
    r"\0",
    r"\8",
    r"\-",
    r"\!",
    r"\%",
    r"[\[\]]",
    r"a|",
    r"()",
    r"(?i)",
    r"(?x) a",
    r"(?u)a",
    r"(?R)$",
    r"\C",
    r".\.well-known/acme",
    "",
];

/// Atoms and operators combined into generated patterns (with `EDGES`).
const PIECES: &[&str] = &[
    "a", "/", ".", "^", "$", "*", "+", "?", "{2}", "{1,3}", "(", ")", "[", "]", "|", "\\", "-", "(?i)", "(?:", "\\d",
    "\\w", "\\.", "[a-z]", "[^/]", "\\pL", "\\x41", "?", "*?",
];

/// Patterns made of 1-6 random pieces, the same on every run.
fn generated(count: usize) -> Vec<String> {
    let mut state: u64 = 0x0c10_0df1;
    let mut next = |n: usize| {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) % n as u64) as usize
    };
    (0..count)
        .map(|_| {
            let pieces = 1 + next(6);
            (0..pieces)
                .map(|_| if next(4) == 0 { EDGES[next(EDGES.len())] } else { PIECES[next(PIECES.len())] })
                .collect()
        })
        .collect()
}

/// Compiles each pattern with Go's `regexp`: "" where it compiles, Go's error otherwise.
fn go_compile(patterns: &[String]) -> Vec<String> {
    let program = repo_root().join("tests/oracles/go-regexp.go");
    let mut child = Command::new(require_tool("go"))
        .arg("run")
        .arg(&program)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("go runs");
    let input = serde_json::to_vec(patterns).unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "go-regexp failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("go-regexp prints a JSON list")
}

/// Every ingress path in the repository's profiles.
fn profile_paths() -> Vec<String> {
    let profiles =
        golden_cases().into_iter().map(|c| c.join("profile.yaml")).chain(example_profiles()).chain(vm_profiles());
    let mut paths = Vec::new();
    for path in profiles {
        // The binary and non-UTF-8 golden cases have no ingress to read.
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let Some(raw) = kiln::profile::parse(&text).raw else { continue };
        let rules = raw.cloudflared.and_then(|c| c.ingress).unwrap_or_default();
        paths.extend(rules.into_iter().filter_map(|r| r.path));
    }
    paths
}

#[test]
fn go_compiles_every_path_regex_kiln_accepts() {
    let mut patterns: Vec<String> = profile_paths();
    patterns.extend(crate::generated::REGEXES.iter().chain(crate::generated::BAD_REGEXES).map(|s| s.to_string()));
    patterns.extend(EDGES.iter().map(|s| s.to_string()));
    patterns.extend(generated(2000));
    patterns.sort();
    patterns.dedup();
    let verdicts = go_compile(&patterns);
    let mut accepted = 0;
    let mut problems = Vec::new();
    let mut stricter = Vec::new();
    for (pattern, go) in patterns.iter().zip(&verdicts) {
        match (check_path_regex(pattern), go.is_empty()) {
            (Ok(()), true) => accepted += 1,
            (Ok(()), false) => problems.push(format!("kiln accepts `{pattern}`, Go says: {go}")),
            (Err(_), true) => stricter.push(pattern.as_str()),
            (Err(_), false) => {}
        }
    }
    eprintln!("{accepted} path regexes accepted by kiln and by Go; kiln also refuses what Go takes: {stricter:?}");
    assert!(problems.is_empty(), "cloudflared would refuse its configuration:\n{}", problems.join("\n"));
    assert!(accepted >= 15, "only {accepted} accepted patterns: the comparison means little");
}

#[test]
fn the_go_oracle_rejects_what_go_cannot_compile() {
    let verdicts = go_compile(&["(".to_string(), "^/ok$".to_string()]);
    assert!(verdicts[0].contains("missing closing )"), "{verdicts:?}");
    assert_eq!(verdicts[1], "");
}
