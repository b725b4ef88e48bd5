//! Jepsen's `history.edn` for register and cas-register tests (what Knossos and Porcupine
//! read), mapped onto Ordeal's history events so that the same validation and the same
//! linearizability checker judge a Jepsen run.
//!
//! The EDN itself is read by the `clojure-reader` crate; this module only walks the forms it
//! returns. A file is either one map per line (as Jepsen's store writes it) or one vector or
//! list of maps (as Knossos's test data are written); either way each event keeps the line its
//! map starts on, so an error names it.
//!
//! # Mapping
//!
//! - `:type` `:invoke`, `:ok`, `:fail`, `:info` become [`OpKind`]s of the same name.
//! - `:process` n becomes [`Process::Client`]; `:process :nemesis` becomes [`Process::Nemesis`],
//!   which validation sets aside (its `:f` and `:value` are kept as text, never interpreted).
//! - `:f` `:read`, `:write`, `:cas` keep their names; any other client function is an error.
//! - `:value`: `nil` for a read's invocation, the value read on its `:ok`; the value written;
//!   `[from to]` for a cas. Values are integers, strings, keywords (as `":name"`), booleans or
//!   `nil` (the register's initial value).
//! - Single register: every operation gets no key (the checker's one unnamed register).
//!   `jepsen.independent`: when any read or write carries a vector value, or any cas a
//!   `[key [from to]]` value, every client value must be a `[key value]` tuple and the key
//!   (an integer, string or keyword, written as text) becomes the operation's key. A `:fail` or
//!   `:info` completion may carry `nil` instead of a tuple.
//! - `:time` (nanoseconds) becomes the event's time. A history with no `:time` at all (a
//!   hand-written one) gets each event's position as its time, which keeps the file's real-time
//!   order; a history where only some events have a `:time` is an error.
//! - `:index` is kept; `:error` is kept as text; other fields are ignored.
//!
//! # Rules
//!
//! Each violation is an [`EdnError`] naming the line and the rule:
//! - `edn-syntax`: the file is not EDN, or the vector or list of its events is not closed;
//! - `not-a-map`: an event is not a map;
//! - `missing-field`: an event has no `:type`, `:process` or `:f`;
//! - `unknown-type`: `:type` is not `:invoke`, `:ok`, `:fail` or `:info`;
//! - `bad-process`: `:process` is not a non-negative integer or `:nemesis`;
//! - `bad-time`: `:time` is not a non-negative integer, or only some events have one;
//! - `bad-index`: `:index` is not a non-negative integer;
//! - `unsupported-function`: a client `:f` other than `:read`, `:write` and `:cas`;
//! - `bad-value`: a value of the wrong shape for its function (see the mapping);
//! - `bad-tuple`: in a `jepsen.independent` history, a value that is not a `[key value]` tuple.
//!
//! Pairing invocations with completions (a completion without an invocation, a double invoke)
//! is not checked here: [`crate::validate::pair`] checks it for every history format alike.

use std::collections::BTreeMap;

use clojure_reader::edn::{self, Edn};
use clojure_reader::error::Code;
use history::{Op, OpKind, Process};
use serde_json::Value;

use super::HistoryFile;

/// What a Jepsen history may hold, for error messages.
pub const SUPPORTED: &str = "Ordeal checks Jepsen register and cas-register histories (:read, \
                             :write, :cas on one register, or jepsen.independent [key value] \
                             tuples)";

/// A Jepsen `history.edn` broke a rule of the mapping.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {rule}: {detail}")]
pub struct EdnError {
    /// The 1-based line where the offending event (or the syntax error) starts.
    pub line: usize,
    /// The rule, as named in the module documentation.
    pub rule: &'static str,
    /// What exactly.
    pub detail: String,
}

impl EdnError {
    fn new(line: usize, rule: &'static str, detail: impl Into<String>) -> EdnError {
        EdnError { line, rule, detail: detail.into() }
    }
}

/// Whether `text` looks like an EDN history rather than JSON lines: its first form is a map
/// whose first key is a keyword (`{:type ...`), a vector or a list (JSON lines never start with
/// one), or an EDN comment.
pub fn sniff(text: &str) -> bool {
    let start = skip_blank(text, 0);
    let rest = &text[start..];
    if rest.starts_with(['[', '(', ';']) {
        return true;
    }
    rest.strip_prefix('{').is_some_and(|map| map.trim_start().starts_with(':'))
}

