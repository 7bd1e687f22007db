//! Tidy checks on the workspace's own sources (rust-analyzer's `tidy.rs` pattern): rules that
//! code review would otherwise have to remember. Each failure names the file and line.
//!
//! - No unseeded randomness outside `terrain-model/src/rng.rs` (everything random takes a seed).
//! - Every source file of a crate appears in ARCHITECTURE.md's code map (by its path below
//!   `src/`, or its directory's).
//! - Library crates depend on no binary-only crates (`anyhow`, `clap`, `tracing-subscriber`,
//!   `indicatif` — the report crate alone draws progress bars), and terrain-model and
//!   terrain-curvature on no heavy ones (`polars`, `plotters`, non-optional `hf-hub`).
//! - Library error messages name no command-line flags or commands: a library does not know
//!   which program calls it (the binary adds hints).
//! - Every library crate warns on missing docs.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace root")
        .to_path_buf()
}

/// Every `.rs` file below `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "target") {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The workspace's crates: (directory, is a library crate whose rules apply).
fn crates() -> Vec<(PathBuf, String)> {
    let mut out: Vec<(PathBuf, String)> = std::fs::read_dir(root().join("crates"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (p, name)
        })
        .collect();
    out.sort();
    out
}

/// Crates that are not libraries of terrain: the binary, and the test kit (dev-only).
fn is_library(name: &str) -> bool {
    !matches!(name, "terrain-cli" | "terrain-testkit")
}

/// The code of a line with `//` comments removed (doc comments included), strings kept.
fn code_part(line: &str) -> &str {
    let mut in_str = false;
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match c {
            '"' if prev != '\\' => in_str = !in_str,
            '/' if !in_str && prev == '/' => return &line[..i - 1],
            _ => {}
        }
        prev = c;
    }
    line
}

/// The string literals of a line of code (simple scanner: enough for this code base).
fn string_literals(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    let mut prev = ' ';
    for c in code.chars() {
        match (&mut cur, c) {
            (None, '"') => cur = Some(String::new()),
            (Some(s), '"') if prev != '\\' => {
                out.push(std::mem::take(s));
                cur = None;
            }
            (Some(s), c) => s.push(c),
            _ => {}
        }
        prev = c;
    }
    if let Some(s) = cur {
        out.push(s); // a literal continued on the next line
    }
    out
}

fn relative(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}

