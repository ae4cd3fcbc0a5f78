//! docs/architecture.md's map of the daemon's modules is the source tree's: every module file
//! and folder under `daemon/src` is on the map (a folder's files named in its entry), and
//! every entry of the map exists. A newcomer reads the map first; it must not lie.

use std::collections::BTreeSet;
use std::path::Path;

/// The map: the first code block after "The daemon's layers".
fn map() -> String {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/architecture.md"),
    )
    .expect("docs/architecture.md");
    let from = doc
        .find("The daemon's layers")
        .expect("the layers paragraph");
    let rest = &doc[from..];
    let start = rest.find("```\n").expect("the map's code block") + 4;
    let end = rest[start..].find("```").expect("the end of the map") + start;
    rest[start..end].to_string()
}

/// `check-config` and `check_config`, `sock_diag` and `sockdiag` are one name.
fn norm(s: &str) -> String {
    s.chars().filter(|c| *c != '_' && *c != '-').collect()
}

/// The map's entries: the names at the start of its lines (`tick.rs`, `apply/`, and each of
/// `config.rs, error.rs, rt.rs`), each with the text of its entry (continuation lines too).
fn entries(map: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in map.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with(' ') {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
            continue;
        }
        let head: String = line.split("  ").next().unwrap_or("").trim().to_string();
        let text = line[head.len()..].trim().to_string();
        for name in head.split(", ") {
            out.push((name.trim().to_string(), text.clone()));
        }
    }
    out
}

fn tree() -> Vec<(String, Vec<String>)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if e.path().is_dir() {
            let mut files: Vec<String> = std::fs::read_dir(e.path())
                .unwrap()
                .filter_map(|f| {
                    let f = f.unwrap().file_name().to_string_lossy().into_owned();
                    f.strip_suffix(".rs")
                        .filter(|s| *s != "mod")
                        .map(String::from)
                })
                .collect();
            files.sort();
            out.push((format!("{name}/"), files));
        } else if name.ends_with(".rs") && name != "lib.rs" && name != "main.rs" {
            out.push((name, Vec::new()));
        }
    }
    out.sort();
    out
}

#[test]
fn the_map_and_the_source_tree_agree() {
    let map = map();
    let listed = entries(&map);
    assert!(listed.len() > 15, "the map was not read: {listed:?}");
    let names: BTreeSet<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
    let tree = tree();
    let mut missing = Vec::new();
    for (module, files) in &tree {
        let Some((_, text)) = listed.iter().find(|(n, _)| n == module) else {
            missing.push(format!("{module} is not on the map"));
            continue;
        };
        let words: BTreeSet<String> = text
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
            .map(norm)
            .collect();
        for f in files {
            if !words.contains(&norm(f)) {
                missing.push(format!(
                    "{module}{f}.rs is not named in the map's {module} entry"
                ));
            }
        }
    }
    for name in &names {
        if !tree.iter().any(|(m, _)| m == name) {
            missing.push(format!("the map names {name}, which is not in daemon/src"));
        }
    }
    assert!(
        missing.is_empty(),
        "docs/architecture.md is out of date:\n{}",
        missing.join("\n")
    );
}

/// The check itself sees a module that is not on the map, and an entry that does not exist.
#[test]
fn the_check_sees_what_it_is_for() {
    let map = "tick.rs             the heartbeat\napply/              run -> txn\n                    book\n";
    let e = entries(map);
    assert_eq!(
        e.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        vec!["tick.rs", "apply/"]
    );
    assert_eq!(e[1].1, "run -> txn book");
    let e = entries("config.rs, error.rs, rt.rs   configuration\n");
    assert_eq!(e.len(), 3);
    assert_eq!(norm("check-config"), norm("check_config"));
}
