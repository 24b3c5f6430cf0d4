//! The report as markdown: the tables `cargo xtask bench` prints (and docs/benchmarks.md
//! holds), one section per part of the bench.

use super::*;

impl Report {
    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut s = String::new();
        let _ = writeln!(s, "## `cargo xtask bench` results\n");
        let _ = writeln!(
            s,
            "Run {} on {} ({} cores, {}), {}, kernel {}; load average {} at the start, {} at the end; {} other network namespaces on the machine. Tracer at {}. {} repetitions, {} s windows after a {:.1} s warm-up; the whole run took {:.0} s.\n",
            m.date, m.cpu, m.cores, m.mem_total, m.os, m.kernel, m.load_at_start, m.load_at_end, m.other_netns, m.commit, self.reps, self.seconds, self.warmup.as_secs_f64(), self.took.as_secs_f64()
        );
        let _ = writeln!(
            s,
            "Method: every figure is a median over the repetitions; tracer variants trace the proxy (`--netns b-proxy-a`) unless they say *whole path*. Each variant's slot runs right after a baseline slot of its own (baseline, variant, baseline, variant, ...; the variants' order rotates between repetitions), and its ratio is median(variant) / median(the baselines measured right before it); ± is the noise of that ratio, the median absolute deviation of the per-pair ratios variant / baseline. A target is *inconclusive* when the figure is nearer its goal than that noise. Traffic is egress through the proxy: sent from 20.0.0.1 in the target to a sink at 169.254.100.150 in the gateway, and rates are what the sink received. TCP: one bulk stream. UDP: one flow of {}-byte datagrams, sendmmsg from one thread, unpaced. The tracer runs with `--json` and its stdout is a pipe read by the bench harness (lines counted, then discarded). tcpdump runs as 4 processes, `ip netns exec b-proxy-a tcpdump -n -i <iface> -w /dev/null host 20.0.0.1`, one per interface the tracer attaches to (conduit-a.-3150, conduit-a.-6496, proxy.cond-0a85, bridge0); on the whole path as 9, those and each frontend's external and conduit interfaces and the target's VIP interface.\n",
            crate::traffic::UDP_PAYLOAD
        );

        let slots: Vec<&crate::Slot> = self
            .pairs
            .iter()
            .flat_map(|p| [&p.baseline, &p.variant])
            .collect();
        let steps = self.ladder.as_ref().map_or(&[][..], |l| &l.steps[..]);
        let dirty_slots = slots.iter().filter(|s| s.foreign > 0).count();
        let dirty_steps = steps.iter().filter(|s| s.foreign > 0).count();
        let _ = writeln!(
            s,
            "Shared machine: other people's tracers that may watch this lab (started without `--netns`, i.e. in discovery mode, which attaches to every proxy and frontend it finds) were running during {dirty_slots} of {} throughput slots and {dirty_steps} of {} pipeline steps; their programs then also ran on this lab's packets, baseline included. The fib tracepoints are global: every tracer on the machine runs its program on every route lookup of every namespace.\n",
            slots.len(),
            steps.len()
        );
        let table: Vec<Variant> = self
            .variants_of(Part::Observers)
            .into_iter()
            .chain(self.variants_of(Part::WholePath))
            .collect();
        if !self.pairs.is_empty() {
            let _ = writeln!(s, "### Egress throughput through the proxy\n");
            let _ = writeln!(
                s,
                "| Observer | TCP Gbit/s | × baseline | UDP kpps | × baseline | observer CPU s per slot (after ready) | records delivered / lost (tracer), packets dropped (tcpdump) |"
            );
            let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---|");
            for v in std::iter::once(Variant::Baseline).chain(table) {
                self.throughput_row(&mut s, v);
            }
            if !self.variants_of(Part::WholePath).is_empty() {
                let _ = writeln!(s, "\n{}", self.whole_path_note());
            }
        }
        let hooks = self.variants_of(Part::Hooks);
        if !hooks.is_empty() {
            self.hooks_md(&mut s, &hooks);
        }
        if let Some(a) = &self.attribution {
            attribution_md(&mut s, a);
        }
        if let Some(ladder) = &self.ladder {
            self.pipeline_md(&mut s, ladder);
        }