/// Reads a Jepsen history from `text`.
///
/// # Errors
///
/// An [`EdnError`]: the first syntax error; else the first event whose own fields break a rule;
/// else the first whose time or value does not fit the rest of the history (`:time` on some
/// events only, a value of the wrong shape, a scalar among `jepsen.independent` tuples).
pub fn parse(text: &str) -> Result<HistoryFile, EdnError> {
    let forms = forms(text)?;
    let mut events = Vec::with_capacity(forms.len());
    for (line, form) in &forms {
        events.push(Event::new(*line, form)?);
    }
    let independent = events.iter().any(Event::looks_independent);
    let timed = events.first().is_some_and(|event| event.time.is_some());
    let mut ops = Vec::with_capacity(events.len());
    let mut lines = Vec::with_capacity(events.len());
    for (position, event) in events.iter().enumerate() {
        ops.push(event.op(position as u64, timed, independent)?);
        lines.push(event.line);
    }
    assert_eq!(ops.len(), lines.len());
    Ok(HistoryFile { ops, lines, truncated_line: None })
}

/// Skips EDN whitespace (which includes commas) and `;` comments from `offset`; returns the
/// offset of the next form, or `text.len()`.
pub(crate) fn skip_blank(text: &str, mut offset: usize) -> usize {
    // Each round consumes blanks and at most one comment, so it ends within `text.len()` rounds.
    for _ in 0..=text.len() {
        let rest = text[offset..].trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        offset = text.len() - rest.len();
        if !rest.starts_with(';') {
            break;
        }
        offset += rest.find('\n').unwrap_or(rest.len());
    }
    offset
}

/// Counts lines incrementally as a scan moves forward (a history may have millions of lines).
struct LineCounter {
    offset: usize,
    line: usize,
}

impl LineCounter {
    fn line_at(&mut self, text: &str, offset: usize) -> usize {
        assert!(offset >= self.offset, "the scan only moves forward");
        self.line += text.as_bytes()[self.offset..offset].iter().filter(|&&b| b == b'\n').count();
        self.offset = offset;
        self.line
    }
}

/// The top-level forms of the history (the elements of its vector or list, when the events are
/// in one), each with the line it starts on.
fn forms(text: &str) -> Result<Vec<(usize, Edn<'_>)>, EdnError> {
    let mut counter = LineCounter { offset: 0, line: 1 };
    let mut offset = skip_blank(text, 0);
    // The closing delimiter of the collection holding the events, if they are in one.
    let closer = match text[offset..].chars().next() {
        Some('[') => Some(']'),
        Some('(') => Some(')'),
        _ => None,
    };
    if closer.is_some() {
        offset = skip_blank(text, offset + 1);
    }
    let mut forms = Vec::new();
    while offset < text.len() {
        let line = counter.line_at(text, offset);
        if closer.is_some_and(|closer| text[offset..].starts_with(closer)) {
            let after = skip_blank(text, offset + 1);
            if after < text.len() {
                let line = counter.line_at(text, after);
                let detail = "text after the history's collection";
                return Err(EdnError::new(line, "edn-syntax", detail));
            }
            return Ok(forms);
        }
        let (form, rest) = edn::read(&text[offset..]).map_err(|error| {
            if error.code == Code::UnexpectedEOF {
                return EdnError::new(line, "edn-syntax", "the form starting here is not closed");
            }
            // The reader's line counts from the start of the form it was given.
            let at = error.line.map_or(line, |relative| line + relative - 1);
            let column = error.column.map(|column| format!(" at column {column}"));
            let detail = format!("{:?}{}", error.code, column.unwrap_or_default());
            EdnError::new(at, "edn-syntax", detail)
        })?;
        forms.push((line, form));
        offset = skip_blank(text, text.len() - rest.len());
    }
    if let Some(closer) = closer {
        let line = counter.line_at(text, offset);
        let detail = format!("the history's collection is not closed by `{closer}`");
        return Err(EdnError::new(line, "edn-syntax", detail));
    }
    Ok(forms)
}

