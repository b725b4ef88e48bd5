//! The JUnit writer against Ordeal's own JUnit schema (`junit.xsd`), validated with the
//! pure-Rust `xmlschema` crate; the cases file of `ordeal junit`; the failure text of a run.

use std::path::Path;

use super::{Case, CasesError, Outcome, Report, Suite, escape_field, parse_cases};

/// Ordeal's schema of the JUnit XML format (its header says what it allows and why it is
/// written the way it is).
const SCHEMA: &str = include_str!("junit.xsd");

/// The schema's violations of `xml`, one a line; empty when the document is valid. Every
/// violation the validator reports counts.
fn violations(xml: &str) -> String {
    let schema = xmlschema::parse_schema(SCHEMA).expect("xmlschema reads junit.xsd");
    let document = oxml::parse(xml).expect("a well-formed document");
    let report = xmlschema::validate(&document, &schema);
    let lines: Vec<String> = report.violations.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

fn case(name: &str, outcome: Outcome) -> Case {
    Case { name: name.into(), classname: "ordeal.test".into(), time_s: 1.25, outcome }
}

/// A report of every kind of case.
fn mixed_report() -> Report {
    Report {
        name: "ordeal".into(),
        suites: vec![
            Suite {
                name: "ordeal.test".into(),
                cases: vec![
                    case("poe-ts-register-mixed seed 1", Outcome::Passed),
                    case(
                        "poe-ts-register-mixed seed 2 <&>\"'",
                        Outcome::Failed {
                            message: "verdict invalid; failing oracles: <a & b> \"c\"\nnext".into(),
                            text: "verdict: invalid\nreproduce: ordeal test --seed 2 <&>\"'\n"
                                .into(),
                        },
                    ),
                    case("skipped one", Outcome::Skipped { message: "not run: <no build>".into() }),
                    case(
                        "harness error",
                        Outcome::Errored {
                            message: "ports".into(),
                            text: "bind \u{1b}[31m".into(),
                        },
                    ),
                ],
            },
            Suite { name: "empty".into(), cases: Vec::new() },
        ],
    }
}

/// Setup: a report with a passed, a failed (its name, message and text holding `<&>"'` and
/// a newline), a skipped and an errored case, and an empty suite. Test: it validates against
/// Ordeal's JUnit schema, its counts are right, and the escaped text reads back unchanged.
#[test]
fn a_report_of_every_outcome_validates_against_the_junit_schema() {
    let xml = mixed_report().to_xml();
    assert_eq!(violations(&xml), "", "{xml}");
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"), "{xml}");
    assert!(
        xml.contains(
            r#"<testsuites name="ordeal" tests="4" failures="1" errors="1" time="5.000">"#
        ),
        "{xml}"
    );
    assert!(
        xml.contains(concat!(
            r#"<testsuite name="ordeal.test" tests="4" failures="1" errors="1" skipped="1" "#,
            r#"time="5.000">"#
        )),
        "{xml}"
    );
    assert!(xml.contains(r#"tests="0" failures="0" errors="0" skipped="0" time="0.000""#), "{xml}");

    // Escaped by the writer, and well-formed for a parser.
    oxml::parse(&xml).expect("well-formed");
    assert!(xml.contains("seed 2 &lt;&amp;&gt;&quot;&apos;\""), "{xml}");
    assert!(xml.contains("&lt;a &amp; b&gt; &quot;c&quot;&#10;next"), "{xml}");
    assert!(xml.contains("reproduce: ordeal test --seed 2 &lt;&amp;&gt;&quot;&apos;\n"), "{xml}");
    // A terminal's escape code is no XML character: replaced, so the document stays valid.
    assert!(xml.contains("bind \u{FFFD}[31m"), "{xml}");
    assert!(mixed_report().failed());
    assert!(!Report::single("ok", vec![case("a", Outcome::Passed)]).failed());
}

/// Setup: the schema itself. Test: it uses only constructs the `xmlschema` crate enforces in
/// full, so a document it calls valid is valid (nothing is skipped or filtered).
#[test]
fn the_junit_schema_is_enforced_in_full() {
    let schema = oxml::parse(SCHEMA).expect("junit.xsd is well-formed");
    let unsupported: Vec<String> = xmlschema::support::unsupported(&schema)
        .iter()
        .map(|construct| format!("{}: {}", construct.construct, construct.effect))
        .collect();
    assert_eq!(unsupported, Vec::<String>::new());
    let parsed = xmlschema::parse_schema(SCHEMA).expect("xmlschema reads junit.xsd");
    let mut roots: Vec<&str> = parsed.elements.keys().map(String::as_str).collect();
    roots.sort_unstable();
    assert_eq!(roots, ["testsuite", "testsuites"]);
}

/// Setup: a document using every element and attribute the schema declares, as other JUnit
/// producers write them (properties, several failures, captured output, a lone `<testsuite>`
/// root). Test: it validates, so the schema is the format and not only what Ordeal writes.
#[test]
fn the_junit_schema_accepts_the_whole_format() {
    let full = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="all" tests="4" failures="2" errors="1" skipped="1" time="0.5">
  <testsuite name="s" tests="4" failures="2" errors="1" skipped="1" time="0.500"
             timestamp="2024-05-01T12:30:00" hostname="ci-1">
    <properties>
      <property name="seed" value="7"/>
      <property name="protocol" value="pbft"/>
    </properties>
    <testcase name="a" classname="c" time="0" file="src/a.rs" line="12" assertions="3"/>
    <testcase name="b" time="1">
      <failure message="first" type="AssertionError">trace &lt;1&gt;</failure>
      <failure/>
      <error message="teardown" type="io">details</error>
      <system-out>out</system-out>
      <system-err>err</system-err>
    </testcase>
    <testcase name="c"><skipped message="not today">because</skipped></testcase>
    <testcase name="d"><skipped/><system-out/></testcase>
    <system-out>suite out</system-out>
    <system-err>suite err</system-err>
  </testsuite>
  <testsuite name="empty" tests="0"/>
</testsuites>"#;
    assert_eq!(violations(full), "", "{full}");
    let lone = r#"<testsuite name="s" tests="1"><testcase name="a"/></testsuite>"#;
    assert_eq!(violations(lone), "");
}

/// Setup: documents the schema must refuse. Test: the validator rejects each one, so the tests
/// above can fail.
#[test]
fn the_validator_rejects_documents_that_break_the_schema() {
    // A suite of one case, its `<testcase>` carrying `attributes`, holding `content`.
    let document = |attributes: &str, content: &str| {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites><testsuite name="s" tests="1" failures="0" errors="0">
<testcase {attributes}>{content}</testcase></testsuite></testsuites>"#
        )
    };
    // `xml` is rejected, by a violation saying `reason`.
    let rejects = |xml: &str, reason: &str| {
        let violation = violations(xml);
        assert!(violation.contains(reason), "{xml}\n{violation:?} lacks {reason:?}");
    };
    assert_eq!(violations(&document(r#"name="a""#, "")), "");
    rejects(&document(r#"classname="c""#, ""), "missing required attribute `name`");
    let without_counts =
        r#"<testsuites><testsuite name="s"><testcase name="a"/></testsuite></testsuites>"#;
    rejects(without_counts, "missing required attribute `tests`");
    rejects(&document(r#"name="a""#, "<verdict/>"), "unexpected element `verdict`");

    let bad_time = concat!(
        r#"<testsuites time="1.5s">"#,
        r#"<testsuite name="s" tests="0" failures="0" errors="0"/></testsuites>"#
    );
    rejects(bad_time, "`1.5s` is not a valid decimal");
    let negative_time = r#"<testsuites><testsuite name="s" tests="0" time="-1"/></testsuites>"#;
    rejects(negative_time, "-1 must be at least 0");
    let negative_count = r#"<testsuites><testsuite name="s" tests="-1"/></testsuites>"#;
    rejects(negative_count, "`-1` is not a valid non-negative integer");
    rejects(r#"<testsuites tests="1.5"/>"#, "`1.5` is not a valid non-negative integer");
    rejects(&document(r#"name="a" line="0""#, ""), "`0` is not a valid positive integer");

    // `<failure>` holds text, never elements.
    let nested = document(r#"name="a""#, r#"<failure message="m"><b>x</b></failure>"#);
    rejects(&nested, "must contain text, not child elements");
    // The children's order is fixed: the outcome before the captured output.
    let reordered = document(r#"name="a""#, "<system-out>o</system-out><failure/>");
    rejects(&reordered, "unexpected element `failure`");
    // One `<skipped>` at most.
    rejects(&document(r#"name="a""#, "<skipped/><skipped/>"), "unexpected element `skipped`");
    rejects("<testresults/>", "no top-level element named `testresults`");
}

/// Setup: a `results.json` as `ordeal test` writes it, invalid by two oracles. Test: the case
/// fails with the verdict and those oracles as its message, and its text holds them, where the
/// run is stored and the command that reproduces it; the same file valid, or invalid as a
/// scenario expected, passes.
#[test]
fn a_failed_run_names_its_oracles_and_the_command_that_reproduces_it() {
    let temporary = tempfile::tempdir().expect("a temporary run directory");
    let dir = temporary.path();
    let results = serde_json::json!({
        "verdict": "invalid",
        "test": "poe-ts-register-mixed",
        "checkers": {
            "linearizable": {"verdict": "invalid"},
            "ledger-agreement": {"verdict": "unknown"},
            "bank": {"verdict": "valid"},
        },
        "expected": null,
    });
    std::fs::write(dir.join("results.json"), results.to_string()).unwrap();
    let args: Vec<String> =
        ["test", "--nemesis", "byzantine", "--seed", "9", "--junit", "out.xml", "--test-count=3"]
            .map(String::from)
            .into();
    let reproduce = crate::cli::reproduce_command(&args, 10, None);
    assert_eq!(reproduce, "ordeal test --nemesis byzantine --seed 10");
    let case = super::run_case(dir, "t seed 10".into(), "ordeal.test", 2.0, &reproduce).unwrap();
    let Outcome::Failed { message, text } = &case.outcome else {
        panic!("not a failure: {case:?}");
    };
    assert_eq!(
        message,
        "verdict invalid; failing oracles: ledger-agreement (unknown), linearizable (invalid)"
    );
    assert!(text.contains("reproduce: ordeal test --nemesis byzantine --seed 10\n"), "{text}");
    assert!(text.contains(&format!("stored in: {}", dir.display())), "{text}");
    let xml = Report::single("ordeal.test", vec![case]).to_xml();
    assert_eq!(violations(&xml), "", "{xml}");

    let expected = serde_json::json!({"verdict": "invalid", "expected": "invalid", "checkers": {}});
    let outcome = super::results_outcome(&expected, Path::new("run"), "ordeal test");
    assert_eq!(outcome, Some(Outcome::Passed));
    let valid = serde_json::json!({"verdict": "valid", "checkers": {}});
    assert_eq!(super::results_outcome(&valid, Path::new("run"), "x"), Some(Outcome::Passed));
    let unexpected = serde_json::json!({"verdict": "valid", "expected": "invalid"});
    let Some(Outcome::Failed { message, .. }) =
        super::results_outcome(&unexpected, Path::new("run"), "x")
    else {
        panic!("a scenario expecting invalid fails when valid");
    };
    assert_eq!(message, "verdict valid (expected invalid); failing oracles: none");
}

/// Setup: the arguments of several compared protocols and of a sweep. Test: the reproduce
/// command names one protocol and one seed, drops the sweep's and the report's options, and
/// quotes what a shell would split.
#[test]
fn the_reproduce_command_runs_one_run() {
    use crate::cli::{ProtocolArg, reproduce_command};
    let words = |text: &str| text.split(' ').map(String::from).collect::<Vec<_>>();
    let compared = words("test --protocol poe-ts,pbft --time-limit 10 --junit=r.xml");
    assert_eq!(
        reproduce_command(&compared, 4, Some(ProtocolArg::Pbft)),
        "ordeal test --time-limit 10 --protocol pbft --seed 4"
    );
    let sweep = words("sim --seeds 1..200 --jobs 2 --stop-on-failure --protocol pbft --shrink");
    assert_eq!(reproduce_command(&sweep, 17, None), "ordeal sim --protocol pbft --seed 17");
    // `--junit` is no part of the run: `test.toml` does not record it.
    let cli =
        <crate::cli::Cli as clap::Parser>::try_parse_from(["ordeal", "test", "--junit", "r.xml"])
            .expect("--junit parses");
    let crate::cli::Command::Test(options) = cli.command else { panic!("not a test") };
    assert_eq!(options.junit.as_deref(), Some(Path::new("r.xml")));
    assert!(!toml::to_string(&options).expect("serializes").contains("junit"));
    let spaced = vec!["test".to_string(), "--store".into(), "my runs/it's".into()];
    assert_eq!(
        reproduce_command(&spaced, 1, None),
        r"ordeal test --store 'my runs/it'\''s' --seed 1"
    );
}

/// Setup: a cases file with every outcome, escapes, a comment and an empty line. Test: it
/// parses to those cases, and `escape_field` is the inverse of the parser's unescaping.
#[test]
fn a_cases_file_parses() {
    let text = "# name\tclassname\ttime\toutcome\tmessage\ttext\n\
                sim poe-ts\tci.gate\t12\tpassed\t\t\n\
                \n\
                n4 pbft s1\tci.gate\t0.5\tfailed\tverdict invalid\tline 1\\nline 2\\ttab \\\\\n\
                planted x\tci.gate\t3\tskipped\tcaught by another case\t\n\
                build\tci.gate\t0\terror\tcargo failed\texit 101\n";
    let cases = parse_cases(text).expect("a valid file");
    assert_eq!(cases.len(), 4);
    assert_eq!(cases[0].outcome, Outcome::Passed);
    assert_eq!(cases[0].time_s, 12.0);
    assert_eq!(
        cases[1].outcome,
        Outcome::Failed {
            message: "verdict invalid".into(),
            text: "line 1\nline 2\ttab \\".into()
        }
    );
    assert_eq!(cases[2].outcome, Outcome::Skipped { message: "caught by another case".into() });
    assert!(matches!(cases[3].outcome, Outcome::Errored { .. }));
    let xml = Report::single("ci/gate", cases).to_xml();
    assert_eq!(violations(&xml), "", "{xml}");

    let field = "a\tb\nc\\d <&>";
    let line = format!("{}\tc\t1\tfailed\tm\t{}", escape_field(field), escape_field(field));
    let parsed = parse_cases(&line).expect("escaped fields parse");
    assert_eq!(parsed[0].name, field);
    assert_eq!(parsed[0].outcome, Outcome::Failed { message: "m".into(), text: field.into() });
}

/// Setup: malformed cases files. Test: each is an error naming its line and the fault, never
/// a panic.
#[test]
fn a_malformed_cases_file_names_the_line() {
    let check = |text: &str, line: usize, reason: &str| {
        let error: CasesError = parse_cases(text).expect_err(text);
        assert_eq!(error.line, line, "{error}");
        assert!(error.to_string().contains(reason), "{error} lacks {reason:?}");
        assert!(error.to_string().starts_with(&format!("line {line}: ")), "{error}");
    };
    let good = "a\tc\t1\tpassed\t\t\n";
    check(&format!("{good}a\tc\t1\tpassed\n"), 2, "4 tab-separated fields, expected 6");
    check(&format!("{good}{good}a\tc\tsoon\tpassed\t\t\n"), 3, "time \"soon\"");
    check("a\tc\t-1\tpassed\t\t", 1, "non-negative");
    check("a\tc\tNaN\tpassed\t\t", 1, "non-negative");
    check("a\tc\t1\tflaky\t\t", 1, "outcome \"flaky\"");
    check("\tc\t1\tpassed\t\t", 1, "the name is empty");
    check("a\tc\t1\tfailed\tm\tbad \\x escape", 1, "text: unknown escape \\x");
    check("a\\\tc\t1\tfailed\tm\tt", 1, "name: a lone backslash");
    check("a\tc\t1\tfailed\tm\tends \\", 1, "a lone backslash");
    assert_eq!(parse_cases("# only a comment\n\n").expect("empty is fine"), Vec::new());
}
