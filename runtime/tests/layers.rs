//! The runtime's layering, checked from its source:
//! - no import circle between its files: every `use crate::…`,
//!   `use super::…` and inline `crate::…` path is an arrow from the file
//!   that writes it to the file of the module it names, and the arrows
//!   must not close a loop (test-only modules are left out);
//! - `src/core/` names no transport: no tonic, hyper, h2, nor a generated
//!   gRPC client or server.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path below the crate root (`core::cluster::state`).
type Module = Vec<String>;

/// The library's files by module, leaving out modules declared behind
/// `#[cfg(test)]` (and everything below them).
fn modules(src: &Path) -> BTreeMap<Module, PathBuf> {
    let mut found = BTreeMap::new();
    let mut pending = vec![(Vec::new(), src.join("lib.rs"))];
    while let Some((module, file)) = pending.pop() {
        let text = std::fs::read_to_string(&file).expect("a readable source file");
        let dir = if module.is_empty() || file.ends_with("mod.rs") {
            file.parent().expect("a folder").to_path_buf()
        } else {
            file.with_extension("")
        };
        for child in declared_modules(&strip(&text)) {
            let mut path = module.clone();
            path.push(child.clone());
            let flat = dir.join(format!("{child}.rs"));
            let nested = dir.join(&child).join("mod.rs");
            let child_file = if flat.exists() { flat } else { nested };
            pending.push((path, child_file));
        }
        found.insert(module, file);
    }
    found
}

/// `mod name;` declarations that are not behind `#[cfg(test)]`.
fn declared_modules(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut test_only = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with("#[cfg(test)]") {
            test_only = true;
            continue;
        }
        let decl = line
            .strip_prefix("pub mod ")
            .or_else(|| line.strip_prefix("pub(crate) mod "))
            .or_else(|| line.strip_prefix("mod "));
        if let Some(name) = decl.and_then(|d| d.strip_suffix(';'))
            && !test_only
        {
            names.push(name.trim().to_string());
        }
        if !line.is_empty() {
            test_only = false;
        }
    }
    names
}

