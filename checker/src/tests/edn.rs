//! Jepsen `history.edn`: the example histories of `tests/data/jepsen/` get their verdicts
//! through the same audit as `ordeal check`, and each malformed history names its line and the
//! rule it breaks.

use std::path::{Path, PathBuf};

use history::{OpKind, Process, Verdict};
use serde_json::json;

use crate::audit::{self, Inputs, Report};
use crate::load::{self, EdnError, LoadError, edn};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/jepsen").join(name)
}

fn check(name: &str) -> Report {
    let file = load::history(&data(name)).expect("the example history loads");
    audit::check(Inputs { history: Some(Ok(file.into())), ..Inputs::default() })
}

/// The rule `text` breaks, and the line it names.
fn rule(text: &str) -> (usize, &'static str) {
    let EdnError { line, rule, .. } = edn::parse(text).expect_err("malformed");
    (line, rule)
}

/// Setup: a cas-register history with concurrent writes and reads, a cas that fails because
/// the other one won, a write whose process crashed (`:info`, read later as having taken
/// effect; the thread goes on as a new process), and nemesis events with map and set values.
/// Test: it loads with the nemesis set aside and is linearizable.
#[test]
fn jepsen_cas_register_with_a_crash_and_a_nemesis_is_linearizable() {
    let file = load::history(&data("cas-register-ok.edn")).unwrap();
    assert_eq!(file.ops.len(), 22);
    assert_eq!(file.lines[5], 6, "each event keeps its line");
    let nemesis = file.ops.iter().filter(|op| op.process == Process::Nemesis).count();
    assert_eq!(nemesis, 4);
    let crashed = &file.ops[11];
    assert_eq!((crashed.kind, crashed.error.as_deref()), (OpKind::Info, Some(":timeout")));
    assert_eq!(file.ops[6].value, json!([1, 2]));
    assert_eq!(
        (file.ops[6].index, file.ops[6].time, file.ops[6].key.clone()),
        (Some(6), 5000, None)
    );
    let report = check("cas-register-ok.edn");
    assert_eq!(report.history_error, None);
    assert_eq!(report.operations, 9);
    assert_eq!(report.checkers["linearizable"].verdict, Verdict::Valid, "{report:#?}");
    assert_eq!(report.verdict, Verdict::Valid);
}

/// A read returns 3, which no operation wrote (the only other write crashed, and wrote 2).
#[test]
fn jepsen_register_read_of_a_value_never_written_is_invalid() {
    let report = check("register-never-written-bad.edn");
    assert_eq!(report.checkers["linearizable"].verdict, Verdict::Invalid, "{report:#?}");
    assert_eq!(report.verdict, Verdict::Invalid);
}

/// Knossos's form (one vector of maps, no `:time`): a read returns 1 after the write of 2
/// completed, which followed the write of 1. File order is real-time order.
#[test]
fn jepsen_register_stale_read_in_a_knossos_vector_is_invalid() {
    let file = load::history(&data("register-stale-read-bad.edn")).unwrap();
    assert_eq!(file.lines, vec![2, 3, 4, 5, 6, 7, 8]);
    let times: Vec<u64> = file.ops.iter().map(|op| op.time).collect();
    assert_eq!(times, vec![0, 1, 2, 3, 4, 5, 6]);
    let report = check("register-stale-read-bad.edn");
    assert_eq!(report.checkers["linearizable"].verdict, Verdict::Invalid, "{report:#?}");
}

/// `jepsen.independent`: `[key value]` tuples become keys, each its own register.
#[test]
fn jepsen_independent_tuples_become_keys() {
    let file = load::history(&data("independent-ok.edn")).unwrap();
    assert_eq!((file.ops[4].key.as_deref(), &file.ops[4].value), (Some("0"), &json!([1, 2])));
    assert_eq!((file.ops[5].key.as_deref(), &file.ops[5].value), (Some("1"), &json!(null)));
    let report = check("independent-ok.edn");
    assert_eq!((report.keys, report.verdict), (2, Verdict::Valid), "{report:#?}");
    // The same history with key 1's read returning a value never written to key 1.
    let text = std::fs::read_to_string(data("independent-ok.edn")).unwrap();
    let file =
        edn::parse(&text.replace(
            ":value [1 7], :process 1, :time 4100",
            ":value [1 2], :process 1, :time 4100",
        ))
        .unwrap();
    let report = audit::check(Inputs { history: Some(Ok(file.into())), ..Inputs::default() });
    assert_eq!(report.verdict, Verdict::Invalid, "{report:#?}");
}

/// A completion with no invocation is bad input, caught by the validation every format shares.
#[test]
fn jepsen_completion_without_invoke_is_named_with_its_line() {
    let report = check("completion-without-invoke.edn");
    let error = report.history_error.expect("malformed");
    assert_eq!((error.line, error.rule), (3, "completion-without-invoke"));
}

#[test]
fn jepsen_history_is_told_apart_from_json_lines() {
    assert!(edn::sniff("\n{:type :invoke}"));
    assert!(edn::sniff("  { :process 0}"));
    assert!(edn::sniff("[{:process 0}]"));
    assert!(edn::sniff("; a comment\n{:process 0}"));
    assert!(!edn::sniff("{\"process\":0,\"type\":\"invoke\"}"));
    assert!(!edn::sniff(""));
    // A `.edn` file is EDN whatever it starts with, so a bad one is an EDN error.
    let temporary = tempfile::tempdir().expect("a temporary directory");
    let dir = temporary.path();
    let path = dir.join("history.edn");
    std::fs::write(&path, "{\"process\":0}\n").unwrap();
    let error = load::history(&path).unwrap_err();
    let LoadError::Edn { error, .. } = &error else { panic!("not an EDN error: {error}") };
    assert_eq!((error.line, error.rule), (1, "missing-field"));
    assert!(
        load::history(&path)
            .unwrap_err()
            .to_string()
            .contains("history.edn:1: missing-field: no :type")
    );
}

