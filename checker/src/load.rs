//! Reading recorded files. A malformed line is an error naming the file, the line and what is
//! wrong, never a panic. A process killed while writing may leave its last line cut off (no
//! final newline); that one line is tolerated and reported. Blank lines and lines starting with
//! `#` are skipped. JSON lines are read one line at a time ([`history_events`]), never as one
//! text.
//!
//! A history may also be Jepsen's `history.edn` of a register or cas-register test (module
//! [`edn`]); [`history`] tells the formats apart by the extension or the first form.

use std::fs::File;
use std::io::{BufRead as _, BufReader};
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
    let (mut ops, mut lines) = (Vec::new(), Vec::new());
    let truncated_line = history_events(path, |line, op| {
        ops.push(op);
        lines.push(line);
    })?;
    Ok(HistoryFile { ops, lines, truncated_line })
}

/// Reads a history like [`history`], handing each event and its 1-based line to `visit` in
/// file order instead of keeping them: a JSON-lines history is streamed, so only one line is
/// in memory at a time (a Jepsen `history.edn` is still read whole). Returns the number of a
/// tolerated truncated last line. `visit` may have seen events when an error comes: the error
/// is the same as [`history`]'s, the one that matters.
///
/// # Errors
///
/// [`LoadError`] naming the first bad line.
pub fn history_events(
    path: &Path,
    mut visit: impl FnMut(usize, Op),
) -> Result<Option<usize>, LoadError> {
    let mut pieces = Pieces::open(path)?;
    let edn_named = path.extension().is_some_and(|extension| extension == "edn");
    // The first lines decide the format; they are kept to be read again.
    let mut head = String::new();
    while !edn_named && !sniff_decided(&head) && pieces.next(&mut head)? {}
    if edn_named || edn::sniff(&head) {
        while pieces.next(&mut head)? {}
        let file = edn::parse(&head)
            .map_err(|error| LoadError::Edn { path: path.to_path_buf(), error })?;
        for (op, line) in file.ops.into_iter().zip(file.lines) {
            visit(line, op);
        }
        return Ok(None);
    }
    json_lines(&mut pieces, &head, visit)
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
    let mut pieces = Pieces::open(path)?;
    let mut events = Vec::new();
    let truncated_line = json_lines(&mut pieces, "", |_, event| events.push(event))?;
    Ok(LedgerFile { events, truncated_line })
}

/// Whether `head`, the first lines of a history, is enough for [`edn::sniff`]: it holds a first
/// form, and when that is a map, what follows its brace.
fn sniff_decided(head: &str) -> bool {
    let rest = &head[edn::skip_blank(head, 0)..];
    match rest.strip_prefix('{') {
        Some(map) => !map.trim_start().is_empty(),
        None => !rest.is_empty(),
    }
}

/// A file read one piece at a time, a piece being what lies between two newlines (the last
/// piece has none after it), as `str::split('\n')` would cut the whole text.
struct Pieces<'a> {
    path: &'a Path,
    reader: BufReader<File>,
}

impl<'a> Pieces<'a> {
    fn open(path: &'a Path) -> Result<Pieces<'a>, LoadError> {
        let file = File::open(path).map_err(|error| read_error(path, &error))?;
        Ok(Pieces { path, reader: BufReader::with_capacity(PIECES_BUFFER_SIZE, file) })
    }

    /// Appends the next piece, with its newline if it has one, to `text`; false at the end.
    fn next(&mut self, text: &mut String) -> Result<bool, LoadError> {
        // `read_line` refuses bytes that are not UTF-8 with the error `read_to_string` gives.
        let size = self.reader.read_line(text).map_err(|error| read_error(self.path, &error))?;
        Ok(size > 0)
    }
}

/// The read buffer of [`Pieces`], bytes.
const PIECES_BUFFER_SIZE: usize = 1 << 16;

fn read_error(path: &Path, error: &std::io::Error) -> LoadError {
    LoadError::Read { path: path.to_path_buf(), reason: error.to_string() }
}

/// Parses the JSON lines of `head` (whole pieces already read) and then of the rest of
/// `pieces`, handing each record and its 1-based line to `visit`; returns the number of a
/// tolerated truncated last line. Blank lines and `#` comments are skipped.
fn json_lines<T: serde::de::DeserializeOwned>(
    pieces: &mut Pieces<'_>,
    head: &str,
    mut visit: impl FnMut(usize, T),
) -> Result<Option<usize>, LoadError> {
    let path = pieces.path;
    let mut number = 0;
    let mut truncated_line = None;
    let mut handle = |piece: &str| -> Result<(), LoadError> {
        number += 1;
        let line = piece.trim();
        if line.is_empty() || line.starts_with('#') {
            return Ok(());
        }
        match serde_json::from_str::<T>(line) {
            Ok(record) => visit(number, record),
            // The last line without its newline was cut off while being written.
            Err(_) if !piece.ends_with('\n') => truncated_line = Some(number),
            Err(error) => {
                let reason = error.to_string();
                return Err(LoadError::Line { path: path.to_path_buf(), line: number, reason });
            }
        }
        Ok(())
    };
    let mut first_error = head.split_inclusive('\n').map(&mut handle).find_map(Result::err);
    let mut piece = String::new();
    loop {
        piece.clear();
        if !pieces.next(&mut piece)? {
            break;
        }
        // After a bad line the rest is still read, so that a later byte that is not UTF-8
        // is the error, as it is for `std::fs::read_to_string` (the file is one text).
        if first_error.is_none() {
            first_error = handle(&piece).err();
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(truncated_line),
    }
}
