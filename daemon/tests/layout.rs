//! The daemon's layout stays a map: no two source files depend on each other, directly or
//! round a loop (docs/architecture.md draws the layers), and no function returns a bare
//! `String` as its error. Read from the sources themselves, so a change that breaks either
//! fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`probe::engine`) -> source text without its unit tests.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, root, out);
                continue;
            }
            if p.extension().and_then(|x| x.to_str()) != Some("rs") {
                continue;
            }
            let rel = p.strip_prefix(root).unwrap().with_extension("");
            let mut name = rel.to_string_lossy().replace('/', "::");
            if let Some(parent) = name.strip_suffix("::mod") {
                name = parent.to_string();
            }
            if name == "lib" || name == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            let text = match text.find("#[cfg(test)]\nmod tests") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            out.insert(name, text);
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    walk(&root, &root, &mut out);
    out
}

/// The longest module named by `path` (`probe::plan::Cell` -> `probe::plan`).
fn resolve(mods: &BTreeMap<String, String>, path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    (1..=parts.len())
        .rev()
        .map(|i| parts[..i].join("::"))
        .find(|c| mods.contains_key(c))
}

/// Which modules each module uses, from `crate::...` and `super::...` paths (with one level
/// of `{a, b}` groups).
fn edges(mods: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for (name, text) in mods {
        let parent = name.rsplit_once("::").map(|(p, _)| p.to_string());
        let mut deps = BTreeSet::new();
        for (prefix, base) in [
            ("crate::", String::new()),
            ("super::", parent.clone().unwrap_or_default()),
        ] {
            let mut rest = text.as_str();
            while let Some(i) = rest.find(prefix) {
                // Not the tail of a longer path (`netmode_advisor::api::...` has no `crate::`).
                let before = rest[..i].chars().last();
                rest = &rest[i + prefix.len()..];
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                    continue;
                }
                let path: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                let path = path.trim_end_matches(':');
                let full = |p: &str| {
                    if base.is_empty() {
                        p.to_string()
                    } else {
                        format!("{base}::{p}")
                    }
                };
                let mut targets = vec![full(path)];
                let after = &rest[path.len()..];
                if let Some(group) = after.strip_prefix("::{") {
                    let group = &group[..group.find('}').unwrap_or(0)];
                    for item in group.split(',') {
                        let item = item.split_whitespace().next().unwrap_or("");
                        if !item.is_empty() && item != "self" {
                            targets.push(full(&format!("{path}::{item}")));
                        }
                    }
                }
                for t in targets {
                    if let Some(m) = resolve(mods, &t)
                        && &m != name
                    {
                        deps.insert(m);
                    }
                }
            }
        }
        out.insert(name.clone(), deps);
    }
    out
}

fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in edges.get(n).into_iter().flatten() {
            match state.get(m.as_str()) {
                Some(1) => {
                    let i = stack.iter().position(|s| s == m).unwrap();
                    let mut c = stack[i..].to_vec();
                    c.push(m.clone());
                    return Some(c);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(m, edges, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in edges.keys() {
        if !state.contains_key(n)
            && let Some(c) = visit(n, edges, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

#[test]
fn no_module_depends_on_itself_round_a_loop() {
    let mods = modules();
    assert!(mods.len() > 30, "found only {} modules", mods.len());
    let e = edges(&mods);
    // The reader sees real dependencies (a check that finds none would pass anything).
    assert!(
        e["probe::engine"].contains("probe::runner"),
        "{:?}",
        e["probe::engine"]
    );
    assert!(
        e["tick"].contains("live") && e["tick"].contains("advice"),
        "{:?}",
        e["tick"]
    );
    if let Some(c) = find_cycle(&e) {
        panic!("module cycle: {}", c.join(" -> "));
    }
    // And the check itself finds a loop when there is one.
    let mut looped = e.clone();
    looped
        .get_mut("sys::netns")
        .unwrap()
        .insert("probe::engine".into());
    assert!(find_cycle(&looped).is_some());
}

#[test]
fn no_error_is_a_bare_string() {
    for (name, text) in modules() {
        for (i, line) in text.lines().enumerate() {
            let l = line.replace(' ', "");
            assert!(
                !(l.contains(",String>") && l.contains("Result<")),
                "{name}:{}: a Result with a String error: {line}",
                i + 1
            );
            assert!(
                !l.contains("typeErr=String;"),
                "{name}:{}: FromStr with a String error: {line}",
                i + 1
            );
        }
    }
}