        if !self.all_tracer_runs().is_empty() {
            let _ = writeln!(s, "\n### Start, stop, memory\n");
            let _ = writeln!(s, "| Figure | median | max | runs |");
            let _ = writeln!(s, "|---|---:|---:|---:|");
            let startup_cpu: Vec<f64> = self
                .tracer_runs()
                .iter()
                .map(|r| ms(r.exited.cpu.saturating_sub(r.exited.cpu_after_ready)))
                .collect();
            for (what, xs) in [
                ("start to ready record", self.ready_ms()),
                ("tracer CPU time until ready", startup_cpu),
                (
                    "SIGINT to exit (after the tracer caught up)",
                    self.exit_ms(),
                ),
            ] {
                if xs.is_empty() {
                    continue;
                }
                let _ = writeln!(
                    s,
                    "| {what} | {:.0} ms | {:.0} ms | {} |",
                    median(&xs),
                    xs.iter().copied().fold(0.0, f64::max),
                    xs.len()
                );
            }
            let whole = self.whole_path_runs();
            if !whole.is_empty() {
                let n = whole
                    .iter()
                    .map(|r| r.exited.lines.ready.len())
                    .max()
                    .unwrap_or(0);
                let ready: Vec<f64> = whole.iter().map(|r| ms(r.exited.ready_after)).collect();
                let cpu: Vec<f64> = whole
                    .iter()
                    .map(|r| ms(r.exited.cpu.saturating_sub(r.exited.cpu_after_ready)))
                    .collect();
                for (what, xs) in [
                    (
                        format!("start to ready record, whole path ({n} namespaces)"),
                        ready,
                    ),
                    (
                        format!("tracer CPU time until ready, whole path ({n} namespaces)"),
                        cpu,
                    ),
                ] {
                    let _ = writeln!(
                        s,
                        "| {what} | {:.0} ms | {:.0} ms | {} |",
                        median(&xs),
                        xs.iter().copied().fold(0.0, f64::max),
                        xs.len()
                    );
                }
            }
            if let Some(startup) = &self.startup {
                let xs = self.many_ready_ms();
                let _ = writeln!(
                    s,
                    "| start to ready record, whole path of five labs ({} namespaces) | {:.0} ms | {:.0} ms | {} |",
                    startup.namespaces(),
                    median(&xs),
                    xs.iter().copied().fold(0.0, f64::max),
                    xs.len()
                );
            }
            let mb = |kb: u64| kb as f64 * 1024.0 / 1e6;
            for (what, runs) in [
                (
                    "peak RSS (VmHWM before SIGINT, or wait4 maxrss), proxy",
                    self.tracer_runs(),
                ),
                (
                    "peak RSS (VmHWM before SIGINT, or wait4 maxrss), whole path",
                    self.whole_path_runs(),
                ),
            ] {
                let rss: Vec<f64> = runs.iter().map(|r| mb(r.peak_rss_kb())).collect();
                if rss.is_empty() {
                    continue;
                }
                let _ = writeln!(
                    s,
                    "| {what} | {:.1} MB | {:.1} MB | {} |",
                    median(&rss),
                    rss.iter().copied().fold(0.0, f64::max),
                    rss.len()
                );
            }
            for (what, runs) in [
                (
                    "RSS before SIGINT (VmRSS), VIP matching nothing",
                    self.tracer_runs_of(Some(Variant::NoMatch)),
                ),
                (
                    "RSS before SIGINT (VmRSS), all proxy runs",
                    self.tracer_runs_of(None),
                ),
                (
                    "RSS before SIGINT (VmRSS), whole path",
                    self.whole_path_runs(),
                ),
            ] {
                let now: Vec<f64> = runs.iter().filter_map(|r| r.rss_kb).map(mb).collect();
                if now.is_empty() {
                    continue;
                }
                let _ = writeln!(
                    s,
                    "| {what} | {:.1} MB | {:.1} MB | {} |",
                    median(&now),
                    now.iter().copied().fold(0.0, f64::max),
                    now.len()
                );
            }
            if let Some(r) = self.maps() {
                let total: u64 = r.maps.iter().map(|m| m.memlock).sum();
                let list: Vec<String> = r
                    .maps
                    .iter()
                    .map(|m| format!("{} {:.1} KiB", map_name(&m.name), m.memlock as f64 / 1024.0))
                    .collect();
                let _ = writeln!(
                    s,
                    "| BPF map memory (memlock of the maps the tracer holds) | {:.2} MiB | | 1 |",
                    total as f64 / (1024.0 * 1024.0)
                );
                let _ = writeln!(s, "\nMaps: {}.", list.join(", "));
            }
        }
        let _ = writeln!(s, "\n### Targets\n");
        let _ = writeln!(s, "| Target | This run | |");
        let _ = writeln!(s, "|---|---|---|");
        for t in self.targets() {
            let _ = writeln!(
                s,
                "| {} | {} | **{}** |",
                t.goal,
                t.figure,
                t.verdict.as_str()
            );
        }
        s
    }

    /// One line of the throughput table.
    fn throughput_row(&self, s: &mut String, v: Variant) {
        let (tcp, udp) = (
            self.series(v, Metric::TcpGbit),
            self.series(v, Metric::UdpKpps),
        );
        let (rt, ru) = if v == Variant::Baseline {
            (
                format!("1 (spread {:.1} %)", rel_spread(&tcp.samples) * 100.0),
                format!("1 (spread {:.1} %)", rel_spread(&udp.samples) * 100.0),
            )
        } else {
            (tcp.ratio_text(), udp.ratio_text())
        };
        let slots: Vec<&crate::Slot> = self.slots(v).collect();
        let cpu: Vec<f64> = slots.iter().map(|s| s.observer_cpu_s()).collect();
        let extra = match v {
            Variant::Baseline => "–".to_string(),
            Variant::Tcpdump | Variant::TcpdumpWholePath => format!(
                "{:.0} dropped by kernel",
                median(
                    &slots
                        .iter()
                        .map(|s| s.tcpdump_dropped() as f64)
                        .collect::<Vec<_>>()
                )
            ),
            _ => {
                let rec: Vec<f64> = slots
                    .iter()
                    .filter_map(|s| s.tracer.as_ref())
                    .map(|r| r.exited.lines.records() as f64)
                    .collect();
                let lost: Vec<f64> = slots
                    .iter()
                    .filter_map(|s| s.tracer.as_ref())
                    .map(|r| r.exited.lines.lost as f64)
                    .collect();
                format!("{:.0} / {:.0}", median(&rec), median(&lost))
            }
        };
        let cpu = if v == Variant::Baseline {
            "–".to_string()
        } else {
            format!("{:.2}", median(&cpu))
        };
        let _ = writeln!(
            s,
            "| {} | {:.2} | {} | {:.1} | {} | {} | {} |",
            v.label(),
            tcp.median(),
            rt,
            udp.median(),
            ru,
            cpu,
            extra
        );
    }

    /// What the whole-path variants trace, from their ready records.
    fn whole_path_note(&self) -> String {
        let namespaces: Vec<String> = self
            .tracer_runs_of(Some(
                *self
                    .variants_of(Part::WholePath)
                    .first()
                    .unwrap_or(&Variant::WholeNoMatch),
            ))
            .first()
            .map(|r| {
                r.exited
                    .lines
                    .ready
                    .iter()
                    .map(|r| format!("{} {}", r.role, r.netns))
                    .collect()
            })
            .unwrap_or_default();
        format!(
            "Whole path: the tracer without `--netns`, in a private mount and pid namespace that shows it only this lab's netns files and none of the machine's processes (other labs on the machine carry the same VIPs); it traced {} namespaces ({}); the *copies* column of the per-program table says how many copies of the TC programs that took (one for all, where the kernel lets a TC program read its device's namespace). Its rediscovery walks this near-empty /proc once a second, cheaper than on a node.",
            namespaces.len(),
            namespaces.join(", ")
        )
    }

    /// The hook-family variants: the tracer on the proxy, VIP matching nothing, with only
    /// some hook families loaded.
    fn hooks_md(&self, s: &mut String, hooks: &[Variant]) {
        let _ = writeln!(
            s,
            "\n### Cost per hook family (tracer on the proxy, VIP matches nothing, `--hooks`)\n"
        );
        let _ = writeln!(
            s,
            "The TC programs are the base; each row adds one family. *Attached besides TC* is what the tracer's ready record says it attached (a family the kernel refuses costs nothing, and says so).\n"
        );
        let _ = writeln!(
            s,
            "| `--hooks` | attached besides TC | TCP Gbit/s | × baseline | UDP kpps | × baseline | tracer CPU s per slot (after ready) |"
        );
        let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|");
        for &v in hooks {
            let (tcp, udp) = (
                self.series(v, Metric::TcpGbit),
                self.series(v, Metric::UdpKpps),
            );
            let cpu: Vec<f64> = self.slots(v).map(|s| s.observer_cpu_s()).collect();
            let _ = writeln!(
                s,
                "| {} | {} | {:.2} | {} | {:.1} | {} | {:.2} |",
                v.hooks().unwrap_or("?"),
                self.attached_besides_tc(v),
                tcp.median(),
                tcp.ratio_text(),
                udp.median(),
                udp.ratio_text(),
                median(&cpu)
            );
        }
    }

    /// The non-TC hooks a variant's tracer attached, and those it tried and the kernel
    /// refused, from its first ready record.
    fn attached_besides_tc(&self, v: Variant) -> String {
        let Some(ready) = self
            .tracer_runs_of(Some(v))
            .into_iter()
            .find_map(|r| r.exited.lines.ready.first())
        else {
            return "?".into();
        };
        let attached: Vec<&str> = ready
            .hooks
            .iter()
            .map(String::as_str)
            .filter(|h| !h.starts_with("tc:"))
            .collect();
        let refused: Vec<&str> = ready.refused.iter().map(|h| &*h.hook).collect();
        let mut text = if attached.is_empty() {
            "none".to_string()
        } else {
            attached.join(", ")
        };
        if !refused.is_empty() {
            let _ = write!(text, " (refused: {})", refused.join(", "));
        }
        text
    }

    fn pipeline_md(&self, s: &mut String, ladder: &Ladder) {
        let _ = writeln!(
            s,
            "\n### Event pipeline (tracer tracing every VIP packet, UDP flood paced per step)\n"
        );
        let _ = writeln!(
            s,
            "{:.2} records per flood packet (hops on proxy.cond-0a85 and bridge0 in, bridge0 and a conduit port out, plus the fib lookups). A fresh tracer per step (the first, 1 s at 5 000 packets/s, also calibrates records per packet), its records counted on its stdout; *processed* = records written per second from the flood's start until the tracer caught up, its capacity when it fell behind. *Sustained* = no record lost and the tracer caught up within {} ms of the flood's end: the 2 MiB ring buffer holds some 20 000 records, so a tracer slower than the flood can finish a {} s step without loss but not without a backlog.\n",
            ladder.records_per_packet,
            LAG_OK.as_millis(),
            self.seconds
        );
        let _ = writeln!(
            s,
            "| offered records/s | packets/s | delivered | lost | loss | caught up after the flood | sustained | processed records/s | tracer CPU, % of a core | tracer CPU s per million records |"
        );
        let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|");
        for st in ladder.sorted() {
            let _ = writeln!(
                s,
                "| {:.0} | {:.0} | {} | {} | {:.2} % | {} ms | {} | {:.0} | {:.0} % | {:.2} |",
                st.offered_rps(),
                st.sent.packets as f64 / st.secs(),
                st.records,
                st.lost,
                st.loss_fraction() * 100.0,
                st.lag().as_millis(),
                if st.sustained() { "yes" } else { "no" },
                st.processed_rps(),
                st.cpu_share() * 100.0,
                st.cpu_per_million(),
            );
        }
        let _ = writeln!(s, "\n{}\n", self.pipeline_summary(ladder));
    }

    fn pipeline_summary(&self, l: &Ladder) -> String {
        let mut s = match l.max_sustained() {
            Some(c) => format!(
                "Highest rate sustained: **{:.0} records/s**, tracer CPU {:.2} s per million records there.",
                c.offered_rps(),
                c.cpu_per_million()
            ),
            None => "No step was sustained.".to_string(),
        };
        if let Some(c) = l.max_lossless() {
            let _ = write!(
                s,
                " Highest rate without loss in a {} s step: {:.0} records/s.",
                self.seconds,
                c.offered_rps()
            );
        }
        match l.first_lossy() {
            Some(x) => {
                let _ = write!(
                    s,
                    " Above it: at {:.0} records/s, {} of {} records lost ({:.2} %).",
                    x.offered_rps(),
                    x.lost,
                    x.records + x.lost,
                    x.loss_fraction() * 100.0
                );
            }
            None => {
                let top = l.sorted().last().map(|s| s.offered_rps()).unwrap_or(0.0);
                let _ = write!(
                    s,
                    " No step lost records, up to {top:.0} records/s (the end of the ladder or the most the sender could offer)."
                );
            }
        }
        s
    }
}

