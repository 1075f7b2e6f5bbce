//! Keeps the documentation in step with the code: every environment variable the code reads is
//! documented, every sample event is explained, every relative link leads somewhere, and the
//! README stays short enough to be read. Needs no servers and no network: only the files of the
//! repository.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The README is the front page; everything longer belongs in docs/.
const README_MAX_BYTES: u64 = 10_240;

/// Fewer than this means the scanner no longer recognises how the code reads its configuration,
/// and an undocumented variable would pass unnoticed.
const MIN_VARIABLES_FOUND: usize = 20;

/// The calls through which the code reads a variable. `parse_number` always names the variable it
/// parses, so it catches a number read through something other than `get`.
const LOOKUPS: [&str; 3] = ["get(\"", "env::var(\"", "parse_number(\""];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn files_under(dir: &Path, extension: &str, found: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())).path();
        if path.is_dir() {
            files_under(&path, extension, found);
        } else if path.extension().is_some_and(|e| e == extension) {
            found.push(path);
        }
    }
    // Sorted so that a failure names the same file on every machine.
    found.sort();
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root()).unwrap_or(path).display().to_string()
}

/// A variable name as the configuration spells them; anything else after `get("` is a JSON key
/// or a map lookup (`get("token")`, `get("Records")`), not the environment.
fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Names passed as string literals to the lookups, in the order the lookups are searched.
fn variables_read(source: &str) -> Vec<String> {
    let mut names = Vec::new();
    for lookup in LOOKUPS {
        let mut rest = source;
        while let Some(at) = rest.find(lookup) {
            rest = &rest[at + lookup.len()..];
            let Some(end) = rest.find('"') else { break };
            let name = &rest[..end];
            let closes = rest[end + 1..].starts_with(')') || lookup.starts_with("parse_number");
            if closes && is_variable_name(name) {
                names.push(name.to_string());
            }
        }
    }
    names
}

fn documentation_pages() -> Vec<PathBuf> {
    let mut pages = Vec::new();
    files_under(&root().join("docs"), "md", &mut pages);
    pages.insert(0, root().join("README.md"));
    pages
}

#[test]
fn every_environment_variable_the_code_reads_is_in_the_configuration_page() {
    let mut sources = Vec::new();
    files_under(&root().join("src"), "rs", &mut sources);
    let mut read_in: BTreeMap<String, String> = BTreeMap::new();
    for path in &sources {
        for name in variables_read(&read(path)) {
            read_in.entry(name).or_insert_with(|| relative(path));
        }
    }
    assert!(
        read_in.len() >= MIN_VARIABLES_FOUND,
        "the scanner found only {} environment variables in src/ ({:?}), fewer than {MIN_VARIABLES_FOUND}: the code \
         probably reads its configuration in a new way, and tests/docs.rs needs updating to recognise it",
        read_in.len(),
        read_in.keys().collect::<Vec<_>>()
    );

    let page = root().join("docs/configuration.md");
    let configuration = read(&page);
    let missing: Vec<String> = read_in
        .iter()
        .filter(|(name, _)| !configuration.contains(&format!("`{name}`")))
        .map(|(name, file)| format!("{name} (read in {file})"))
        .collect();
    assert!(
        missing.is_empty(),
        "environment variables read by the code but not documented in docs/configuration.md (as `NAME`): {}",
        missing.join(", ")
    );
}

#[test]
fn every_sample_event_is_mentioned_in_the_documentation() {
    let pages: Vec<String> = documentation_pages().iter().map(|p| read(p)).collect();
    let mut events = Vec::new();
    files_under(&root().join("events"), "json", &mut events);
    assert!(!events.is_empty(), "events/ holds no sample event: the check below would pass without checking anything");
    let unmentioned: Vec<String> = events
        .iter()
        .filter_map(|path| path.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|name| !pages.iter().any(|page| page.contains(name.as_str())))
        .collect();
    assert!(
        unmentioned.is_empty(),
        "sample events not mentioned by file name in README.md or any page of docs/: {}",
        unmentioned.join(", ")
    );
}

/// The targets of inline Markdown links, `[text](target)`, outside fenced code blocks (where a
/// `](` is code, not a link).
fn link_targets(markdown: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let Some(end) = rest.find(')') else { break };
            // A title (`[x](target "title")`) is not part of where the link goes.
            let target = rest[..end].split_whitespace().next().unwrap_or("");
            targets.push(target.trim_matches(['<', '>']).to_string());
            rest = &rest[end + 1..];
        }
    }
    targets
}

#[test]
fn every_relative_link_leads_to_a_file_that_exists() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in documentation_pages() {
        let dir = page.parent().expect("a page lives in a directory");
        for target in link_targets(&read(&page)) {
            let external = target.contains("://") || target.starts_with("mailto:");
            let path = target.split('#').next().unwrap_or("");
            // Anchors within the same page and external addresses are not files of this repository.
            if external || path.is_empty() {
                continue;
            }
            checked += 1;
            if !dir.join(path).exists() {
                broken.push(format!("{} links to {target}", relative(&page)));
            }
        }
    }
    assert!(checked > 0, "no relative link found: the README's Documentation section should link every page of docs/");
    assert!(broken.is_empty(), "links to files that do not exist:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_stays_short() {
    let readme = root().join("README.md");
    let size = fs::metadata(&readme).unwrap_or_else(|e| panic!("cannot read {}: {e}", readme.display())).len();
    assert!(
        size <= README_MAX_BYTES,
        "README.md is {size} bytes, more than {README_MAX_BYTES}: move detail into a page of docs/ and link it"
    );
}

#[test]
fn the_scanner_reads_lookups_and_nothing_else() {
    let source = r#"
        let a = get("INPUT_PREFIX").unwrap_or_default();
        let b = std::env::var("AWS_LAMBDA_FUNCTION_NAME");
        let c = parse_number("BATCH_SIZE", get("BATCH_SIZE"), 500, 1, 500)?;
        let d = json.get("token");
        let e = event.get("Records");
        let f = map.get(name);
    "#;
    let mut names = variables_read(source);
    names.sort();
    names.dedup();
    assert_eq!(names, ["AWS_LAMBDA_FUNCTION_NAME", "BATCH_SIZE", "INPUT_PREFIX"]);
}
