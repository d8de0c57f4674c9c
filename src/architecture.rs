//! The layering, checked: reads every module's `crate::`, `super::` and child-module
//! paths, and fails on an import circle, on `api` importing anything but itself, on the
//! operations modules importing the rest, on the NATS side importing the controllers, and
//! on I/O types in the decision module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// Module path (`controller::engine`) of a source file; `None` for the binary and for
/// test-only files.
fn module_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(SRC).ok()?;
    let parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    let last = parts.last()?.clone();
    if last == "main" || last.ends_with("_tests") || last == "architecture" {
        return None;
    }
    let mut parts = parts;
    if last == "mod" || (parts.len() == 1 && last == "lib") {
        parts.pop();
    }
    Some(parts.join("::"))
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without its tests (at the end, after `#[cfg(test)]`) and without
/// comment lines (doc links name modules without importing them).
fn code(text: &str) -> String {
    text.lines()
        .take_while(|l| l.trim() != "#[cfg(test)]")
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path in `code` that starts with `crate::`, `super::` or a child module, braces
/// of `use` lists expanded one level, as absolute segment lists.
fn paths(module: &str, code: &str, modules: &BTreeSet<String>) -> Vec<Vec<String>> {
    let here: Vec<String> = if module.is_empty() {
        Vec::new()
    } else {
        module.split("::").map(str::to_string).collect()
    };
    let mut out = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let boundary = i == 0
            || !(bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_' || bytes[i - 1] == ':');
        if !(boundary && (c.is_ascii_lowercase() || c == '_')) {
            i += 1;
            continue;
        }
        // Read `a::b::{c, d::e}` or `a::b::C`.
        let mut j = i;
        let mut text = String::new();
        let mut depth = 0;
        while j < bytes.len() {
            let ch = bytes[j];
            if ch == '{' {
                depth += 1;
            } else if ch == '}' {
                if depth == 0 {
                    break;
                }
                depth -= 1;
                if depth == 0 {
                    text.push(ch);
                    j += 1;
                    break;
                }
            } else if depth == 0 && !(ch.is_alphanumeric() || ch == '_' || ch == ':') {
                break;
            }
            text.push(ch);
            j += 1;
        }
        i = j.max(i + 1);
        if !text.contains("::") {
            continue;
        }
        let (head, list) = match text.split_once("::{") {
            Some((h, l)) => (h.to_string(), Some(l.trim_end_matches('}').to_string())),
            None => (text.clone(), None),
        };
        let segs: Vec<String> = head.split("::").map(str::to_string).collect();
        let Some(first) = segs.first() else { continue };
        let mut abs: Vec<String> = match first.as_str() {
            "crate" => Vec::new(),
            "super" => {
                let mut p = here.clone();
                p.pop();
                p
            }
            "self" => here.clone(),
            name => {
                let mut child = here.clone();
                child.push(name.to_string());
                if !modules.contains(&child.join("::")) {
                    continue;
                }
                here.clone()
            }
        };
        let skip = usize::from(matches!(first.as_str(), "crate" | "super" | "self"));
        let mut rest = segs[skip..].to_vec();
        while rest.first().is_some_and(|s| s == "super") {
            abs.pop();
            rest.remove(0);
        }
        abs.extend(rest);
        match list {
            None => out.push(abs),
            Some(items) => {
                for item in items.split(',') {
                    let mut p = abs.clone();
                    let item = item.trim().split("::").next().unwrap_or("").trim();
                    if !item.is_empty() && item != "self" {
                        p.push(item.to_string());
                    }
                    out.push(p);
                }
            }
        }
    }
    out
}

/// The module a path lands in: its longest prefix that is a module.
fn target(path: &[String], modules: &BTreeSet<String>) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| modules.contains(m))
}

struct Graph {
    edges: BTreeMap<String, BTreeSet<String>>,
    sources: BTreeMap<String, String>,
}

fn graph() -> Graph {
    let mut all = Vec::new();
    files(Path::new(SRC), &mut all);
    let mut sources = BTreeMap::new();
    for f in &all {
        if let Some(m) = module_of(f) {
            sources.insert(m, code(&std::fs::read_to_string(f).unwrap_or_default()));
        }
    }
    let modules: BTreeSet<String> = sources.keys().cloned().collect();
    let mut edges = BTreeMap::new();
    for (m, text) in &sources {
        let mut to = BTreeSet::new();
        for p in paths(m, text, &modules) {
            if let Some(t) = target(&p, &modules)
                && t != *m
                && !t.is_empty()
            {
                to.insert(t);
            }
        }
        edges.insert(m.clone(), to);
    }
    Graph { edges, sources }
}

fn top(m: &str) -> &str {
    m.split("::").next().unwrap_or(m)
}

#[test]
fn no_import_circles() {
    let g = graph();
    // Depth-first search for a back edge.
    fn visit(
        m: &str,
        g: &Graph,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|s| s == m) {
            let mut circle = stack[pos..].to_vec();
            circle.push(m.to_string());
            return Some(circle);
        }
        if done.contains(m) {
            return None;
        }
        stack.push(m.to_string());
        for t in g.edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(t, g, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for m in g.edges.keys() {
        if let Some(c) = visit(m, &g, &mut Vec::new(), &mut done) {
            panic!("import circle: {}", c.join(" -> "));
        }
    }
    assert!(
        g.edges
            .get("controller::engine")
            .is_some_and(|e| !e.is_empty()),
        "the graph reader found no edges: {:?}",
        g.edges.get("controller::engine")
    );
}

#[test]
fn layers_point_one_way() {
    let g = graph();
    let ops = ["metrics", "telemetry", "admin", "fence"];
    let mut wrong = Vec::new();
    for (m, to) in &g.edges {
        for t in to {
            let (from_top, to_top) = (top(m), top(t));
            let allowed = match from_top {
                // The API types: nothing but themselves.
                "api" => to_top == "api",
                // Operations: leaves, beside each other.
                f if ops.contains(&f) => ops.contains(&to_top) || to_top == "macros",
                // The NATS side: the API types, operations, itself.
                "jetstream" => matches!(to_top, "api" | "jetstream" | "metrics" | "fence"),
                // The controllers: everything below them.
                "controller" => !matches!(to_top, "cli" | "inspect"),
                _ => true,
            };
            if !allowed {
                wrong.push(format!("{m} -> {t}"));
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layering: {wrong:#?}");
}

#[test]
fn decisions_do_no_io() {
    let g = graph();
    let plan = g.sources.get("controller::plan").expect("controller::plan");
    for io in [
        "kube::",
        "k8s_openapi",
        "async_nats",
        "tokio",
        "reqwest",
        "std::fs",
        "JsApi",
    ] {
        assert!(!plan.contains(io), "controller::plan mentions {io}");
    }
    let allowed = [
        "api::common",
        "api::conditions",
        "jetstream::config",
        "jetstream::error",
        "jetstream::owner",
    ];
    for t in &g.edges["controller::plan"] {
        assert!(
            allowed.contains(&t.as_str()),
            "controller::plan imports {t}; decisions use only plain data"
        );
    }
}