/// Each rule of the mapping, on a one- or two-line history that breaks it.
#[test]
fn malformed_jepsen_histories_name_the_line_and_the_rule() {
    let invoke = "{:type :invoke, :f :write, :value 1, :process 0, :time 1}\n";
    let cases: &[(&str, usize, &str)] = &[
        ("{:type :invoke, :f :write, :value 1, :process 0, :time 1\n", 1, "edn-syntax"),
        ("{:type :invoke, :f :write :value}\n", 1, "edn-syntax"),
        ("[{:type :invoke, :f :read, :process 0, :time 1}\n", 2, "edn-syntax"),
        ("[{:type :invoke, :f :read, :process 0, :time 1}] {:a 1}", 1, "edn-syntax"),
        ("{:type :invoke, :f :read, :process 0}\n(1 2)\n", 2, "not-a-map"),
        ("{:type :invoke, :f :read, :value nil, :time 1}", 1, "missing-field"),
        ("{:type :invoke, :process 0, :time 1}", 1, "missing-field"),
        ("{:f :read, :process 0, :time 1}", 1, "missing-field"),
        ("{:type :done, :f :read, :process 0, :time 1}", 1, "unknown-type"),
        ("{:type \"ok\", :f :read, :process 0, :time 1}", 1, "unknown-type"),
        ("{:type :ok, :f :read, :process -1, :time 1}", 1, "bad-process"),
        ("{:type :ok, :f :read, :process :n1, :time 1}", 1, "bad-process"),
        ("{:type :ok, :f :read, :process 0, :time \"1\"}", 1, "bad-time"),
        ("{:type :ok, :f :read, :process 0, :time -5}", 1, "bad-time"),
        ("{:type :ok, :f :read, :process 0, :time 1, :index 1.5}", 1, "bad-index"),
        ("{:type :invoke, :f :add, :value 1, :process 0, :time 1}", 1, "unsupported-function"),
        ("{:type :invoke, :f :txn, :value [[:r 1 nil]], :process 0}", 1, "unsupported-function"),
        ("{:type :invoke, :f :write, :value nil, :process 0, :time 1}", 1, "bad-value"),
        ("{:type :invoke, :f :write, :value {:a 1}, :process 0, :time 1}", 1, "bad-value"),
        ("{:type :invoke, :f :cas, :value [1 2 3], :process 0, :time 1}", 1, "bad-value"),
        ("{:type :invoke, :f :cas, :value 1, :process 0, :time 1}", 1, "bad-value"),
    ];
    for (text, line, expected) in cases {
        assert_eq!(rule(text), (*line, *expected), "{text}");
    }
    let mixed = format!("{invoke}{{:type :ok, :f :write, :value 1, :process 0}}\n");
    assert_eq!(rule(&mixed), (2, "bad-time"));
    let untimed_first = format!("{{:type :ok, :f :write, :value 1, :process 0}}\n{invoke}");
    assert_eq!(rule(&untimed_first), (2, "bad-time"));
    let tuple_then_scalar =
        format!("{{:type :invoke, :f :write, :value [0 1], :process 1, :time 0}}\n{invoke}");
    assert_eq!(rule(&tuple_then_scalar), (2, "bad-tuple"));
    // An event's own fields are checked in file order: the earlier line is named.
    let two = "{:type :done, :f :read, :process 0}\n{:type :invoke, :f :add, :process 1}\n";
    assert_eq!(rule(two), (1, "unknown-type"));
    let unsupported = edn::parse("{:type :invoke, :f :add, :value 1, :process 0}").unwrap_err();
    assert!(unsupported.detail.contains(":read, :write, :cas"), "{unsupported}");
}

/// An `:add` of a set test is refused even when the history is otherwise well formed; the
/// nemesis's own functions are never judged.
#[test]
fn only_client_functions_must_be_register_functions() {
    let nemesis = "{:type :info, :f :kill, :value {:n1 :killed}, :process :nemesis, :time 1}";
    let file = edn::parse(nemesis).unwrap();
    assert_eq!((file.ops[0].process, file.ops[0].f.as_str()), (Process::Nemesis, "kill"));
    assert_eq!(file.ops[0].value, json!("{:n1 :killed}"));
}

/// Knossos keeps some histories as a list of maps with comments between the events; a
/// record printed with its type (`#jepsen.history.Op{...}`) is read as its map.
#[test]
fn jepsen_histories_as_lists_and_records_load() {
    let text = "; a comment\n({:type :invoke, :f :write, :value 0, :process 0}\n ; between\n \
                {:type :ok, :f :write, :value 0, :process 0}\n)\n";
    let file = edn::parse(text).unwrap();
    assert_eq!((file.ops.len(), file.lines.clone()), (2, vec![2, 4]));
    let record = "#jepsen.history.Op{:index 0, :time 7, :type :invoke, :process 3, :f :read, \
                  :value nil}\n";
    let file = edn::parse(record).unwrap();
    assert_eq!((file.ops[0].process, file.ops[0].time), (Process::Client(3), 7));
}
