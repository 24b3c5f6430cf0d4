//! Property tests of the merge input parser (`Reader::parse`, `strip_prefix`): any line is
//! a record or a counted skip, never a panic; a record written by a tracer comes back the
//! same with or without a `kubectl logs --prefix` prefix, named by its own node or else by
//! the pod. Fixed case counts keep it within a second in CI.
use proptest::prelude::*;
use serde_json::json;

use super::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 1024,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_line_is_a_record_or_a_counted_skip(line in "\\PC{0,200}", bracket in any::<bool>()) {
        let line = if bracket { format!("[{line}") } else { line };
        let mut r = Reader::new("input");
        let got = r.parse(&line, 1);
        let blank = line.trim_end().is_empty();
        prop_assert_eq!(got.is_none() && !blank, r.skipped.not_record == 1);
        if let Some(rec) = got {
            // A record of these types, or a JSON object of a type they do not know.
            let v: serde_json::Value = serde_json::from_str(&rec.text).unwrap();
            prop_assert!(v["type"].is_string());
        }
    }

    #[test]
    fn a_record_reads_back_with_or_without_a_prefix(
        pod in "[a-z0-9][a-z0-9.-]{0,40}",
        container in "[a-z0-9-]{1,20}",
        kind in "[a-z]{1,10}",
        node in proptest::option::of("[a-z0-9-]{1,20}"),
        wall in proptest::option::of(any::<i64>()),
        port in any::<u16>(),
    ) {
        let mut v = json!({"type": kind, "client_port": port});
        if let Some(n) = &node {
            v["node"] = json!(n);
        }
        if let Some(w) = wall {
            v["wall_ns"] = json!(w);
        }
        let body = serde_json::to_string(&v).unwrap();
        for (line, named) in [
            (body.clone(), "input".to_string()),
            (format!("[pod/{pod}/{container}] {body}"), pod.clone()),
        ] {
            let mut r = Reader::new("input");
            let rec = r.parse(&line, 7).expect("a record");
            prop_assert_eq!(&rec.text, &body);
            prop_assert_eq!(rec.node, node.clone().unwrap_or(named));
            prop_assert_eq!(rec.timed, wall.is_some());
            prop_assert_eq!(rec.key, i128::from(wall.unwrap_or(0)));
            prop_assert_eq!(rec.seq, 7);
            prop_assert_eq!(r.skipped.total(), 0);
        }
    }
}
