//! Reading recorded files. A malformed line is an error naming the file, the line and what is
//! wrong, never a panic. A replica killed while writing may leave its last ledger line
//! truncated; that one line is tolerated and reported.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use history::{LedgerEvent, Op};

/// A recorded file could not be read.
#[derive(Debug, thiserror::Error)]
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
}

/// A history, and whether its last line was cut off.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryFile {
    /// The events, in file order.
    pub ops: Vec<Op>,
    /// The 1-based number of a truncated last line, if any (a recorder killed mid-write).
    pub truncated_line: Option<usize>,
}

/// Reads a history (`history.jsonl` or any file in the format of the shared histories). A cut
/// last line is tolerated and reported; any other bad line is an error.
///
/// # Errors
///
/// [`LoadError`] naming the first bad line.
pub fn history(path: &Path) -> Result<HistoryFile, LoadError> {
    let (ops, truncated_line) = json_lines::<Op>(path, true)?;
    Ok(HistoryFile { ops, truncated_line })
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
    let (events, truncated_line) = json_lines::<LedgerEvent>(path, true)?;
    Ok(LedgerFile { events, truncated_line })
}

fn json_lines<T: serde::de::DeserializeOwned>(
    path: &Path,
    tolerate_truncated_tail: bool,
) -> Result<(Vec<T>, Option<usize>), LoadError> {
    let read_error = |reason: String| LoadError::Read { path: path.to_path_buf(), reason };
    let file = std::fs::File::open(path).map_err(|error| read_error(error.to_string()))?;
    let reader = BufReader::new(file);
    let mut records = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (index, line) in reader.lines().enumerate() {
        let line = line.map_err(|error| read_error(error.to_string()))?;
        if let Some((number, reason)) = pending.take() {
            return Err(LoadError::Line { path: path.to_path_buf(), line: number, reason });
        }
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<T>(&line) {
            Ok(record) => records.push(record),
            Err(error) => pending = Some((index + 1, error.to_string())),
        }
    }
    match pending {
        Some((number, _)) if tolerate_truncated_tail => Ok((records, Some(number))),
        Some((number, reason)) => {
            Err(LoadError::Line { path: path.to_path_buf(), line: number, reason })
        }
        None => Ok((records, None)),
    }
}
