//! JUnit XML reports for CI systems (`--junit FILE` on `ordeal test`, `ordeal sim` and
//! `ci/gate`, the last through the hidden `ordeal junit`).
//!
//! A [`Report`] is one `<testsuites>` document of [`Suite`]s of [`Case`]s; [`Report::to_xml`]
//! writes it with quick-xml's writer, which escapes every attribute and text (never string
//! concatenation of XML). The document follows Ordeal's own schema of the JUnit XML format as
//! CI systems read it (`src/junit/junit.xsd`, which the tests validate every report against):
//! counts on `<testsuites>` (tests, failures, errors, time) and on every `<testsuite>` (tests,
//! failures, errors, skipped, time).
//!
//! It is not a JUnit reader: Ordeal only writes these files.
//!
//! # Layout
//!
//! - [`Report`], [`Suite`], [`Case`], [`Outcome`]: the model and the writer.
//! - [`parse_cases`]: the tab-separated cases file of `ordeal junit` (its format is there).
//! - [`run_case`]: one run of `ordeal test` or `ordeal sim` as a case, from its `results.json`.

use std::borrow::Cow;
use std::path::Path;

use anyhow::Context as _;
use quick_xml::Writer;
use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesDecl, BytesText, Event};
use quick_xml::name::QName;

/// The most cases one cases file may hold (a gate has a few hundred).
pub const CASES_MAX: usize = 100_000;

/// A `<testsuites>` document.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The document's name (`<testsuites name>`).
    pub name: String,
    /// Its suites.
    pub suites: Vec<Suite>,
}

/// A `<testsuite>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Suite {
    /// The suite's name.
    pub name: String,
    /// Its cases, in order.
    pub cases: Vec<Case>,
}

/// A `<testcase>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// The case's name (test name and seed, or the gate's row label).
    pub name: String,
    /// The group CI systems file it under (`ordeal.test`, `ordeal.sim`, `ci.gate`).
    pub classname: String,
    /// Wall-clock seconds it took.
    pub time_s: f64,
    /// How it ended.
    pub outcome: Outcome,
}

/// How a case ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// As expected.
    Passed,
    /// Judged otherwise than expected: `<failure message>text</failure>`.
    Failed {
        /// One line: the verdict and the failing oracles.
        message: String,
        /// The details: verdict, oracles, where the run is stored, the command reproducing it.
        text: String,
    },
    /// The harness itself failed, so there is no verdict: `<error message>text</error>`.
    Errored {
        /// One line: what went wrong.
        message: String,
        /// The details.
        text: String,
    },
    /// Not run: `<skipped message/>`.
    Skipped {
        /// Why.
        message: String,
    },
}

/// The counts of a list of cases.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Counts {
    tests: usize,
    failures: usize,
    errors: usize,
    skipped: usize,
    time_s: f64,
}

impl Counts {
    fn of<'a>(cases: impl IntoIterator<Item = &'a Case>) -> Counts {
        let mut counts = Counts::default();
        for case in cases {
            counts.tests += 1;
            counts.time_s += seconds(case.time_s);
            match case.outcome {
                Outcome::Passed => {}
                Outcome::Failed { .. } => counts.failures += 1,
                Outcome::Errored { .. } => counts.errors += 1,
                Outcome::Skipped { .. } => counts.skipped += 1,
            }
        }
        counts
    }
}

impl Report {
    /// A report of one suite.
    pub fn single(name: &str, cases: Vec<Case>) -> Report {
        Report { name: name.to_string(), suites: vec![Suite { name: name.to_string(), cases }] }
    }

    /// Whether any case failed or errored.
    pub fn failed(&self) -> bool {
        let counts = Counts::of(self.suites.iter().flat_map(|suite| &suite.cases));
        counts.failures + counts.errors > 0
    }

    /// The document, UTF-8, indented by two spaces.
    pub fn to_xml(&self) -> String {
        let mut writer = Writer::new_with_indent(Vec::new(), b' ', 2);
        self.write_into(&mut writer).expect("writing to memory cannot fail");
        let bytes = writer.into_inner();
        let mut text = String::from_utf8(bytes).expect("quick-xml writes the UTF-8 it is given");
        text.push('\n');
        text
    }

    fn write_into(&self, writer: &mut Writer<Vec<u8>>) -> std::io::Result<()> {
        writer.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
        let total = Counts::of(self.suites.iter().flat_map(|suite| &suite.cases));
        writer
            .create_element("testsuites")
            .with_attribute(attribute("name", &self.name))
            .with_attribute(attribute("tests", &total.tests.to_string()))
            .with_attribute(attribute("failures", &total.failures.to_string()))
            .with_attribute(attribute("errors", &total.errors.to_string()))
            .with_attribute(attribute("time", &format!("{:.3}", total.time_s)))
            .write_inner_content(|writer| {
                for suite in &self.suites {
                    suite.write_into(writer)?;
                }
                Ok(())
            })?;
        Ok(())
    }

