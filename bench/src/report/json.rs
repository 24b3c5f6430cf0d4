//! The report as JSON: the same figures as the markdown, with every sample (the data
//! file under docs/bench/).

use super::*;

impl Report {
    pub fn json(&self) -> Value {
        let m = &self.machine;
        let mut throughput = serde_json::Map::new();
        for (key, metric) in [
            ("tcp_bulk_gbit_s", Metric::TcpGbit),
            ("udp_flood_kpps", Metric::UdpKpps),
        ] {
            let mut per = serde_json::Map::new();
            for v in std::iter::once(Variant::Baseline).chain(self.variants.iter().copied()) {
                per.insert(v.key().into(), self.series(v, metric).json());
            }
            throughput.insert(key.into(), Value::Object(per));
        }
        let mut observers = serde_json::Map::new();
        for v in self.variants.iter().copied() {
            let slots: Vec<&crate::Slot> = self.slots(v).collect();
            let col = |f: &dyn Fn(&crate::Slot) -> f64| -> Vec<f64> {
                slots.iter().map(|s| f(s)).collect()
            };
            observers.insert(
                v.key().into(),
                json!({
                    "label": v.label(),
                    "hooks_asked": v.hooks(),
                    "ready": self.tracer_runs_of(Some(v)).first().map(|r| r.exited.lines.ready.clone()),
                    "cpu_s": col(&|s| s.observer_cpu_s()),
                    "records": col(&|s| s.tracer.as_ref().map(|r| r.exited.lines.records() as f64).unwrap_or(0.0)),
                    "lost": col(&|s| s.tracer.as_ref().map(|r| r.exited.lines.lost as f64).unwrap_or(0.0)),
                    "tcpdump_dropped_by_kernel": col(&|s| s.tcpdump_dropped() as f64),
                }),
            );
        }
        let pipeline = self.ladder.as_ref().map(|l| {
            let steps: Vec<Value> = l.sorted().iter().map(step_json).collect();
            json!({
                "records_per_packet": round(l.records_per_packet, 3),
                "sustained_means": format!("no record lost and caught up within {} ms of the flood's end", LAG_OK.as_millis()),
                "max_records_per_s_sustained": l.max_sustained().map(|s| round(s.offered_rps(), 0)),
                "max_records_per_s_without_loss": l.max_lossless().map(|s| round(s.offered_rps(), 0)),
                "cpu_s_per_million_records_at_max_sustained": l.max_sustained().map(|s| round(s.cpu_per_million(), 4)),
                "first_lossy": l.first_lossy().map(|s| step_json(&s)),
                "steps": steps,
            })
        });
        let whole: Vec<&TracerRun> = self.whole_path_runs();
        let runs = self.tracer_runs();
        let maps = self.maps().map(|r| {
            r.maps
                .iter()
                .map(|m| json!({"id": m.id, "name": m.name, "map_type": m.map_type, "bytes_memlock": m.memlock}))
                .collect::<Vec<_>>()
        });
        let ready = self.ready_ms();
        let exit = self.exit_ms();
        json!({
            "date": m.date,
            "machine": {
                "cpu": m.cpu, "cores": m.cores, "kernel": m.kernel, "os": m.os,
                "mem_total": m.mem_total, "load_at_start": m.load_at_start, "load_at_end": m.load_at_end,
                "foreign_tracers_at_start": m.other_tracers, "other_netns": m.other_netns,
            },
            "tracer_commit": m.commit,
            "method": {
                "reps": self.reps,
                "window_s": self.seconds,
                "warmup_s": self.warmup.as_secs_f64(),
                "interleaving": "per repetition, each variant right after a baseline of its own; variant order rotates; ratio = median(variant) / median(its baselines)",
                "traffic": "egress through the proxy: 20.0.0.1 in the target -> 169.254.100.150 in the gateway; rates received at the gateway",
                "udp_payload_bytes": crate::traffic::UDP_PAYLOAD,
                "tracer_stdout": "--json into a pipe read by the harness (lines counted, discarded)",
                "tcpdump": "4 processes, one per proxy interface: tcpdump -n -i <iface> -w /dev/null host 20.0.0.1",
            },
            "throughput": throughput,
            "observers": observers,
            "foreign_tracers_per_slot": self.pairs.iter().map(|p| json!({"variant": p.variant.variant.key(), "baseline_slot": p.baseline.foreign, "variant_slot": p.variant.foreign})).collect::<Vec<_>>(),
            "attribution": self.attribution.as_ref().map(attribution_json),
            "pipeline": pipeline,
            "lifecycle": {
                "ready_ms": {"median": round(median(&ready), 1), "max": round(ready.iter().copied().fold(0.0, f64::max), 1), "samples": ready.iter().map(|x| round(*x, 1)).collect::<Vec<_>>()},
                "startup_cpu_ms": runs.iter().map(|r| round(ms(r.exited.cpu.saturating_sub(r.exited.cpu_after_ready)), 1)).collect::<Vec<_>>(),
                "exit_ms": {"median": round(median(&exit), 1), "max": round(exit.iter().copied().fold(0.0, f64::max), 1), "samples": exit.iter().map(|x| round(*x, 1)).collect::<Vec<_>>()},
                "peak_rss_kib": {
                    "max": self.peak_rss().map(|r| r.peak_rss_kb()),
                    "max_in": self.peak_rss().map(|r| r.context.clone()),
                    "samples": runs.iter().map(|r| r.peak_rss_kb()).collect::<Vec<_>>(),
                },
                "rss_before_sigint_kib": {
                    "samples": runs.iter().map(|r| r.rss_kb).collect::<Vec<_>>(),
                    "contexts": runs.iter().map(|r| r.context.clone()).collect::<Vec<_>>(),
                },
                "whole_path": {
                    "ready_ms": whole.iter().map(|r| round(ms(r.exited.ready_after), 1)).collect::<Vec<_>>(),
                    "startup_cpu_ms": whole.iter().map(|r| round(ms(r.exited.cpu.saturating_sub(r.exited.cpu_after_ready)), 1)).collect::<Vec<_>>(),
                    "exit_ms": whole.iter().map(|r| round(ms(r.exited.exit_after), 1)).collect::<Vec<_>>(),
                    "peak_rss_kib": whole.iter().map(|r| r.peak_rss_kb()).collect::<Vec<_>>(),
                    "rss_before_sigint_kib": whole.iter().map(|r| r.rss_kb).collect::<Vec<_>>(),
                },
                "whole_path_of_five_labs": self.startup.as_ref().map(|st| json!({
                    "namespaces": st.namespaces(),
                    "ready_ms": st.runs.iter().map(|r| round(ms(r.exited.ready_after), 1)).collect::<Vec<_>>(),
                    "peak_rss_kib": st.runs.iter().map(|r| r.peak_rss_kb()).collect::<Vec<_>>(),
                })),
                "bpf_maps": maps,
                "bpf_maps_bytes_memlock": self.maps().map(|r| r.maps.iter().map(|m| m.memlock).sum::<u64>()),
            },
            "targets": self.targets().iter().map(|t| json!({"target": t.goal, "figure": t.figure, "verdict": t.verdict.as_str()})).collect::<Vec<_>>(),
            "took_s": round(self.took.as_secs_f64(), 1),
        })
    }
}

