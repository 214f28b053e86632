//! The source tree keeps the shape ARCHITECTURE.md promises: no file in `src/` over 700
//! lines, no import circle between the crate's top-level modules, `unsafe` only in the
//! files allowed to hold it, and a `//!` header on every file.
//!
//! It reads the sources as text (`use crate::x` / `crate::x::` paths outside test modules),
//! which is exactly how a reader meets the dependencies.
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Top-level module of a file: `src/session/head.rs` → `session`.
fn module_of(path: &Path) -> String {
    let rel = path.strip_prefix(src()).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The file without its `#[cfg(test)]` tail (tests may use anything).
fn code_of(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |i| &text[..i])
}

fn all() -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let t = fs::read_to_string(&p).unwrap();
            (p, t)
        })
        .collect()
}

#[test]
fn no_file_over_700_lines_and_every_file_has_a_header() {
    for (p, text) in all() {
        let n = text.lines().count();
        assert!(n <= 700, "{} has {n} lines (split it)", p.display());
        assert!(
            text.starts_with("//!"),
            "{} does not start with a //! header",
            p.display()
        );
    }
}

#[test]
fn no_import_circle_between_top_level_modules() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (p, text) in all() {
        let m = module_of(&p);
        if m == "lib" || m == "main" {
            continue;
        }
        // Code lines only: a doc comment may name another module without using it.
        let code: String = code_of(&text)
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() && name != m {
                edges.entry(m.clone()).or_default().insert(name);
            }
        }
    }
    // A module that can reach itself again through its dependencies is in a circle.
    for start in edges.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        while let Some((m, path)) = stack.pop() {
            for next in edges.get(&m).into_iter().flatten() {
                if next == start {
                    panic!("import circle: {} -> {start}", path.join(" -> "));
                }
                if seen.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
}

#[test]
fn unsafe_lives_only_where_it_is_allowed() {
    // The ring and raw syscalls, the shared-memory counters, the session submissions that
    // hand their own buffers to the kernel, and adopting inherited listeners at start.
    let allowed = [
        "ring/mod.rs",
        "ring/bufring.rs",
        "sys.rs",
        "shm.rs",
        "conn.rs",
        "server.rs",
        "session/head.rs",
        "session/request.rs",
        "session/response.rs",
    ];
    for (p, text) in all() {
        let rel = p.strip_prefix(src()).unwrap().to_string_lossy().to_string();
        let code = code_of(&text);
        let has = code.lines().any(|l| {
            let l = l.trim_start();
            !l.starts_with("//") && (l.contains("unsafe {") || l.contains("unsafe fn"))
        });
        if has {
            assert!(
                allowed.contains(&rel.as_str()),
                "{rel} uses unsafe; keep it in {allowed:?}"
            );
        }
    }
}