    /// Writes the document to `path` (its directory must exist).
    ///
    /// # Errors
    ///
    /// When the file cannot be written.
    pub fn write_file(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, self.to_xml())
            .with_context(|| format!("writing the JUnit report {}", path.display()))
    }
}

impl Suite {
    fn write_into(&self, writer: &mut Writer<Vec<u8>>) -> std::io::Result<()> {
        let counts = Counts::of(&self.cases);
        writer
            .create_element("testsuite")
            .with_attribute(attribute("name", &self.name))
            .with_attribute(attribute("tests", &counts.tests.to_string()))
            .with_attribute(attribute("failures", &counts.failures.to_string()))
            .with_attribute(attribute("errors", &counts.errors.to_string()))
            .with_attribute(attribute("skipped", &counts.skipped.to_string()))
            .with_attribute(attribute("time", &format!("{:.3}", counts.time_s)))
            .write_inner_content(|writer| {
                for case in &self.cases {
                    case.write_into(writer)?;
                }
                Ok(())
            })?;
        Ok(())
    }
}

impl Case {
    fn write_into(&self, writer: &mut Writer<Vec<u8>>) -> std::io::Result<()> {
        let element = writer
            .create_element("testcase")
            .with_attribute(attribute("name", &self.name))
            .with_attribute(attribute("classname", &self.classname))
            .with_attribute(attribute("time", &format!("{:.3}", seconds(self.time_s))));
        let (tag, message, text) = match &self.outcome {
            Outcome::Passed => {
                element.write_empty()?;
                return Ok(());
            }
            Outcome::Failed { message, text } => ("failure", message, Some(text)),
            Outcome::Errored { message, text } => ("error", message, Some(text)),
            Outcome::Skipped { message } => ("skipped", message, None),
        };
        element.write_inner_content(|writer| {
            let inner = writer.create_element(tag).with_attribute(attribute("message", message));
            match text {
                Some(text) => {
                    let text = xml_chars(text);
                    inner.write_text_content(BytesText::new(&text))?;
                }
                None => {
                    inner.write_empty()?;
                }
            }
            Ok(())
        })?;
        Ok(())
    }
}

/// A finite, non-negative number of seconds (a clock that went backwards counts as 0).
fn seconds(time_s: f64) -> f64 {
    if time_s.is_finite() && time_s > 0.0 { time_s } else { 0.0 }
}

/// An attribute, escaped by quick-xml; newlines, carriage returns and tabs also become
/// character references, which a parser's attribute-value normalisation would otherwise turn
/// into spaces.
fn attribute<'a>(key: &'a str, value: &str) -> Attribute<'a> {
    let escaped = quick_xml::escape::escape(xml_chars(value).as_ref()).into_owned();
    let escaped = escaped.replace('\n', "&#10;").replace('\r', "&#13;").replace('\t', "&#9;");
    Attribute { key: QName(key), value: Cow::Owned(escaped) }
}

/// `text` with the characters XML 1.0 cannot hold at all (control characters other than tab,
/// newline and carriage return, such as a terminal's escape codes) replaced by U+FFFD.
fn xml_chars(text: &str) -> Cow<'_, str> {
    let allowed = |c: char| {
        matches!(c, '\t' | '\n' | '\r')
            || ('\u{20}'..='\u{D7FF}').contains(&c)
            || ('\u{E000}'..='\u{FFFD}').contains(&c)
            || c >= '\u{10000}'
    };
    if text.chars().all(allowed) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(text.chars().map(|c| if allowed(c) { c } else { '\u{FFFD}' }).collect())
    }
}

/// A line of a cases file is not a case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct CasesError {
    /// The line, counted from 1.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// Parses the cases file of `ordeal junit --cases FILE`.
///
/// # Format
///
/// UTF-8 text, one case a line, six fields separated by tabs:
///
/// ```text
/// name <TAB> classname <TAB> time <TAB> outcome <TAB> message <TAB> text
/// ```
///
/// - `time`: seconds, a non-negative decimal number (`12`, `0.5`).
/// - `outcome`: `passed`, `failed`, `error` or `skipped`.
/// - `message`: one line (the `message` attribute); empty for `passed`.
/// - `text`: the failure's or error's details; empty for `passed` and `skipped`.
///
/// Within a field, `\t`, `\n` and `\\` stand for a tab, a newline and a backslash (so a field
/// holds neither a raw tab nor a raw newline); any other backslash is an error. Empty lines and
/// lines starting with `#` are skipped.
///
/// # Errors
///
/// [`CasesError`] naming the first line that is not a case (wrong number of fields, an empty
/// name, a bad time, outcome or escape), or more than [`CASES_MAX`] cases.
pub fn parse_cases(text: &str) -> Result<Vec<Case>, CasesError> {
    let mut cases = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        let fail = |reason: String| CasesError { line: line_number, reason };
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if cases.len() == CASES_MAX {
            return Err(fail(format!("more than {CASES_MAX} cases")));
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let [name, classname, time, outcome, message, details] = fields[..] else {
            return Err(fail(format!(
                "{} tab-separated fields, expected 6 (name, classname, time, outcome, message, \
                 text)",
                fields.len()
            )));
        };
        let unescape = |field: &str, what: &str| {
            unescape(field).map_err(|reason| fail(format!("{what}: {reason}")))
        };
        let name = unescape(name, "name")?;
        if name.trim().is_empty() {
            return Err(fail("the name is empty".into()));
        }
        let time_s: f64 = time
            .trim()
            .parse()
            .ok()
            .filter(|seconds: &f64| seconds.is_finite() && *seconds >= 0.0)
            .ok_or_else(|| {
                fail(format!("time {time:?} is not a non-negative number of seconds"))
            })?;
        let message = unescape(message, "message")?;
        let details = unescape(details, "text")?;
        let outcome = match outcome.trim() {
            "passed" => Outcome::Passed,
            "failed" => Outcome::Failed { message, text: details },
            "error" => Outcome::Errored { message, text: details },
            "skipped" => Outcome::Skipped { message },
            other => {
                return Err(fail(format!(
                    "outcome {other:?} is not passed, failed, error or skipped"
                )));
            }
        };
        cases.push(Case { name, classname: unescape(classname, "classname")?, time_s, outcome });
    }
    Ok(cases)
}

