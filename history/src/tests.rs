use serde_json::json;

use super::*;

#[test]
fn op_reads_the_documented_line_format() {
    let line = concat!(
        r#"{"index":12,"time":1840021,"process":3,"type":"invoke","#,
        r#""f":"cas","key":"k2","value":[4,7]}"#
    );
    let op: Op = serde_json::from_str(line).unwrap();
    assert_eq!(op.index, Some(12));
    assert_eq!(op.time, 1_840_021);
    assert_eq!(op.process, Process::Client(3));
    assert_eq!(op.kind, OpKind::Invoke);
    assert_eq!(op.f, "cas");
    assert_eq!(op.key.as_deref(), Some("k2"));
    assert_eq!(op.value, json!([4, 7]));
    // Writing it back gives the same object.
    let again: serde_json::Value = serde_json::to_value(&op).unwrap();
    assert_eq!(again, serde_json::from_str::<serde_json::Value>(line).unwrap());
}

#[test]
fn op_ignores_unknown_fields_and_accepts_missing_value() {
    let line = r#"{"process":"nemesis","type":"info","f":"kill","time":5,"extra":true}"#;
    let op: Op = serde_json::from_str(line).unwrap();
    assert_eq!(op.process, Process::Nemesis);
    assert_eq!(op.value, serde_json::Value::Null);
}

#[test]
fn op_rejects_a_bad_process() {
    for line in [
        r#"{"process":-1,"type":"invoke","f":"read","time":1}"#,
        r#"{"process":"client","type":"invoke","f":"read","time":1}"#,
    ] {
        let error = serde_json::from_str::<Op>(line).unwrap_err().to_string();
        assert!(error.contains("process number"), "{error}");
    }
}

#[test]
fn digest_is_hex_in_json_and_bytes_in_postcard_like_formats() {
    let digest = Digest([0xab; 32]);
    let text = serde_json::to_string(&digest).unwrap();
    assert_eq!(text, format!("\"{}\"", "ab".repeat(32)));
    assert_eq!(serde_json::from_str::<Digest>(&text).unwrap(), digest);
    assert!(serde_json::from_str::<Digest>("\"abcd\"").is_err());
}

#[test]
fn verdicts_merge_by_priority() {
    use Verdict::*;
    let table = [
        (Valid, Valid, Valid),
        (Valid, Unknown, Unknown),
        (Unknown, Valid, Unknown),
        (Unknown, Invalid, Invalid),
        (Invalid, Valid, Invalid),
        (Invalid, Unknown, Invalid),
    ];
    for (a, b, merged) in table {
        assert_eq!(a.merge(b), merged, "{a:?} + {b:?}");
    }
    assert_eq!(Verdict::merge_all([]), Valid);
    assert_eq!(Verdict::merge_all([Valid, Unknown, Valid]), Unknown);
    assert_eq!(serde_json::to_string(&Invalid).unwrap(), "\"invalid\"");
}

#[test]
fn ledger_events_round_trip_with_an_event_tag() {
    let event = LedgerEvent::Execute(ExecuteEvent {
        time: 7,
        replica: 2,
        view: 0,
        seq: 1,
        batch_digest: Digest([1; 32]),
        block_hash: Digest([2; 32]),
        requests: vec![ExecutedRequest {
            client: 4,
            request: 9,
            op: Operation::Cas { key: "k".into(), from: 1, to: 2 },
            result: Some(OpResult::Cas { swapped: false }),
            signature: "00".into(),
        }],
        state_digest: Digest([3; 32]),
    });
    let text = serde_json::to_string(&event).unwrap();
    assert!(text.starts_with(r#"{"event":"execute""#), "{text}");
    assert_eq!(serde_json::from_str::<LedgerEvent>(&text).unwrap(), event);
    assert_eq!(event.time(), 7);
}

#[test]
fn results_that_jepsen_records_as_fail() {
    assert!(!OpResult::Cas { swapped: false }.succeeded());
    assert!(!OpResult::Transfer { done: false }.succeeded());
    assert!(OpResult::Written.succeeded());
    assert!(OpResult::Read { value: None }.succeeded());
}