#[test]
fn no_unseeded_randomness_outside_rng_rs() {
    let banned = [
        "Tensor::randn(",
        "Tensor::rand(",
        "randn_like(",
        "rand_like(",
        "rand::rng()",
        "thread_rng(",
        "rand::random",
        "OsRng",
        "from_entropy(",
        "from_os_rng(",
    ];
    let allowed = root().join("crates/terrain-model/src/rng.rs");
    let mut bad = Vec::new();
    let mut dirs: Vec<PathBuf> = crates().into_iter().map(|(d, _)| d).collect();
    dirs.extend([root().join("xtask"), root().join("tests")]);
    for dir in dirs {
        for f in rust_files(&dir) {
            if f == allowed || f.ends_with("tests/tidy.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&f).unwrap();
            for (i, line) in text.lines().enumerate() {
                let code = code_part(line);
                if let Some(b) = banned.iter().find(|b| code.contains(*b)) {
                    bad.push(format!("{}:{}: `{b}`", relative(&f), i + 1));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "unseeded randomness (draw from terrain_model::rng instead):\n{}",
        bad.join("\n")
    );
}

#[test]
fn every_source_file_is_in_the_code_map() {
    let map = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let mut missing = Vec::new();
    let mut srcs: Vec<(PathBuf, String)> = crates()
        .into_iter()
        .map(|(d, n)| (d.join("src"), n))
        .collect();
    srcs.push((root().join("xtask/src"), "xtask".into()));
    srcs.push((root().join("tests/src"), "tests".into()));
    for (src, name) in srcs {
        if !map.contains(&name) {
            missing.push(format!("crate {name}"));
        }
        for f in rust_files(&src) {
            let rel = f.strip_prefix(&src).unwrap();
            let rel_s = rel.display().to_string();
            if matches!(rel_s.as_str(), "lib.rs" | "main.rs") {
                continue;
            }
            let dir_listed = rel
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .is_some_and(|p| map.contains(&format!("{}/", p.display())));
            let file_listed = map.contains(&format!("`{rel_s}`"))
                || map.contains(&format!("{rel_s} "))
                || map.contains(&format!("{rel_s},"))
                || map.contains(&format!("/{rel_s}"));
            if !(file_listed || dir_listed) {
                missing.push(format!("{name}: {rel_s}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "source files missing from ARCHITECTURE.md's code map:\n{}",
        missing.join("\n")
    );
}

/// `(name, optional)` of the `[dependencies]` of a manifest (not dev- or build-dependencies).
fn dependencies(manifest: &Path) -> Vec<(String, bool)> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let mut out = Vec::new();
    let mut in_deps = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_deps = t == "[dependencies]";
            continue;
        }
        if !in_deps || t.is_empty() || t.starts_with('#') {
            continue;
        }
        if let Some((name, rest)) = t.split_once('=') {
            let name = name
                .trim()
                .trim_end_matches(".workspace")
                .trim()
                .to_string();
            out.push((name, rest.contains("optional = true")));
        }
    }
    out
}

#[test]
fn library_manifests_stay_lean() {
    let mut bad = Vec::new();
    for (dir, name) in crates() {
        if !is_library(&name) {
            continue;
        }
        let deps = dependencies(&dir.join("Cargo.toml"));
        for (dep, optional) in &deps {
            let binary_only = matches!(
                dep.as_str(),
                "anyhow" | "clap" | "tracing-subscriber" | "terrain-cli"
            ) || (dep == "indicatif" && name != "terrain-report");
            let heavy_in_base = matches!(name.as_str(), "terrain-model" | "terrain-curvature")
                && (matches!(dep.as_str(), "polars" | "plotters" | "terrain-report")
                    || (dep == "hf-hub" && !optional));
            if binary_only || heavy_in_base {
                bad.push(format!("{name} depends on {dep}"));
            }
        }
    }
    assert!(bad.is_empty(), "library manifests:\n{}", bad.join("\n"));
}

#[test]
fn library_errors_name_no_command_line_flags() {
    let mut bad = Vec::new();
    for (dir, name) in crates() {
        if !is_library(&name) {
            continue;
        }
        for f in rust_files(&dir.join("src")) {
            let text = std::fs::read_to_string(&f).unwrap();
            for (i, line) in text.lines().enumerate() {
                for lit in string_literals(code_part(line)) {
                    let flag = lit.match_indices("--").any(|(at, _)| {
                        let before = lit[..at].chars().last();
                        let after = lit[at + 2..].chars().next();
                        before.is_none_or(|c| c.is_whitespace() || "`'(".contains(c))
                            && after.is_some_and(|c| c.is_ascii_lowercase())
                    });
                    let command = lit.contains("`terrain ") || lit.contains("cargo xtask");
                    if flag || command {
                        bad.push(format!("{}:{}: \"{lit}\"", relative(&f), i + 1));
                    }
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "library strings naming command-line flags or commands (the binary adds such hints):\n{}",
        bad.join("\n")
    );
}

#[test]
fn every_library_warns_on_missing_docs() {
    for (dir, name) in crates() {
        let lib = dir.join("src/lib.rs");
        if !lib.is_file() || !is_library(&name) && name != "terrain-testkit" {
            continue;
        }
        let text = std::fs::read_to_string(&lib).unwrap();
        assert!(
            text.contains("#![warn(missing_docs)]") || text.contains("#![deny(missing_docs)]"),
            "{name}: lib.rs lacks #![warn(missing_docs)]"
        );
    }
}

#[test]
fn the_scanners_find_what_they_look_for() {
    // The checks above can fail: their scanners see flags, literals and comments correctly.
    assert_eq!(code_part("let x = 1; // Tensor::randn("), "let x = 1; ");
    assert_eq!(code_part("let s = \"a // b\";"), "let s = \"a // b\";");
    assert_eq!(
        string_literals(r#"err("use --arch here", "x")"#),
        ["use --arch here", "x"]
    );
    let deps = dependencies(&root().join("crates/terrain-model/Cargo.toml"));
    assert!(deps.iter().any(|(d, _)| d == "candle-core"), "{deps:?}");
    assert!(deps.iter().any(|(d, o)| d == "hf-hub" && *o), "{deps:?}");
}