/// One event: a map, with its line and the fields that do not depend on the rest of the
/// history, checked.
struct Event<'a, 'e> {
    line: usize,
    map: &'a BTreeMap<Edn<'e>, Edn<'e>>,
    kind: OpKind,
    process: Process,
    f: String,
    /// `:time`, when the event has one.
    time: Option<u64>,
    index: Option<u64>,
}

impl<'a, 'e> Event<'a, 'e> {
    fn new(line: usize, form: &'a Edn<'e>) -> Result<Event<'a, 'e>, EdnError> {
        let map = match form {
            Edn::Map(map) => Some(map),
            // A record printed with its type (`#jepsen.history.Op{...}`) is still a map.
            Edn::Tagged(_, inner) => match &**inner {
                Edn::Map(map) => Some(map),
                _ => None,
            },
            _ => None,
        };
        let Some(map) = map else {
            return Err(EdnError::new(line, "not-a-map", format!("an event is {}", kind(form))));
        };
        let mut event = Event {
            line,
            map,
            kind: OpKind::Info,
            process: Process::Nemesis,
            f: String::new(),
            time: None,
            index: None,
        };
        event.kind = match event.required("type")? {
            Edn::Key("invoke") => OpKind::Invoke,
            Edn::Key("ok") => OpKind::Ok,
            Edn::Key("fail") => OpKind::Fail,
            Edn::Key("info") => OpKind::Info,
            other => {
                let detail = format!("{other} is not :invoke, :ok, :fail or :info");
                return Err(event.error("unknown-type", detail));
            }
        };
        event.process = match event.required("process")? {
            Edn::Key("nemesis") => Process::Nemesis,
            Edn::Int(number) if *number >= 0 => Process::Client(*number as u64),
            other => {
                let detail = format!("{other} is not a non-negative integer or :nemesis");
                return Err(event.error("bad-process", detail));
            }
        };
        event.f = match event.required("f")? {
            Edn::Key(name) | Edn::Str(name) | Edn::Symbol(name) => (*name).to_string(),
            other => other.to_string(),
        };
        if event.process != Process::Nemesis
            && !matches!(event.f.as_str(), "read" | "write" | "cas")
        {
            let detail = format!(":f :{} ({SUPPORTED})", event.f);
            return Err(event.error("unsupported-function", detail));
        }
        event.time = event.natural("time", "bad-time")?;
        event.index = event.natural("index", "bad-index")?;
        Ok(event)
    }

    /// The optional non-negative integer field `name`; anything else breaks `rule`.
    fn natural(&self, name: &'static str, rule: &'static str) -> Result<Option<u64>, EdnError> {
        match self.field(name) {
            None => Ok(None),
            Some(Edn::Int(number)) if *number >= 0 => Ok(Some(*number as u64)),
            Some(other) => {
                Err(self.error(rule, format!(":{name} {other} is not a non-negative integer")))
            }
        }
    }

    fn field(&self, name: &'static str) -> Option<&'a Edn<'e>> {
        self.map.get(&Edn::Key(name))
    }

    fn required(&self, name: &'static str) -> Result<&'a Edn<'e>, EdnError> {
        self.field(name).ok_or_else(|| self.error("missing-field", format!("no :{name}")))
    }

    fn error(&self, rule: &'static str, detail: impl Into<String>) -> EdnError {
        EdnError::new(self.line, rule, detail)
    }

    /// Whether the value is a `jepsen.independent` tuple (a single register's read and write
    /// values are scalars, its cas values `[from to]` of scalars).
    fn looks_independent(&self) -> bool {
        if self.process == Process::Nemesis {
            return false;
        }
        match (self.f.as_str(), self.field("value")) {
            ("read" | "write", Some(Edn::Vector(_) | Edn::List(_))) => true,
            ("cas", Some(value @ (Edn::Vector(_) | Edn::List(_)))) => {
                matches!(value.nth(1), Some(Edn::Vector(_) | Edn::List(_)))
            }
            _ => false,
        }
    }