/// Escapes a field of a cases file: the inverse of the parser's unescaping.
pub fn escape_field(field: &str) -> String {
    let mut escaped = String::with_capacity(field.len());
    for c in field.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '\t' => escaped.push_str("\\t"),
            '\n' => escaped.push_str("\\n"),
            '\r' => {}
            other => escaped.push(other),
        }
    }
    escaped
}

fn unescape(field: &str) -> Result<String, String> {
    let mut text = String::with_capacity(field.len());
    let mut chars = field.chars();
    // Bounded by the field's characters.
    while let Some(c) = chars.next() {
        if c != '\\' {
            text.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => text.push('\t'),
            Some('n') => text.push('\n'),
            Some('\\') => text.push('\\'),
            Some(other) => return Err(format!("unknown escape \\{other} (only \\t, \\n, \\\\)")),
            None => return Err("a lone backslash at the end".into()),
        }
    }
    Ok(text)
}

/// One run of `ordeal test` or `ordeal sim` as a case, judged from its `results.json`
/// (`verdict`, `checkers` by name with each one's `verdict`, and `expected` when a scenario
/// named a verdict): passed when the verdict is valid or the expected one, else failed with
/// the verdict and the oracles that were not valid as the message and, as the text, those
/// plus the run's directory and `reproduce`, the command that runs it again.
///
/// # Errors
///
/// When `results.json` cannot be read or lacks the verdict.
pub fn run_case(
    run_dir: &Path,
    name: String,
    classname: &str,
    time_s: f64,
    reproduce: &str,
) -> anyhow::Result<Case> {
    let path = run_dir.join("results.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let results: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let outcome = results_outcome(&results, run_dir, reproduce)
        .with_context(|| format!("{} has no verdict", path.display()))?;
    Ok(Case { name, classname: classname.to_string(), time_s, outcome })
}

/// The outcome of a run from its `results.json`, or `None` without a verdict.
pub fn results_outcome(
    results: &serde_json::Value,
    run_dir: &Path,
    reproduce: &str,
) -> Option<Outcome> {
    let verdict = results.get("verdict")?.as_str()?;
    let expected = results.get("expected").and_then(serde_json::Value::as_str);
    let wanted = expected.map_or("valid", |expected| expected);
    if verdict.eq_ignore_ascii_case(wanted) {
        return Some(Outcome::Passed);
    }
    let failing: Vec<String> = results
        .get("checkers")
        .and_then(serde_json::Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(name, check)| {
            let verdict = check.get("verdict")?.as_str()?;
            (verdict != "valid").then(|| format!("{name} ({verdict})"))
        })
        .collect();
    Some(failure(verdict, expected, &failing, &run_dir.display().to_string(), reproduce))
}

/// A failed case's outcome: `verdict`, the `expected` one when a scenario named it, the
/// failing oracles (`name (verdict)`), where the run is stored (empty: not stored) and the
/// command reproducing it.
pub fn failure(
    verdict: &str,
    expected: Option<&str>,
    failing: &[String],
    stored: &str,
    reproduce: &str,
) -> Outcome {
    let verdict = verdict.to_ascii_lowercase();
    let oracles = if failing.is_empty() { "none".to_string() } else { failing.join(", ") };
    let mut message = format!("verdict {verdict}");
    if let Some(expected) = expected {
        message.push_str(&format!(" (expected {expected})"));
    }
    message.push_str(&format!("; failing oracles: {oracles}"));
    let mut text = format!("verdict: {verdict}\n");
    if let Some(expected) = expected {
        text.push_str(&format!("expected: {expected}\n"));
    }
    text.push_str(&format!("failing oracles: {oracles}\n"));
    if !stored.is_empty() {
        text.push_str(&format!("stored in: {stored}\n"));
    }
    text.push_str(&format!("reproduce: {reproduce}\n"));
    Outcome::Failed { message, text }
}

#[cfg(test)]
mod tests;