fn attribution_json(a: &Attribution) -> Value {
    json!({
        "method": format!("kernel.bpf_stats_enabled over {} UDP datagrams of {} bytes from the VIP at {} per second; counts and run times summed over the tracer's copies of each program; per packet = / datagrams sent", attribution::PACKETS, crate::traffic::UDP_PAYLOAD, attribution::PPS),
        "bpf_stats_enabled_before": a.stats_before,
        "runs": a.runs.iter().map(|r| json!({
            "variant": r.variant.key(),
            "label": r.variant.label(),
            "namespaces": r.namespaces,
            "packets_sent": r.sent.packets,
            "packets_received": r.received,
            "send_seconds": round(r.sent.elapsed.as_secs_f64(), 3),
            "program_ns_per_packet": round(r.ns_per_packet(), 1),
            "idle_window_s": round(r.idle.as_secs_f64(), 3),
            "flood_window_s": round(r.window.as_secs_f64(), 3),
            "programs": r.ordered().iter().map(|(name, p)| json!({
                "name": name,
                "copies": p.instances,
                "run_cnt": p.runs,
                "run_time_ns": p.run_time_ns,
                "runs_per_packet": round(r.per_packet(p.runs), 3),
                "ns_per_run": round(p.ns_per_run(), 1),
                "ns_per_packet": round(r.per_packet(p.run_time_ns), 1),
                "idle_run_cnt": p.idle_runs,
                "background_runs_per_packet": round(r.background_per_packet(p), 3),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

fn step_json(s: &&Step) -> Value {
    json!({
        "pps_asked": s.pps,
        "packets_sent": s.sent.packets,
        "seconds": round(s.secs(), 3),
        "offered_records_per_s": round(s.offered_rps(), 0),
        "records_delivered": s.records,
        "records_lost": s.lost,
        "tracer_cpu_s": round(s.cpu.as_secs_f64(), 3),
        "tracer_cpu_share": round(s.cpu_share(), 3),
        "cpu_s_per_million_records": round(s.cpu_per_million(), 4),
        "caught_up_ms": s.lag().as_millis() as u64,
        "processed_records_per_s": round(s.processed_rps(), 0),
        "sustained": s.sustained(),
        "foreign_tracers": s.foreign,
        "lines": s.run.exited.lines.by_type,
    })
}