/// The per-program table: one line per variant and program, then the variant's total.
fn attribution_md(s: &mut String, a: &Attribution) {
    let _ = writeln!(
        s,
        "\n### Where the time goes, per eBPF program (`kernel.bpf_stats_enabled`)\n"
    );
    let _ = writeln!(
        s,
        "A fresh tracer per variant; its programs' run counts and run times (the kernel's, summed over the copies the tracer loaded: the TC programs once for every traced namespace, or once per namespace where the kernel does not let them tell namespaces apart, the node-wide fib, hash and drop programs once) read before and after {} UDP datagrams of {} bytes sent from the VIP at {} per second; *per packet* divides by the datagrams sent. The kernel's own cost around a program (a perf tracepoint's record, the TC hook) is not in its run time. *Idle runs/s*: runs per second in two {:.0} s windows, just before and just after, with no bench traffic (route lookups elsewhere on the machine reach the fib programs too: under other people's traffic these are not zero); *of which background* is that rate over the flood's window, per packet, the part of *runs per packet* that other traffic may account for (a burst of it during the flood alone escapes both windows). `kernel.bpf_stats_enabled` was {} before and was set back to it; the statistics themselves add some ns per run.\n",
        attribution::PACKETS,
        crate::traffic::UDP_PAYLOAD,
        attribution::PPS,
        attribution::IDLE.as_secs_f64(),
        a.stats_before
    );
    let _ = writeln!(
        s,
        "| tracer | program | copies | runs per packet | of which background | ns per run | ns per packet | idle runs/s |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|");
    for r in &a.runs {
        for (name, p) in r.ordered() {
            let _ = writeln!(
                s,
                "| {} | {name} | {} | {:.2} | {:.2} | {:.0} | {:.0} | {:.0} |",
                r.variant.key(),
                p.instances,
                r.per_packet(p.runs),
                r.background_per_packet(p),
                p.ns_per_run(),
                r.per_packet(p.run_time_ns),
                p.idle_runs as f64 / r.idle.as_secs_f64()
            );
        }
        let _ = writeln!(
            s,
            "| **{}** | **all** ({} namespaces; {} sent, {} received) | | | | | **{:.0}** | |",
            r.variant.key(),
            r.namespaces,
            r.sent.packets,
            r.received,
            r.ns_per_packet()
        );
    }
}

fn map_name(name: &str) -> &str {
    if name.is_empty() {
        "(unnamed)"
    } else {
        name
    }
}
