//! Tidy: repository-wide rules, checked as a test so that CI enforces them (STYLE.md 25;
//! TigerBeetle's `tidy.zig`).

use std::fs;
use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("harness/ has a parent").to_path_buf()
}

/// Every `.rs` file under `dir`, skipping build output.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).expect("readable source tree") {
            let path = entry.expect("readable entry").path();
            let name = path.file_name().and_then(|name| name.to_str()).unwrap_or("");
            if path.is_dir() && name != "target" && !name.starts_with('.') {
                pending.push(path);
            } else if name.ends_with(".rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn workspace_rust_files() -> Vec<PathBuf> {
    ["history", "replica", "harness", "nemesis", "workloads", "checker"]
        .iter()
        .flat_map(|krate| rust_files(&workspace_root().join(krate)))
        .collect()
}

/// Lines of code, without `//` comments (doc comments may name what they forbid).
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    let text = fs::read_to_string(path).expect("readable source file");
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
        .map(|(index, line)| (index + 1, line.to_string()))
        .collect()
}

/// Invariant: the protocol core does no IO, reads no clock and uses no global randomness.
#[test]
fn core_does_no_io() {
    let forbidden = [
        "tokio",
        "quinn",
        "std::net",
        "std::fs",
        "std::thread",
        "std::process",
        "std::env",
        "Instant::now",
        "SystemTime::now",
        "thread_rng",
        "rand::rng",
        "rand::random",
        "redb",
    ];
    let mut violations = Vec::new();
    for path in rust_files(&workspace_root().join("replica/src/core")) {
        for (number, line) in code_lines(&path) {
            for word in forbidden.iter().filter(|word| line.contains(*word)) {
                violations.push(format!("{}:{number}: {word}", path.display()));
            }
        }
    }
    assert!(violations.is_empty(), "the core must stay sans-IO:\n{}", violations.join("\n"));
}

/// Invariant: the checker is an independent oracle; it depends on `history` only.
#[test]
fn checker_depends_on_history_only() {
    let manifest =
        fs::read_to_string(workspace_root().join("checker/Cargo.toml")).expect("manifest");
    for krate in ["replica", "harness", "nemesis", "workloads"] {
        let depends = manifest.lines().any(|line| {
            let line = line.trim_start();
            line.starts_with(&format!("{krate} "))
                || line.starts_with(&format!("{krate}="))
                || line.starts_with(&format!("{krate}."))
        });
        assert!(!depends, "checker/Cargo.toml depends on {krate}");
    }
}

/// No test is switched off, and no test passes by panicking (rust-analyzer's style).
#[test]
fn no_ignored_or_should_panic_tests() {
    let patterns = [concat!("#[", "ignore"), concat!("#[", "should_panic")];
    for path in workspace_rust_files() {
        for (number, line) in code_lines(&path) {
            for pattern in patterns {
                assert!(!line.contains(pattern), "{}:{number}: {pattern}", path.display());
            }
        }
    }
}

/// Lines fit in 100 columns (rustfmt does not wrap comments or string literals).
#[test]
fn lines_fit_in_100_columns() {
    for path in workspace_rust_files() {
        let text = fs::read_to_string(&path).expect("readable source file");
        for (index, line) in text.lines().enumerate() {
            let width = line.chars().count();
            assert!(width <= 100, "{}:{}: {width} columns", path.display(), index + 1);
        }
    }
}