    /// The history event; `position` is the event's 0-based place in the file.
    fn op(&self, position: u64, timed: bool, independent: bool) -> Result<Op, EdnError> {
        let kind = self.kind;
        let time = match (self.time, timed) {
            (Some(time), true) => time,
            (None, false) => position,
            (Some(_), false) => return Err(self.error("bad-time", "the first event has no :time")),
            (None, true) => return Err(self.error("bad-time", "no :time, unlike the first event")),
        };
        let error = self.field("error").map(|error| match error {
            Edn::Str(text) => (*text).to_string(),
            other => other.to_string(),
        });
        let value = self.field("value").unwrap_or(&Edn::Nil);
        let (key, value) = if self.process == Process::Nemesis {
            let text =
                if *value == Edn::Nil { Value::Null } else { Value::String(value.to_string()) };
            (None, text)
        } else if independent {
            self.tuple(kind, value)?
        } else {
            (None, self.value(kind, value)?)
        };
        Ok(Op {
            index: self.index,
            time,
            process: self.process,
            kind,
            f: self.f.clone(),
            key,
            value,
            client: None,
            request: None,
            proof: None,
            error,
        })
    }

    /// A `jepsen.independent` value: the key, and the value for that key.
    fn tuple(&self, kind: OpKind, value: &Edn<'e>) -> Result<(Option<String>, Value), EdnError> {
        let elements = match value {
            Edn::Vector(elements) | Edn::List(elements) if elements.len() == 2 => elements,
            Edn::Nil if matches!(kind, OpKind::Fail | OpKind::Info) => {
                return Ok((None, Value::Null));
            }
            other => {
                let detail = format!("{other} is not a [key value] tuple (jepsen.independent)");
                return Err(self.error("bad-tuple", detail));
            }
        };
        let key = match &elements[0] {
            Edn::Int(number) => number.to_string(),
            Edn::Str(name) | Edn::Key(name) => (*name).to_string(),
            other => {
                let detail = format!("the key {other} is not an integer, string or keyword");
                return Err(self.error("bad-tuple", detail));
            }
        };
        Ok((Some(key), self.value(kind, &elements[1])?))
    }

    /// The value of a single-register operation, checked against its function.
    fn value(&self, kind: OpKind, value: &Edn<'e>) -> Result<Value, EdnError> {
        let completion = kind != OpKind::Invoke;
        let shape = match self.f.as_str() {
            "read" | "write" => scalar(value),
            _ => match value {
                Edn::Nil if completion => Some(Value::Null),
                Edn::Vector(pair) | Edn::List(pair) if pair.len() == 2 => {
                    scalar(&pair[0]).zip(scalar(&pair[1])).map(|(from, to)| json_pair(from, to))
                }
                _ => None,
            },
        };
        let nil_written = self.f == "write" && kind == OpKind::Invoke && *value == Edn::Nil;
        match shape {
            Some(value) if !nil_written => Ok(value),
            _ => {
                let expected = match self.f.as_str() {
                    "read" => "nil or a value read",
                    "write" => "the value written (an integer, string, keyword or boolean)",
                    _ => "[from to]",
                };
                let detail = format!(":{} value {value}: expected {expected}", self.f);
                Err(self.error("bad-value", detail))
            }
        }
    }
}

fn json_pair(from: Value, to: Value) -> Value {
    Value::Array(vec![from, to])
}

/// The JSON of a register value, or `None` when `value` is not one.
fn scalar(value: &Edn<'_>) -> Option<Value> {
    match value {
        Edn::Nil => Some(Value::Null),
        Edn::Int(number) => Some(Value::from(*number)),
        Edn::Bool(flag) => Some(Value::Bool(*flag)),
        Edn::Str(text) => Some(Value::String((*text).to_string())),
        Edn::Key(name) => Some(Value::String(format!(":{name}"))),
        _ => None,
    }
}

/// What kind of form `form` is, for messages.
fn kind(form: &Edn<'_>) -> &'static str {
    match form {
        Edn::Vector(_) => "a vector",
        Edn::List(_) => "a list",
        Edn::Set(_) => "a set",
        Edn::Key(_) => "a keyword",
        Edn::Symbol(_) => "a symbol",
        Edn::Str(_) => "a string",
        Edn::Int(_) => "an integer",
        Edn::Nil => "nil",
        Edn::Tagged(..) => "a tagged form",
        _ => "another scalar",
    }
}
