use super::*;

fn ready(netns: &str, role: &'static str, tc: &[&str], node: &NodeWide) -> Ready {
    let mut r = Ready {
        netns: netns.into(),
        role,
        vips: vec!["20.0.0.1".parse().unwrap()],
        vips_from: "--vip",
        hooks: tc.iter().map(|h| h.to_string()).collect(),
        ..Default::default()
    };
    r.hooks.extend(node.hooks.iter().cloned());
    r.refused.extend(node.refused.iter().cloned());
    r.unavailable.extend(node.unavailable.iter().cloned());
    r
}

fn node() -> NodeWide {
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    NodeWide {
        hooks: vec![
            "raw_tracepoint:fib_table_lookup".into(),
            "raw_tracepoint:fib6_table_lookup".into(),
            "tracepoint:skb/kfree_skb".into(),
        ],
        refused: vec![pair("fexit:fib_multipath_hash", "permission denied")],
        unavailable: vec![pair(
            "kretprobe:fib_multipath_hash",
            "not needed: the fexit hook is attached",
        )],
    }
}

fn count(lines: &[String], needle: &str) -> usize {
    lines.iter().filter(|l| l.contains(needle)).count()
}

/// The whole path: the node-wide hooks once, under their heading, with the first ready
/// record; later ones say their own `tc:` hooks and notes only.
#[test]
fn node_wide_hooks_are_said_once_a_run() {
    let mut said = None;
    let mut first = ready(
        "n-proxy-a",
        "proxy",
        &["tc:bridge0/ingress (tcx)", "tc:bridge0/egress (tcx)"],
        &node(),
    );
    first.notes.push("mounted bpffs".into());
    let lines = ready_lines(&first, &mut said);
    assert_eq!(
        lines,
        [
            "ready: proxy n-proxy-a, VIPs 20.0.0.1, every client port",
            "  attached: tc:bridge0/ingress (tcx), tc:bridge0/egress (tcx)",
            "  node-wide hooks (one set for every traced namespace):",
            "    attached: raw_tracepoint:fib_table_lookup, raw_tracepoint:fib6_table_lookup, tracepoint:skb/kfree_skb",
            "    REFUSED: fexit:fib_multipath_hash: permission denied",
            "    not used: kretprobe:fib_multipath_hash: not needed: the fexit hook is attached",
            "  note: mounted bpffs",
        ]
    );
    let mut all = lines;
    for (ns, role) in [
        ("n-lbfe-a", "frontend"),
        ("n-lbfe-b", "frontend"),
        ("n-target-a-1", "target"),
    ] {
        let mut r = ready(ns, role, &["tc:eth0/ingress (tcx)"], &node());
        r.notes.push(format!("own note of {ns}"));
        let lines = ready_lines(&r, &mut said);
        assert_eq!(
            lines,
            [
                format!("ready: {role} {ns}, VIPs 20.0.0.1, every client port"),
                "  attached: tc:eth0/ingress (tcx)".into(),
                format!("  note: own note of {ns}"),
            ]
        );
        all.extend(lines);
    }
    for needle in [
        "node-wide hooks",
        "fib_table_lookup",
        "fib6_table_lookup",
        "kfree_skb",
        "REFUSED",
        "not used",
    ] {
        assert_eq!(count(&all, needle), 1, "{needle}: {all:#?}");
    }
}

/// A later namespace whose node-wide set differs gets it printed, marked changed; the
/// JSON side keeps every hook in every record (the renderer here only reads `Ready`).
#[test]
fn a_different_node_wide_set_is_said_again() {
    let mut said = None;
    let first = ready("p", "proxy", &["tc:bridge0/ingress (tcx)"], &node());
    ready_lines(&first, &mut said);
    let mut other = node();
    other.unavailable.push((
        "tc programs shared by every namespace".into(),
        "not tried (--tc-programs per-namespace); loaded once per namespace instead".into(),
    ));
    let r = ready("t", "target", &["tc:eth0/ingress (tcx)"], &other);
    let lines = ready_lines(&r, &mut said);
    assert_eq!(count(&lines, "node-wide hooks, changed"), 1, "{lines:#?}");
    assert_eq!(count(&lines, "tc programs shared"), 1, "{lines:#?}");
    assert_eq!(count(&lines, "kfree_skb"), 1, "{lines:#?}");
    // The same set again: not repeated.
    let lines = ready_lines(&r, &mut said);
    assert_eq!(count(&lines, "node-wide"), 0, "{lines:#?}");
    // A record with no node-wide hooks at all (--hooks tc) still says so, once.
    let mut said = None;
    let bare = ready(
        "p",
        "proxy",
        &["tc:bridge0/ingress (tcx)"],
        &NodeWide::default(),
    );
    let lines = ready_lines(&bare, &mut said);
    assert!(
        lines.contains(&"    attached: none".to_string()),
        "{lines:#?}"
    );
}

#[test]
fn the_ready_line_names_the_record_budget_and_an_inexact_flow_says_why() {
    let mut r = ready("proxy-a", "proxy", &[], &node());
    r.records = "first 8 per hop".into();
    let lines = ready_lines(&r, &mut None);
    assert!(
        lines[0].ends_with(", records: first 8 per hop (every packet counted)"),
        "{lines:?}"
    );
    assert_eq!(summary::not_exact_line(&[]), None);
    let line = summary::not_exact_line(&[
        tracer_records::Inexact::FlowEvictedEarly,
        tracer_records::Inexact::RecordsLost,
    ])
    .unwrap();
    assert!(line.contains("NOT EXACT") && line.contains("--max-flows") && line.contains("lost"));
}

#[test]
fn each_bound_that_left_something_out_is_a_warning() {
    let o = Overflow {
        flows: 3,
        lb_changes: 1,
        ..Default::default()
    };
    let lines = overflow_lines(&o);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("WARNING: 3 flows summarised early")
            && lines[0].contains("--max-flows")
    );
    assert!(lines[1].starts_with("WARNING: 1 load balancer changes"));
    assert!(overflow_lines(&Overflow::default()).is_empty());
}
