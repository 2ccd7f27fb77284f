//! The source's layering, read from the source itself: which file imports which (`use crate::…`,
//! `super::…` and inline `crate::…` paths), so the rules of docs/design.md are checked, not hoped for.
//! Nothing under `src/effects/` reaches the command line, and no two files import each other, directly
//! or through others.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::support::repo_root;

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file (`src/effects/vm/bake.rs` → `effects::vm::bake`; `mod.rs` is its directory).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib" || p == "main") {
        parts.pop();
    }
    parts
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The module paths a source text names: `crate::a::b::{c, d::e}` gives `a::b::c` and `a::b::d::e`;
/// `super::x` is resolved against `module`. Comments are skipped.
fn referenced_paths(text: &str, module: &[String]) -> Vec<Vec<String>> {
    let code: String = text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    let mut found = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let starts = |word: &str| bytes[i..].iter().take(word.len()).copied().eq(word.chars());
        let at_boundary = i == 0 || !is_ident(bytes[i - 1]);
        let (base, skip) = if at_boundary && starts("crate::") {
            (Vec::new(), "crate::".len())
        } else if at_boundary && starts("super::") {
            // The parent module: for `a/b.rs` and for `a/b/mod.rs` alike (module `a::b`), `a`.
            let mut parent = module.to_vec();
            parent.pop();
            (parent, "super::".len())
        } else {
            i += 1;
            continue;
        };
        i += skip;
        let (paths, end) = parse_tree(&bytes, i, base);
        found.extend(paths);
        i = end.max(i + 1);
    }
    found
}

/// Parses `a::b::{c, d::e}` (or a plain path) starting at `i`, after a `crate::`/`super::` prefix.
fn parse_tree(chars: &[char], mut i: usize, mut prefix: Vec<String>) -> (Vec<Vec<String>>, usize) {
    loop {
        if chars.get(i) == Some(&'{') {
            let mut paths = Vec::new();
            i += 1;
            loop {
                while chars.get(i).is_some_and(|c| c.is_whitespace() || *c == ',') {
                    i += 1;
                }
                if chars.get(i).is_none_or(|c| *c == '}') {
                    return (paths, i + 1);
                }
                let (inner, end) = parse_tree(chars, i, prefix.clone());
                paths.extend(inner);
                i = end;
                // Skip `as name` and anything else up to the next item.
                while chars.get(i).is_some_and(|c| *c != ',' && *c != '}') {
                    i += 1;
                }
            }
        }
        let start = i;
        while chars.get(i).is_some_and(|c| is_ident(*c)) {
            i += 1;
        }
        prefix.push(chars[start..i].iter().collect());
        if chars.get(i) == Some(&':') && chars.get(i + 1) == Some(&':') {
            i += 2;
            continue;
        }
        return (vec![prefix], i);
    }
}

/// The source file a module path lands in: its longest prefix that is a file of the crate.
fn file_of(files: &BTreeMap<Vec<String>, PathBuf>, path: &[String]) -> Option<PathBuf> {
    (1..=path.len()).rev().find_map(|n| files.get(&path[..n]).cloned())
}

/// File → the files it imports (itself excluded).
fn import_graph() -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let src = repo_root().join("src");
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    let files: BTreeMap<Vec<String>, PathBuf> =
        paths.iter().filter(|p| !p.ends_with("main.rs")).map(|p| (module_of(&src, p), p.clone())).collect();
    let mut graph = BTreeMap::new();
    for (module, file) in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let targets: BTreeSet<PathBuf> = referenced_paths(&text, module)
            .iter()
            .filter_map(|p| file_of(&files, p))
            .filter(|target| target != file)
            .collect();
        graph.insert(file.clone(), targets);
    }
    graph
}

fn relative(path: &Path) -> String {
    path.strip_prefix(repo_root()).unwrap_or(path).display().to_string()
}

