//! The benchmark's report: every figure computed once from the measurements, and the same
//! figures rendered as a markdown table (stdout, the README) and as JSON (--out). Owns the
//! targets (issues 5 and 8) and the verdict on each. Parts left out with `--only` are
//! left out of the report too.

mod json;
mod markdown;

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{json, Value};

use crate::attribution::{self, Attribution};
use crate::machine::Machine;
use crate::pipeline::{Ladder, Step, LAG_OK};
use crate::startup::Startup;
use crate::stats::{mad, median, ratio, rel_spread, Verdict};
use crate::{Mode, Pair, Part, TracerRun, Variant};

pub struct Report {
    pub machine: Machine,
    pub reps: usize,
    pub seconds: f64,
    pub warmup: Duration,
    /// The variants measured (beside the baseline).
    pub variants: Vec<Variant>,
    pub pairs: Vec<Pair>,
    pub attribution: Option<Attribution>,
    pub ladder: Option<Ladder>,
    pub startup: Option<Startup>,
    pub took: Duration,
}

/// A variant's samples and the baselines measured right before each of them.
struct Series {
    samples: Vec<f64>,
    baselines: Vec<f64>,
}

impl Series {
    fn median(&self) -> f64 {
        median(&self.samples)
    }
    fn ratio(&self) -> f64 {
        ratio(&self.samples, &self.baselines)
    }
    /// variant / baseline of each pair.
    fn pair_ratios(&self) -> Vec<f64> {
        self.samples
            .iter()
            .zip(&self.baselines)
            .map(|(v, b)| v / b)
            .collect()
    }
    /// The noise of a ratio: the median absolute deviation of the pairs' ratios.
    /// NaN with fewer than two pairs: one pair says nothing about the noise.
    fn noise(&self) -> f64 {
        if self.samples.len() < 2 {
            return f64::NAN;
        }
        mad(&self.pair_ratios())
    }
    /// "0.950 ± 0.031", or "0.950 (one pair)"
    fn ratio_text(&self) -> String {
        if self.noise().is_nan() {
            return format!("{:.3} (one pair)", self.ratio());
        }
        format!("{:.3} ± {:.3}", self.ratio(), self.noise())
    }
    fn json(&self) -> Value {
        json!({
            "median": round(self.median(), 4),
            "baseline_median": round(median(&self.baselines), 4),
            "ratio": round(self.ratio(), 4),
            "spread": round(rel_spread(&self.samples), 4),
            "pair_ratios": self.pair_ratios().iter().map(|x| round(*x, 4)).collect::<Vec<_>>(),
            "noise_mad_of_pair_ratios": round(self.noise(), 4),
            "samples": self.samples.iter().map(|x| round(*x, 4)).collect::<Vec<_>>(),
            "baselines": self.baselines.iter().map(|x| round(*x, 4)).collect::<Vec<_>>(),
        })
    }
}

#[derive(Clone, Copy)]
enum Metric {
    TcpGbit,
    UdpKpps,
}

/// One target of the issue and whether this run meets it.
struct Target {
    goal: &'static str,
    figure: String,
    verdict: Verdict,
}