/// The source without comments, string and char literals, and inline
/// `#[cfg(test)] mod … { … }` blocks.
fn strip(text: &str) -> String {
    let bytes: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let next = bytes.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < bytes.len() && bytes[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i + 1 < bytes.len() && !(bytes[i] == '*' && bytes[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == '"' {
            i += 1;
            while i < bytes.len() && bytes[i] != '"' {
                if bytes[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == 'r' && matches!(next, Some('#' | '"')) {
            // Raw strings: r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while bytes.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if bytes.get(j) == Some(&'"') {
                j += 1;
                loop {
                    if j >= bytes.len() {
                        break;
                    }
                    if bytes[j] == '"' && (0..hashes).all(|k| bytes.get(j + 1 + k) == Some(&'#')) {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                i = j;
                out.push_str("\"\"");
            } else {
                out.push(c);
                i += 1;
            }
        } else if c == '\'' && bytes.get(i + 2) == Some(&'\'') {
            i += 3;
        } else if c == '\'' && next == Some('\\') {
            i += 2;
            while i < bytes.len() && bytes[i] != '\'' {
                i += 1;
            }
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    without_test_blocks(&out)
}

fn without_test_blocks(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "#[cfg(test)]".len()..];
        let trimmed = after.trim_start();
        let is_block = (trimmed.starts_with("mod ") || trimmed.starts_with("pub mod "))
            && trimmed
                .find(['{', ';'])
                .is_some_and(|k| trimmed.as_bytes()[k] == b'{');
        if !is_block {
            rest = after;
            continue;
        }
        let open = after.find('{').expect("a block");
        let mut depth = 0;
        let mut end = after.len();
        for (k, ch) in after[open..].char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + k + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Every path the text names from `crate`, `super` or `self`, braces of
/// `use` lists expanded: each as its first word and the words after it.
fn paths(text: &str) -> Vec<(String, Vec<String>)> {
    let mut found = Vec::new();
    for stmt in text.split(';') {
        let stmt = stmt.trim();
        let body = stmt
            .find("use ")
            .filter(|k| {
                let before = &stmt[..*k];
                before.trim().is_empty()
                    || before.trim_end().ends_with("pub")
                    || before.ends_with(")")
            })
            .map(|k| &stmt[k + 4..]);
        if let Some(body) = body {
            for path in expand(body.trim()) {
                let words: Vec<String> = path
                    .split("::")
                    .map(|w| w.split(" as ").next().unwrap_or(w).trim().to_string())
                    .filter(|w| !w.is_empty())
                    .collect();
                if let Some((first, rest)) = words.split_first()
                    && matches!(first.as_str(), "crate" | "super" | "self")
                {
                    found.push((first.clone(), rest.to_vec()));
                }
            }
        }
    }
    // Paths written inline, outside `use`.
    let chars: Vec<char> = text.chars().collect();
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let mut i = 0;
    while i < chars.len() {
        for start in ["crate::", "super::"] {
            let len = start.len();
            if chars[i..].iter().take(len).copied().eq(start.chars())
                && (i == 0 || !word(chars[i - 1]))
            {
                let mut j = i;
                while j < chars.len() && (word(chars[j]) || chars[j] == ':') {
                    j += 1;
                }
                let words: Vec<String> = chars[i..j]
                    .iter()
                    .collect::<String>()
                    .split("::")
                    .filter(|w| !w.is_empty())
                    .map(str::to_string)
                    .collect();
                if let Some((first, rest)) = words.split_first() {
                    found.push((first.clone(), rest.to_vec()));
                }
                i = j;
            }
        }
        i += 1;
    }
    found
}

/// `a::{b, c::{d, e}}` as `a::b`, `a::c::d`, `a::c::e`.
fn expand(path: &str) -> Vec<String> {
    let Some(open) = path.find('{') else {
        return vec![path.to_string()];
    };
    let prefix = &path[..open];
    let inner = &path[open + 1..path.rfind('}').unwrap_or(path.len())];
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (k, ch) in inner.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..k]);
                start = k + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .flat_map(|p| {
            if p == "self" {
                vec![prefix.trim_end_matches("::").to_string()]
            } else {
                expand(&format!("{prefix}{p}"))
            }
        })
        .collect()
}

/// The deepest module `path` reaches from `from`.
fn resolve(
    from: &Module,
    first: &str,
    rest: &[String],
    known: &BTreeMap<Module, PathBuf>,
) -> Module {
    let mut at = match first {
        "crate" => Vec::new(),
        "self" => from.clone(),
        _ => from[..from.len().saturating_sub(1)].to_vec(),
    };
    let mut words = rest.iter().peekable();
    // super::super::…
    while words.peek().is_some_and(|w| *w == "super") {
        at.pop();
        words.next();
    }
    for w in words {
        let mut next = at.clone();
        next.push(w.clone());
        if known.contains_key(&next) {
            at = next;
        } else {
            break;
        }
    }
    at
}

fn arrows(known: &BTreeMap<Module, PathBuf>) -> BTreeMap<Module, BTreeSet<Module>> {
    known
        .iter()
        .map(|(module, file)| {
            let text = strip(&std::fs::read_to_string(file).expect("readable"));
            let to = paths(&text)
                .into_iter()
                .map(|(first, rest)| resolve(module, &first, &rest, known))
                .filter(|target| target != module)
                .collect();
            (module.clone(), to)
        })
        .collect()
}

/// The strongly connected groups of more than one module (Tarjan).
fn circles(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct State<'a> {
        graph: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        on_stack: BTreeSet<&'a Module>,
        next: usize,
        found: Vec<Vec<Module>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Module) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        let graph = s.graph;
        for w in graph.get(v).into_iter().flatten() {
            let Some((w, _)) = graph.get_key_value(w) else {
                continue;
            };
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut group = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                group.push(w.clone());
                if w == v {
                    break;
                }
            }
            if group.len() > 1 {
                s.found.push(group);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.found
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_import_circle_between_the_runtimes_files() {
    let known = modules(&src());
    assert!(
        known.len() > 40,
        "the module walk found only {} files",
        known.len()
    );
    let graph = arrows(&known);
    let found = circles(&graph);
    let shown: Vec<String> = found
        .iter()
        .map(|group| {
            let names: Vec<String> = group
                .iter()
                .map(|m| {
                    known[m]
                        .strip_prefix(src())
                        .unwrap_or(&known[m])
                        .display()
                        .to_string()
                })
                .collect();
            let ties: Vec<String> = group
                .iter()
                .flat_map(|a| {
                    graph[a]
                        .iter()
                        .filter(|b| group.contains(b))
                        .map(move |b| format!("{} -> {}", a.join("::"), b.join("::")))
                })
                .collect();
            format!("{} ({})", names.join(", "), ties.join("; "))
        })
        .collect();
    assert!(shown.is_empty(), "import circles: {shown:#?}");
}

#[test]
fn the_check_sees_a_circle_when_there_is_one() {
    let known: BTreeMap<Module, PathBuf> = [vec!["a".to_string()], vec!["b".to_string()]]
        .into_iter()
        .map(|m| (m, PathBuf::new()))
        .collect();
    let a = vec!["a".to_string()];
    let b = vec!["b".to_string()];
    let text = strip("use crate::b::Thing;\n// use crate::nothing;\nfn f() { crate::a::g() }");
    let to: BTreeSet<Module> = paths(&text)
        .into_iter()
        .map(|(first, rest)| resolve(&a, &first, &rest, &known))
        .filter(|t| *t != a)
        .collect();
    assert_eq!(to, BTreeSet::from([b.clone()]));
    let graph = BTreeMap::from([
        (a.clone(), BTreeSet::from([b.clone()])),
        (b.clone(), BTreeSet::from([a.clone()])),
    ]);
    assert_eq!(circles(&graph).len(), 1);
    assert_eq!(
        expand("crate::core::{access::{Access, Grant}, error::RequestError}"),
        [
            "crate::core::access::Access",
            "crate::core::access::Grant",
            "crate::core::error::RequestError"
        ]
    );
}

#[test]
fn the_core_names_no_transport() {
    let core = src().join("core");
    let mut offenders = Vec::new();
    let mut pending = vec![core];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("a readable folder") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("readable");
            for (n, line) in text.lines().enumerate() {
                let named = ["tonic", "hyper::", "h2::", "_client::", "_server::"]
                    .iter()
                    .find(|t| line.contains(*t));
                if let Some(t) = named {
                    offenders.push(format!("{}:{}: {t}", path.display(), n + 1));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "transport in the core: {offenders:#?}"
    );
}
