//! Dependencies point down. Each module may use only modules on a lower layer: the edges (S3,
//! Leadspace, secrets, metrics) know nothing of companies; the domain (companies, mappings,
//! answers) knows nothing of runs; the steps of a run know nothing of who orders them. A child
//! module names its sibling modules, never a function its parent keeps for itself.
//!
//! The layers are read from `use`/paths in the source text (`crate::x`, `super::x`), test
//! modules excepted: a test may reach for whatever it checks.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// Top-level modules of `src/`, lowest first.
const CRATE_LAYERS: &[&[&str]] = &[
    &["chain"],
    &["memory", "metrics", "storage"],
    &["secrets"],
    &["leadspace"],
    &["company", "enrichment"],
    &["records", "cache"],
    &["mapping"],
    &["config", "error"],
    &["pipeline"],
    &["workflow"],
    &["runner", "status", "trigger", "delete"],
    &["refresh"],
    &["handler", "bootstrap"],
];

/// The steps of a run (`src/pipeline/`), lowest first.
const PIPELINE_LAYERS: &[&[&str]] = &[
    &["app", "summary"],
    &["report", "progress"],
    &["lease"],
    &["paths"],
    &["job"],
    &["run"],
    &["scan"],
    &["close"],
    &["answers"],
    &["output"],
    &["flow"],
];

/// The large-file workflow (`src/workflow/`), lowest first.
const WORKFLOW_LAYERS: &[&[&str]] = &[&["input"], &["hand_off", "batch", "assemble"], &["trust"], &["whole_runs"]];

fn layer_of(layers: &[&[&str]], module: &str) -> Option<usize> {
    layers.iter().position(|layer| layer.contains(&module))
}

/// The source of a file without its `#[cfg(test)]` module and without comments.
fn code(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines().filter(|line| !line.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// Every module name after `prefix` in `code`: `prefix::name`, and each `name` of a group
/// `prefix::{name, name::Item, Item}` (module names are lowercase, items are not).
fn names_after(code: &str, prefix: &str) -> Vec<String> {
    let lowercase_name = |text: &str| -> String {
        text.trim_start().chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect()
    };
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(prefix) {
        let after = &rest[at + prefix.len()..];
        if let Some(group) = after.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            found.extend(group.split(',').map(lowercase_name).filter(|n| !n.is_empty() && n != "self"));
        } else {
            let name = lowercase_name(after);
            if !name.is_empty() {
                found.push(name);
            }
        }
        rest = after;
    }
    found
}

/// The `.rs` files under `dir`, with the module each belongs to at the first level below it.
fn modules_under(dir: &Path) -> BTreeMap<String, Vec<std::path::PathBuf>> {
    let mut modules: BTreeMap<String, Vec<_>> = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in fs::read_dir(&current).unwrap_or_else(|e| panic!("{}: {e}", current.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(dir).expect("below the directory");
            let first = relative.components().next().expect("a file name").as_os_str().to_string_lossy();
            let module = first.trim_end_matches(".rs").to_string();
            modules.entry(module).or_default().push(path);
        }
    }
    modules
}

/// The uses that break the layering of `dir`'s modules, where each module's references are
/// `prefix` + name.
fn upward_uses(dir: &Path, layers: &[&[&str]], prefixes: &[&str], skip: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    for (module, files) in modules_under(dir) {
        if skip.contains(&module.as_str()) {
            continue;
        }
        let Some(own) = layer_of(layers, &module) else {
            problems.push(format!("{}/{module} has no layer in tests/architecture.rs", dir.display()));
            continue;
        };
        for file in files {
            let code = code(&file);
            for prefix in prefixes {
                for used in names_after(&code, prefix) {
                    if used == module {
                        continue;
                    }
                    match layer_of(layers, &used) {
                        Some(layer) if layer < own => {}
                        Some(_) => {
                            problems.push(format!("{} uses {prefix}{used}, on its layer or above", file.display()))
                        }
                        // Not a module of this directory (an item of the parent, a re-export).
                        None => {}
                    }
                }
            }
        }
    }
    problems
}

#[test]
fn top_level_modules_use_only_lower_layers() {
    let problems = upward_uses(Path::new("src"), CRATE_LAYERS, &["crate::"], &["lib", "main"]);
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_steps_of_a_run_use_only_earlier_steps() {
    let problems = upward_uses(Path::new("src/pipeline"), PIPELINE_LAYERS, &["super::", "crate::pipeline::"], &["mod"]);
    assert!(problems.is_empty(), "{problems:#?}");
    let problems = upward_uses(Path::new("src/workflow"), WORKFLOW_LAYERS, &["super::", "crate::workflow::"], &["mod"]);
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn a_child_module_names_its_siblings_never_its_parents_private_functions() {
    let mut problems = Vec::new();
    let dirs = [
        "src/pipeline",
        "src/pipeline/answers",
        "src/workflow",
        "src/mapping",
        "src/company",
        "src/storage",
        "src/records",
        "src/leadspace",
    ];
    for dir in dirs {
        let siblings = modules_under(Path::new(dir));
        for (module, files) in &siblings {
            if module == "mod" {
                continue;
            }
            // A folder's own files name their siblings in the folder, its mod.rs those beside it.
            let beside = |file: &&std::path::PathBuf| {
                file.parent() == Some(Path::new(dir)) || file.file_name().is_some_and(|name| name == "mod.rs")
            };
            for file in files.iter().filter(beside) {
                for used in names_after(&code(file), "super::") {
                    if !siblings.contains_key(&used) {
                        problems.push(format!("{} uses super::{used}, which is not a sibling module", file.display()));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_layer_tables_name_every_module_there_is() {
    for (dir, layers) in [("src/pipeline", PIPELINE_LAYERS), ("src/workflow", WORKFLOW_LAYERS)] {
        for module in modules_under(Path::new(dir)).keys().filter(|m| *m != "mod") {
            assert!(layer_of(layers, module).is_some(), "{dir}/{module}.rs has no layer");
        }
    }
    for module in modules_under(Path::new("src")).keys().filter(|m| !["lib", "main"].contains(&m.as_str())) {
        assert!(layer_of(CRATE_LAYERS, module).is_some(), "src/{module} has no layer");
    }
}

#[test]
fn the_in_memory_store_and_the_fakes_compile_only_for_tests() {
    // The release binary holds no stand-in for S3: `storage::memory` is declared for tests only.
    let storage = fs::read_to_string("src/storage/mod.rs").expect("src/storage/mod.rs");
    let lines: Vec<&str> = storage.lines().map(str::trim).collect();
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("mod memory") || line.starts_with("pub use memory") {
            assert_eq!(lines.get(i.wrapping_sub(1)), Some(&"#[cfg(test)]"), "`{line}` is for tests only");
        }
    }
    assert!(lines.iter().any(|l| l.starts_with("mod memory")), "the scan no longer finds the in-memory store");
}
