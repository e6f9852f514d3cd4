//! The library's layers, enforced: each module imports only from its own layer or the ones
//! below, and no modules import each other in a circle (ARCHITECTURE.md draws the layers).
//!
//! It reads `lem/src` as text: every `crate::…`, `super::…` and child-module path outside
//! comments and test modules is an import. `lib.rs` (the facade that re-exports) and the
//! binary (which sees only the public API) are exempt.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layers from the bottom; a module may import from its own rank or below.
fn rank(module: &str) -> Option<u8> {
    let top = module.split("::").next()?;
    Some(match top {
        "error" | "base" => 0,
        "device" => 1,
        "results" => 2,
        "measure" => 3,
        "bench" | "criterion" | "args" | "monitor" => 4,
        _ => return None,
    })
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every module file (binary excluded): its module path (`measure::accounting::energy`).
fn modules() -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if p.file_name().unwrap() != "bin" {
                    walk(&p, out);
                }
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&src(), &mut files);
    let mut out = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(src()).unwrap().with_extension("");
        let mut parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if parts.last().is_some_and(|l| l == "mod") {
            parts.pop();
        }
        if parts == ["lib"] {
            continue;
        }
        // `criterion` is declared from lib.rs with a path into bench/
        if parts == ["bench", "criterion"] {
            parts = vec!["criterion".into()];
        }
        out.insert(parts.join("::"), f);
    }
    out
}

/// The code of a file without comments and without its test module.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let body = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    body.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The identifier paths in `code` that start with `head::` (`crate::a::b` → `a::b`).
fn paths_after(code: &str, head: &str) -> Vec<String> {
    let mut out = Vec::new();
    let pat = format!("{head}::");
    let mut rest = code;
    while let Some(i) = rest.find(&pat) {
        let before = rest[..i].chars().last();
        rest = &rest[i + pat.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let path: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        out.push(path.trim_end_matches(':').to_string());
        // `use x::{a, b::c}`: each item in the braces too
        if rest[path.len()..].starts_with('{') {
            let close = rest.find('}').unwrap_or(rest.len());
            for item in rest[path.len() + 1..close].split(',') {
                let item = item.trim().trim_start_matches('{');
                if !item.is_empty() {
                    out.push(format!("{}{}", path, item.trim()));
                }
            }
        }
    }
    out
}

/// The longest known module that `path` (from the crate root) lies in.
fn resolve(path: &str, known: &BTreeMap<String, PathBuf>) -> Option<String> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len())
        .rev()
        .map(|n| parts[..n].join("::"))
        .find(|m| known.contains_key(m))
}

/// Each module's imports of other modules.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let known = modules();
    let mut graph = BTreeMap::new();
    for (module, file) in &known {
        let code = code(file);
        let is_dir_module = file.file_name().unwrap() == "mod.rs";
        let parent = if is_dir_module {
            module.rsplit_once("::").map_or("", |p| p.0).to_string()
        } else {
            module.rsplit_once("::").map_or("", |p| p.0).to_string()
        };
        let mut targets = BTreeSet::new();
        for p in paths_after(&code, "crate") {
            targets.extend(resolve(&p, &known));
        }
        for p in paths_after(&code, "super") {
            let full = if parent.is_empty() {
                p
            } else {
                format!("{parent}::{p}")
            };
            targets.extend(resolve(&full, &known));
        }
        // children a directory module uses by their bare name (`energy::raw_energy`)
        if is_dir_module {
            for child in known.keys().filter_map(|k| {
                k.strip_prefix(&format!("{module}::"))
                    .filter(|c| !c.contains("::"))
            }) {
                if !paths_after(&code, child).is_empty() {
                    targets.insert(format!("{module}::{child}"));
                }
            }
        }
        targets.remove(module);
        graph.insert(module.clone(), targets);
    }
    graph
}

#[test]
fn every_module_has_a_layer() {
    for m in modules().keys() {
        assert!(rank(m).is_some(), "module `{m}` is in no layer");
    }
}

#[test]
fn imports_run_from_higher_layers_to_lower_ones() {
    let mut wrong = Vec::new();
    for (m, targets) in imports() {
        let own = rank(&m).unwrap();
        for t in targets {
            let theirs = rank(&t).unwrap();
            if theirs > own {
                wrong.push(format!("{m} (layer {own}) imports {t} (layer {theirs})"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn modules_name_modules_not_the_facade() {
    // `crate::Meter` goes through lib.rs's re-exports and would hide the layer it comes from
    // (and make lib.rs, the root, a dependency of what it declares); only the error type may
    // be named that way.
    let known = modules();
    let mut wrong = Vec::new();
    for (m, file) in &known {
        for p in paths_after(&code(file), "crate") {
            let head = p.split("::").next().unwrap_or("");
            if resolve(&p, &known).is_none() && !matches!(head, "Error" | "Result" | "") {
                wrong.push(format!("{m}: crate::{p}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "paths through the facade:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_modules_import_each_other_in_a_circle() {
    let graph = imports();
    // depth-first search for a back edge, reporting the circle it closes
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(m.to_string(), 1);
        stack.push(m.to_string());
        for t in graph.get(m).into_iter().flatten() {
            match state.get(t.as_str()).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|s| s == t).unwrap();
                    let mut circle = stack[from..].to_vec();
                    circle.push(t.clone());
                    return Some(circle);
                }
                0 => {
                    if let Some(c) = visit(t, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(m.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in graph.keys() {
        if state.get(m.as_str()).copied().unwrap_or(0) == 0 {
            let circle = visit(m, &graph, &mut state, &mut Vec::new());
            assert!(
                circle.is_none(),
                "import circle: {}",
                circle.unwrap().join(" → ")
            );
        }
    }
}

#[test]
fn the_checker_sees_imports_and_circles() {
    // the checker itself on known text, so that a parser that sees nothing cannot pass
    let code = "use crate::results::report::{EnergyReport, BaselineMethod};\nuse super::input::DeviceWindow;\nlet x = crate::base::cache::write_atomic(p);\n";
    let crate_paths = paths_after(code, "crate");
    assert!(crate_paths.contains(&"results::report::EnergyReport".to_string()));
    assert!(crate_paths.contains(&"base::cache::write_atomic".to_string()));
    assert_eq!(paths_after(code, "super"), vec!["input::DeviceWindow"]);
    let graph = imports();
    let window = &graph["measure::window"];
    assert!(window.contains("measure::meter"), "{window:?}");
    assert!(window.contains("results::report"), "{window:?}");
    assert!(graph["measure::accounting"].contains("measure::accounting::energy"));
    assert!(graph["measure::accounting::energy"].contains("measure::accounting::input"));
}