#[test]
fn the_parser_finds_grouped_nested_and_super_imports() {
    let module: Vec<String> = vec!["effects".into(), "vm".into(), "bake".into()];
    let text = "use crate::{cloud_config, lower::{self, Stage}};\nuse super::qemu::Accel; // crate::cli\nlet x = crate::seed::f();";
    let found: Vec<String> = referenced_paths(text, &module).iter().map(|p| p.join("::")).collect();
    for expected in ["cloud_config", "lower::self", "lower::Stage", "effects::vm::qemu::Accel", "seed::f"] {
        assert!(found.iter().any(|f| f == expected), "{expected} in {found:?}");
    }
    assert!(!found.iter().any(|f| f.starts_with("cli")), "comments are not imports: {found:?}");
}

#[test]
fn nothing_under_effects_reaches_the_command_line() {
    let src = repo_root().join("src");
    let front =
        [src.join("cli.rs"), src.join("commands/mod.rs"), src.join("commands/output.rs"), src.join("commands/vm.rs")];
    let graph = import_graph();
    assert!(graph.len() > 50, "the graph has every file: {}", graph.len());
    for (file, targets) in &graph {
        if file.starts_with(src.join("effects")) {
            let bad: Vec<String> = targets.iter().filter(|t| front.contains(t)).map(|t| relative(t)).collect();
            assert!(bad.is_empty(), "{} imports the command line: {bad:?}", relative(file));
        }
    }
    // The control: the command line does reach effects, so the parser sees real imports.
    assert!(graph[&src.join("commands/vm.rs")].iter().any(|t| t.starts_with(src.join("effects"))));
}

/// Files in a cycle of imports, each cycle as the files on it.
fn cycles(graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<Vec<String>> {
    // Tarjan's strongly connected components: a component of more than one file is a cycle.
    struct State<'a> {
        graph: &'a BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        index: BTreeMap<&'a PathBuf, usize>,
        low: BTreeMap<&'a PathBuf, usize>,
        stack: Vec<&'a PathBuf>,
        on_stack: BTreeSet<&'a PathBuf>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, node: &'a PathBuf) {
        let n = s.index.len();
        s.index.insert(node, n);
        s.low.insert(node, n);
        s.stack.push(node);
        s.on_stack.insert(node);
        for next in s.graph.get(node).into_iter().flatten() {
            let Some((next, _)) = s.graph.get_key_value(next) else { continue };
            if !s.index.contains_key(next) {
                visit(s, next);
                let low = s.low[next].min(s.low[node]);
                s.low.insert(node, low);
            } else if s.on_stack.contains(next) {
                let low = s.index[next].min(s.low[node]);
                s.low.insert(node, low);
            }
        }
        if s.low[node] == s.index[node] {
            let mut component = Vec::new();
            while let Some(top) = s.stack.pop() {
                s.on_stack.remove(top);
                component.push(relative(top));
                if top == node {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node) {
            visit(&mut state, node);
        }
    }
    state.found
}

#[test]
fn the_cycle_finder_finds_a_cycle_it_is_shown() {
    let p = |s: &str| repo_root().join(s);
    let graph: BTreeMap<PathBuf, BTreeSet<PathBuf>> = [
        (p("a.rs"), [p("b.rs")].into()),
        (p("b.rs"), [p("c.rs")].into()),
        (p("c.rs"), [p("a.rs")].into()),
        (p("d.rs"), [p("a.rs")].into()),
    ]
    .into();
    assert_eq!(cycles(&graph), vec![vec!["a.rs".to_string(), "b.rs".into(), "c.rs".into()]]);
}
#[test]
fn no_two_files_import_each_other() {
    let found = cycles(&import_graph());
    assert!(found.is_empty(), "files in import cycles: {found:#?}");
}

#[test]
fn the_command_line_module_holds_clap_types_and_dispatch_only() {
    let text = std::fs::read_to_string(repo_root().join("src/cli.rs")).unwrap();
    let code = text.split("#[cfg(test)]").next().unwrap();
    let functions: Vec<&str> =
        code.lines().filter(|l| l.trim_start().starts_with("pub fn ") || l.trim_start().starts_with("fn ")).collect();
    assert_eq!(functions.len(), 1, "only `run` (dispatch) in src/cli.rs: {functions:?}");
    assert!(functions[0].contains("pub fn run("), "{functions:?}");
}
