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

/// Setup: two seeds, one small and one using all 64 bits. Test: every derivation in `seeds`
/// gives the value it gave when recorded runs were made (computed independently of this crate
/// from the salts the harness, nemesis, workloads and replica used before they moved here), so
/// a recorded seed still replays the same run.
#[test]
fn seed_derivations_are_pinned() {
    use crate::seeds;
    let big = 0xdead_beef_0123_4567;
    // A derivation's name, the derivation, and its values for 7 and for `big`.
    type Pinned = (&'static str, fn(u64) -> u64, u64, u64);
    let pinned: [Pinned; 10] = [
        ("keys", seeds::keys, 0x6f72_6465_616c_6b62, 0xb1df_da8a_604f_2e02),
        ("relay", seeds::relay, 0x6e65_7477_6f72_6b36, 0xb0c8_ca98_6e51_2e56),
        ("sim_relay", seeds::sim_relay, 0x7265_6c61_7973_696a, 0xacc8_d28e_7850_2c0a),
        ("sim_latency", seeds::sim_latency, 0x6c61_7465_6e63_7926, 0xb2cc_ca8a_6f40_3c46),
        ("sim_clocks", seeds::sim_clocks, 0x636c_6f63_6b73_696a, 0xbdc1_d18c_6a50_2c0a),
        (
            "byzantine_count",
            seeds::byzantine_count_draw,
            0xecb5_b751_01f5_819d,
            0xb4cf_9f29_8d14_f8bd,
        ),
        (
            "byzantine_replicas",
            seeds::byzantine_replicas,
            0x6e65_6d65_7369_7334,
            0xb0c8_d38a_724a_3654,
        ),
        ("schedule", seeds::schedule, 0x6e65_6d65_7369_7336, 0xb0c8_d38a_724a_3656),
        ("targets", seeds::targets, 0x6e65_6d65_7369_7335, 0xb0c8_d38a_724a_3655),
        ("fuzz", seeds::fuzz, 0x6675_7a7a_5f69_6e77, 0xb8d8_c495_5e4a_2b17),
    ];
    for (name, derive, small, large) in pinned {
        assert_eq!(derive(7), small, "{name}(7)");
        assert_eq!(derive(big), large, "{name}({big:#x})");
    }
    assert_eq!(seeds::byzantine(7, 3), 4);
    assert_eq!(seeds::byzantine(big, 3), 0xdead_beef_0123_4564);
    assert_eq!(seeds::byzantine(big, 0), big, "replica 0's hook is seeded by the run's seed");
    assert_eq!(seeds::generator(7, 5), 0x9e37_79bc_7f4a_7c12);
    assert_eq!(seeds::generator(big, 5), 0x409a_c753_7e69_3972);
    assert_eq!(seeds::fuzz_session(7, 9), 0x006a_cfde);
    assert_eq!(seeds::fuzz_session(big, 9), 0x42b3_a7e9_7528_b7fe);
    assert_eq!(seeds::arrivals(7, 4, 1), 0x6072_7669_7661_6c74);
    assert_eq!(seeds::repetition(7, 2), 9);
    assert_eq!(seeds::repetition(u64::MAX, 2), 1, "wraps");
}

/// Setup: the salted streams of a few seeds. Test: no two streams of one seed share a seed
/// (two would draw the same numbers).
#[test]
fn salted_streams_are_distinct() {
    use crate::seeds;
    for seed in [0, 1, 7, u64::MAX, 0xdead_beef_0123_4567] {
        let mut streams = vec![
            seeds::keys(seed),
            seeds::relay(seed),
            seeds::sim_relay(seed),
            seeds::sim_latency(seed),
            seeds::sim_clocks(seed),
            seeds::byzantine_replicas(seed),
            seeds::schedule(seed),
            seeds::targets(seed),
            seeds::fuzz(seed),
            seeds::arrivals(seed, 4, 0),
            seeds::arrivals(seed, 4, 1),
            seeds::arrivals(seed, 16, 0),
        ];
        streams.extend((0..16).map(|client| seeds::generator(seed, client)));
        streams.extend((0..16).map(|replica| seeds::byzantine(seed, replica)));
        let count = streams.len();
        streams.sort_unstable();
        streams.dedup();
        assert_eq!(streams.len(), count, "seed {seed:#x}");
    }
}
