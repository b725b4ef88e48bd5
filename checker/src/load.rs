//! Reading recorded files. A malformed line is an error naming the file, the line and what is
//! wrong, never a panic. A process killed while writing may leave its last line cut off (no
//! final newline); that one line is tolerated and reported. Blank lines and lines starting with
//! `#` are skipped.
//!
//! A history may also be Jepsen's `history.edn` of a register or cas-register test (module
//! [`edn`]); [`history`] tells the formats apart by the extension or the first form.

use std::path::{Path, PathBuf};

use history::{LedgerEvent, Op};

pub mod edn;

pub use edn::EdnError;

/// A recorded file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A line is not a valid record.
    #[error("{path}:{line}: {reason}")]
    Line {
        /// The file.
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A Jepsen `history.edn` breaks a rule of its mapping onto Ordeal's history.
    #[error("{path}:{}: {}: {}", error.line, error.rule, error.detail)]
    Edn {
        /// The file.
        path: PathBuf,
        /// The line and the rule.
        error: EdnError,
    },
}

/// A history, and whether its last line was cut off.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryFile {
    /// The events, in file order.
    pub ops: Vec<Op>,
    /// Each event's 1-based line.
    pub lines: Vec<usize>,
    /// The 1-based number of a truncated last line, if any (a recorder killed mid-write).
    pub truncated_line: Option<usize>,
}

/// Reads a history: `history.jsonl` (or any file in the format of the shared histories), or a
/// Jepsen `history.edn` of a register test, chosen by the extension `.edn` or, failing that,
/// by the first form (`{:` or `[`: EDN). In JSON lines a cut last line is tolerated and
/// reported; any other bad line is an error.
///
/// # Errors
///
/// [`LoadError`] naming the first bad line.
pub fn history(path: &Path) -> Result<HistoryFile, LoadError> {
    let text = read(path)?;
    if path.extension().is_some_and(|extension| extension == "edn") || edn::sniff(&text) {
        return edn::parse(&text)
            .map_err(|error| LoadError::Edn { path: path.to_path_buf(), error });
    }
    let (ops, lines, truncated_line) = json_lines::<Op>(path, &text, true)?;
    Ok(HistoryFile { ops, lines, truncated_line })
}

/// A replica's ledger events, and whether its last line was cut off.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerFile {
    /// The events, in the order written.
    pub events: Vec<LedgerEvent>,
    /// The 1-based number of a truncated last line, if any.
    pub truncated_line: Option<usize>,
}

/// Reads a `ledger.jsonl`.
///
/// # Errors
///
/// [`LoadError`] naming the first bad line (other than a truncated last line).
pub fn ledger(path: &Path) -> Result<LedgerFile, LoadError> {
    let text = read(path)?;
    let (events, _, truncated_line) = json_lines::<LedgerEvent>(path, &text, true)?;
    Ok(LedgerFile { events, truncated_line })
}

/// Records, their 1-based lines, and a tolerated truncated last line.
type Lines<T> = (Vec<T>, Vec<usize>, Option<usize>);

fn read(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path)
        .map_err(|error| LoadError::Read { path: path.to_path_buf(), reason: error.to_string() })
}

fn json_lines<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
    tolerate_truncated_tail: bool,
) -> Result<Lines<T>, LoadError> {
    let line_error =
        |line, reason: String| LoadError::Line { path: path.to_path_buf(), line, reason };
    let mut records = Vec::new();
    let mut numbers = Vec::new();
    let mut lines = text.split('\n').enumerate().peekable();
    while let Some((index, line)) = lines.next() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match serde_json::from_str::<T>(line) {
            Ok(record) => {
                records.push(record);
                numbers.push(index + 1);
            }
            // The last line without its newline was cut off while being written.
            Err(_) if tolerate_truncated_tail && lines.peek().is_none() => {
                return Ok((records, numbers, Some(index + 1)));
            }
            Err(error) => return Err(line_error(index + 1, error.to_string())),
        }
    }
    Ok((records, numbers, None))
}
