//! One matrix row per kernel, from what its machine left: the tracer's ready record (what
//! attached, what was refused, what the kernel lacks), the hash-hook tests' counts, and
//! the tests' exit codes. A cell says "not run" rather than guess.
use std::path::Path;

use serde_json::Value;

use super::{guest, setup::Image, Kernel, TestRef};

pub struct Row {
    kernel: String,
    tc: String,
    fib: String,
    drop: String,
    hash: String,
    passed: String,
    secs: u64,
    failures: Vec<String>,
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|h| {
                    h.as_str().map(str::to_string).unwrap_or_else(|| {
                        format!(
                            "{}: {}",
                            h["hook"].as_str().unwrap_or_default(),
                            h["reason"].as_str().unwrap_or_default()
                        )
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn cells(ready: &Value) -> (String, String, String, String) {
    let hooks = strings(ready, "hooks");
    let refused = strings(ready, "refused");
    let tc = hooks
        .iter()
        .find(|h| h.starts_with("tc:"))
        .and_then(|h| {
            h.rsplit_once('(')
                .map(|(_, m)| m.trim_end_matches(')').to_string())
        })
        .unwrap_or_else(|| "none".into());
    // Each lookup hook is a raw tracepoint, or the perf tracepoint it fell back to.
    let kind = |event: &str| {
        if hooks
            .iter()
            .any(|h| h == &format!("raw_tracepoint:{event}"))
        {
            Some("raw")
        } else if hooks
            .iter()
            .any(|h| h.starts_with("tracepoint:") && h.ends_with(event))
        {
            Some("perf")
        } else {
            None
        }
    };
    let fib = match (kind("fib_table_lookup"), kind("fib6_table_lookup")) {
        (Some(a), Some(b)) if a == b => format!("{a} tracepoints fib, fib6"),
        (Some(a), Some(b)) => format!("fib {a}, fib6 {b} tracepoint"),
        (a, b) => {
            let why: Vec<&String> = refused.iter().filter(|r| r.contains("fib")).collect();
            format!(
                "fib {}, fib6 {}; refused: {}",
                a.unwrap_or("none"),
                b.unwrap_or("none"),
                why.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        }
    };
    let drop = if hooks.iter().any(|h| h == "tracepoint:skb/kfree_skb") {
        "kfree_skb with reasons".to_string()
    } else if hooks
        .iter()
        .any(|h| h.starts_with("tracepoint:skb/kfree_skb"))
    {
        "kfree_skb without reasons (kernel has none)".to_string()
    } else {
        format!(
            "refused: {}",
            refused
                .iter()
                .find(|r| r.contains("kfree_skb"))
                .cloned()
                .unwrap_or_default()
        )
    };
    let hash_hooks: Vec<&str> = hooks
        .iter()
        .filter(|h| h.starts_with("fexit:") || h.starts_with("kretprobe:"))
        .filter_map(|h| h.split(':').next())
        .collect();
    let auto = if hash_hooks.is_empty() {
        "no hook: skb hash (policy 1) or unknown".to_string()
    } else {
        let mut kinds = hash_hooks.clone();
        kinds.dedup();
        format!("auto picks {}", kinds.join("+"))
    };
    (tc, fib, drop, auto)
}

/// "fexit 300/300" from a hash-<hook>.json: decisions that agreed out of all, all policies.
fn hash_counts(out: &Path, hook: &str) -> Option<String> {
    let v = read_json(&out.join(format!("hash-{hook}.json")))?;
    let (mut agree, mut all, mut from_hook) = (0, 0, 0);
    let mut policies = std::collections::BTreeSet::new();
    let want = format!("kernel ({hook})");
    for (key, r) in v["results"].as_object()? {
        agree += r["agree"].as_u64().unwrap_or(0);
        all += r["decisions"].as_u64().unwrap_or(0);
        from_hook += r["sources"][&want].as_u64().unwrap_or(0);
        if let Some(p) = key.split_whitespace().nth(1) {
            policies.insert(p.to_string());
        }
    }
    let policies: Vec<String> = policies.into_iter().collect();
    let others = if from_hook == all {
        String::new()
    } else {
        format!(", {} by other means", all - from_hook)
    };
    Some(format!(
        "{hook}: {agree}/{all} predictions right, {from_hook} hashes from {hook}{others} (policies {})",
        policies.join(", ")
    ))
}

pub fn row(
    k: &Kernel,
    image: &Image,
    out: &Path,
    tests: &[TestRef],
    secs: u64,
    error: Option<anyhow::Error>,
) -> Row {
    let results = guest::results(out);
    let mut failures = Vec::new();
    if let Some(e) = error {
        failures.push(format!("{}: {e:#}", k.name));
    }
    let mut passed = 0;
    for t in tests {
        match results.get(t.name) {
            Some((true, _)) => passed += 1,
            Some((false, s)) => failures.push(format!(
                "{}: {} failed after {s} s (see {})",
                k.name,
                t.name,
                out.join("guest.log").display()
            )),
            None => failures.push(format!("{}: {} did not run", k.name, t.name)),
        }
    }
    let (tc, fib, drop, auto) = match read_json(&out.join("ready.json")) {
        Some(ready) => cells(&ready),
        None => {
            let n = "not run".to_string();
            (n.clone(), n.clone(), n.clone(), n)
        }
    };
    let mut hash = vec![auto];
    for hook in ["fexit", "kretprobe"] {
        if let Some(c) = hash_counts(out, hook) {
            hash.push(c);
        } else if tests.iter().any(|t| t.name.starts_with(hook)) {
            hash.push(format!("{hook}: no result"));
        } else {
            hash.push(format!("{hook}: not run"));
        }
    }
    Row {
        kernel: format!("{} ({}, {})", k.name, k.debian, image.release),
        tc,
        fib,
        drop,
        hash: hash.join("; "),
        passed: format!("{passed}/{}", tests.len()),
        secs,
        failures,
    }
}

impl Row {
    pub fn line(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {} | {} | {} s |",
            self.kernel, self.tc, self.fib, self.drop, self.hash, self.passed, self.secs
        )
    }

    pub fn failures(&self) -> Vec<String> {
        self.failures.clone()
    }
}

pub fn header() -> String {
    "| kernel | TC attach | fib hook | drop hook | hash source | tests passed | time |\n\
     |---|---|---|---|---|---|---|"
        .to_string()
}

pub fn table(rows: &[Row]) -> String {
    let mut s = header();
    for r in rows {
        s.push('\n');
        s.push_str(&r.line());
    }
    s.push('\n');
    s
}
