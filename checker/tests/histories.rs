//! Every benchmark history gets the verdict its `.meta.json` expects: the copies of the 1k-op
//! files kept in `tests/histories/`, and every file of `../shared/histories/` (10k and 100k
//! operations too) when the workspace sits next to it.

use std::path::{Path, PathBuf};

use checker::audit::{Inputs, Report};
use history::Verdict;

fn check(path: &Path) -> Report {
    // The path `ordeal check` takes: each event paired as it is read.
    let history = checker::audit::History::load(path).expect("loads");
    checker::audit::check(Inputs { history: Some(Ok(history)), ..Inputs::default() })
}

fn expected(path: &Path) -> Verdict {
    let meta = PathBuf::from(format!("{}.meta.json", path.display()));
    let text = std::fs::read_to_string(&meta).expect("every history has its .meta.json");
    let value: serde_json::Value = serde_json::from_str(&text).expect("meta is JSON");
    match value["expected"].as_str() {
        Some("ok") => Verdict::Valid,
        Some("illegal") => Verdict::Invalid,
        other => panic!("{}: unexpected expectation {other:?}", meta.display()),
    }
}

/// Checks every `.jsonl` of `dir`; returns how many.
fn check_dir(dir: &Path) -> usize {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("readable")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "jsonl"))
        .collect();
    files.sort();
    for path in &files {
        let report = check(path);
        assert_eq!(
            report.verdict,
            expected(path),
            "{}: {:#?}",
            path.display(),
            report.checkers.get("linearizable")
        );
    }
    files.len()
}

#[test]
fn the_kept_histories_get_their_expected_verdicts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/histories");
    assert_eq!(check_dir(&dir), 9);
}

#[test]
fn the_shared_histories_get_their_expected_verdicts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/histories");
    if dir.is_dir() {
        assert!(check_dir(&dir) >= 9);
    }
}