const READY_GOAL_MS: f64 = 300.0;
/// Start to ready for a whole path of 20 namespaces.
const READY_MANY_GOAL_MS: f64 = 1000.0;
const RSS_GOAL_BYTES: f64 = 30e6;
const LOSS_FREE_GOAL_RPS: f64 = 200e3;
const NO_COST_GOAL: f64 = 0.98;

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl Report {
    fn series(&self, v: Variant, m: Metric) -> Series {
        let pick = |s: &crate::Slot| match m {
            Metric::TcpGbit => s.tcp_bytes_per_s * 8e-9,
            Metric::UdpKpps => s.udp_packets_per_s / 1e3,
        };
        let pairs = self.pairs.iter().filter(|p| p.variant.variant == v);
        if v == Variant::Baseline {
            let all: Vec<f64> = self.pairs.iter().map(|p| pick(&p.baseline)).collect();
            return Series {
                samples: all.clone(),
                baselines: all,
            };
        }
        Series {
            samples: pairs.clone().map(|p| pick(&p.variant)).collect(),
            baselines: pairs.map(|p| pick(&p.baseline)).collect(),
        }
    }

    fn slots(&self, v: Variant) -> impl Iterator<Item = &crate::Slot> {
        self.pairs
            .iter()
            .filter(move |p| p.variant.variant == v)
            .map(|p| &p.variant)
    }

    /// The tracer runs on the proxy (`--netns`): throughput slots and pipeline steps.
    fn tracer_runs(&self) -> Vec<&TracerRun> {
        self.all_tracer_runs()
            .into_iter()
            .filter(|r| r.mode == Mode::Proxy)
            .collect()
    }

    fn all_tracer_runs(&self) -> Vec<&TracerRun> {
        self.pairs
            .iter()
            .filter_map(|p| p.variant.tracer.as_ref())
            .chain(
                self.ladder
                    .iter()
                    .flat_map(|l| l.steps.iter().map(|s| &s.run)),
            )
            .chain(self.startup.iter().flat_map(|s| s.runs.iter()))
            .collect()
    }

    /// Start to ready of each start in the start-up part (five labs).
    fn many_ready_ms(&self) -> Vec<f64> {
        self.startup
            .iter()
            .flat_map(|s| s.runs.iter().map(|r| ms(r.exited.ready_after)))
            .collect()
    }

    /// The whole-path tracer runs (no `--netns`).
    fn whole_path_runs(&self) -> Vec<&TracerRun> {
        self.all_tracer_runs()
            .into_iter()
            .filter(|r| r.mode == Mode::WholePath)
            .collect()
    }

    fn measured(&self, v: Variant) -> bool {
        self.variants.contains(&v)
    }

    /// The variants of one part, in their order.
    fn variants_of(&self, part: Part) -> Vec<Variant> {
        self.variants
            .iter()
            .copied()
            .filter(|v| v.part() == part)
            .collect()
    }

    /// The tracer runs of one throughput variant, or all of them.
    fn tracer_runs_of(&self, v: Option<Variant>) -> Vec<&TracerRun> {
        match v {
            None => self.tracer_runs(),
            Some(v) => self.slots(v).filter_map(|s| s.tracer.as_ref()).collect(),
        }
    }

    fn ready_ms(&self) -> Vec<f64> {
        self.tracer_runs()
            .iter()
            .map(|r| ms(r.exited.ready_after))
            .collect()
    }

    fn exit_ms(&self) -> Vec<f64> {
        self.tracer_runs()
            .iter()
            .map(|r| ms(r.exited.exit_after))
            .collect()
    }

    fn peak_rss(&self) -> Option<&TracerRun> {
        self.all_tracer_runs()
            .into_iter()
            .max_by_key(|r| r.peak_rss_kb())
    }

    fn maps(&self) -> Option<&TracerRun> {
        self.tracer_runs().into_iter().find(|r| !r.maps.is_empty())
    }

    fn targets(&self) -> Vec<Target> {
        let mut t = Vec::new();
        for (v, goal) in [
            (
                Variant::NoMatch,
                "no measurable cost (under 2 %) on traffic that matches nothing: VIP matches nothing",
            ),
            (
                Variant::OtherFlow,
                "no measurable cost (under 2 %) on traffic that matches nothing: tracer follows another flow",
            ),
            (
                Variant::WholeNoMatch,
                "no measurable cost (under 2 %) on traffic that matches nothing: whole path, VIP matches nothing",
            ),
            (
                Variant::WholeOtherFlow,
                "no measurable cost (under 2 %) on traffic that matches nothing: whole path, follows another flow",
            ),
        ] {
            if !self.measured(v) {
                continue;
            }
            let (tcp, udp) = (
                self.series(v, Metric::TcpGbit),
                self.series(v, Metric::UdpKpps),
            );
            // On the good side of the goal by: 2 % minus the cost.
            let judge = |x: &Series| Verdict::judge(x.ratio() - NO_COST_GOAL, x.noise());
            t.push(Target {
                goal,
                figure: format!(
                    "TCP ×{}, UDP ×{}",
                    tcp.ratio_text(),
                    udp.ratio_text()
                ),
                verdict: Verdict::all(&[judge(&tcp), judge(&udp)]),
            });
        }
        for (v, dump, goal) in [
            (
                Variant::AllVip,
                Variant::Tcpdump,
                "tracing every VIP packet costs less than tcpdump on the same interfaces",
            ),
            (
                Variant::DaemonSet,
                Variant::TcpdumpWholePath,
                "the DaemonSet's default (whole path) costs no more than tcpdump on the same interfaces",
            ),
        ] {
            if self.measured(v) && self.measured(dump) {
                self.tcpdump_target(&mut t, v, dump, goal);
            }
        }
        if let Some(ladder) = &self.ladder {
            self.pipeline_target(ladder, &mut t);
        }
        let ready = self.ready_ms();
        if !ready.is_empty() {
            t.push(Target {
                goal: "ready in under 300 ms (one proxy)",
                figure: format!(
                    "median {:.0} ms, max {:.0} ms over {} starts",
                    median(&ready),
                    ready.iter().copied().fold(0.0, f64::max),
                    ready.len()
                ),
                verdict: Verdict::exact(median(&ready) < READY_GOAL_MS),
            });
        }
        let many = self.many_ready_ms();
        if let Some(startup) = self.startup.as_ref().filter(|_| !many.is_empty()) {
            t.push(Target {
                goal: "ready in under 1 s (whole path of 20 namespaces)",
                figure: format!(
                    "median {:.0} ms, max {:.0} ms over {} starts, {} namespaces traced",
                    median(&many),
                    many.iter().copied().fold(0.0, f64::max),
                    many.len(),
                    startup.namespaces()
                ),
                verdict: Verdict::exact(median(&many) < READY_MANY_GOAL_MS),
            });
        }
        let rss = self.peak_rss().map(|r| r.peak_rss_kb()).unwrap_or(0) as f64 * 1024.0;
        if rss > 0.0 {
            t.push(Target {
                goal: "peak RSS under 30 MB",
                figure: format!(
                    "{:.1} MB, the highest of {} tracer runs ({})",
                    rss / 1e6,
                    self.all_tracer_runs().len(),
                    self.peak_rss().map_or("?", |r| r.context.as_str())
                ),
                verdict: Verdict::exact(rss < RSS_GOAL_BYTES),
            });
        }
        t
    }

    fn tcpdump_target(
        &self,
        t: &mut Vec<Target>,
        v: Variant,
        tcpdump: Variant,
        goal: &'static str,
    ) {
        let mut parts = Vec::new();
        let mut texts = Vec::new();
        for (name, metric) in [("TCP", Metric::TcpGbit), ("UDP", Metric::UdpKpps)] {
            let all = self.series(v, metric);
            let dump = self.series(tcpdump, metric);
            // A higher ratio is the smaller cost.
            parts.push(Verdict::judge(
                all.ratio() - dump.ratio(),
                all.noise().max(dump.noise()),
            ));
            texts.push(format!(
                "{name} ×{} (tcpdump ×{})",
                all.ratio_text(),
                dump.ratio_text()
            ));
        }
        t.push(Target {
            goal,
            figure: texts.join(", "),
            verdict: Verdict::all(&parts),
        });
    }

    fn pipeline_target(&self, ladder: &Ladder, t: &mut Vec<Target>) {
        let sustained = ladder.max_sustained().map(|s| s.offered_rps());
        let lossless = ladder.max_lossless().map(|s| s.offered_rps());
        t.push(Target {
            goal: "no loss at 200 000 records/s on this 2-core machine",
            figure: format!(
                "sustained (no loss, no backlog): {:.0} records/s; without loss in a {} s step: {:.0} records/s",
                sustained.unwrap_or(0.0),
                self.seconds,
                lossless.unwrap_or(0.0)
            ),
            // The paced sender lands within about 1 % of the rate it is asked for.
            verdict: Verdict::exact(sustained.unwrap_or(0.0) >= 0.99 * LOSS_FREE_GOAL_RPS),
        });
    }
}
