//! The event pipeline: how many records per second the tracer takes without loss. Owns the
//! rate ladder: a paced UDP flood from the VIP while the tracer traces every VIP packet,
//! the offered rate raised step by step (a fresh tracer per step, so each step's loss and
//! CPU time are its own), then two bisection steps between the last sustained step and
//! the first one that was not.
//!
//! Records are counted where they come out: `hop` and `route` lines on the tracer's stdout,
//! plus the counts of its `lost` records (ring buffer full). Offered = delivered + lost.
//! A step is *sustained* when nothing was lost and the tracer had caught up within
//! LAG_OK of the flood's end: the 2 MiB ring holds some 20 000 records, so a tracer slower
//! than the flood can end a short step without loss, but not without a backlog.

use std::time::Duration;

use anyhow::{bail, Result};
use lab::VIP4;

use crate::observer::{foreign_tracers, Exited};
use crate::traffic::{Sender, Sent};
use crate::{Ctx, Mode, TracerRun, PREFIX, SETTLE_MAX, SETTLE_QUIET};

/// Records per second the ladder aims at (converted to packets per second with the
/// records-per-packet measured in a calibration step).
const LADDER: &[f64] = &[
    50e3, 100e3, 150e3, 200e3, 250e3, 300e3, 400e3, 500e3, 650e3, 800e3, 1e6, 1.3e6,
];
const CALIBRATION_PPS: u64 = 5_000;
/// The ladder ends after this many lossy steps in a row, or this many steps in a row
/// in which the sender could not offer more than before (then the sender, starved of CPU,
/// is the limit, not the tracer).
const STEPS_TO_STOP: usize = 2;
const BISECTIONS: usize = 2;
/// A tracer still writing records this long after the flood ended was falling behind.
pub const LAG_OK: Duration = Duration::from_millis(250);
/// A step offers "more" when its rate beats the best so far by this factor.
const MORE: f64 = 1.05;

/// One step of the ladder.
pub struct Step {
    /// Packets per second asked of the sender.
    pub pps: u64,
    pub sent: Sent,
    pub records: u64,
    pub lost: u64,
    /// Tracer CPU time from its ready record until it had caught up (before SIGINT).
    pub cpu: Duration,
    /// Other people's tracers that may have watched the lab during the step.
    pub foreign: usize,
    pub run: TracerRun,
}

impl Step {
    pub fn secs(&self) -> f64 {
        self.sent.elapsed.as_secs_f64()
    }

    /// Records offered per second: delivered plus lost, over the sending time.
    pub fn offered_rps(&self) -> f64 {
        (self.records + self.lost) as f64 / self.secs()
    }

    pub fn loss_fraction(&self) -> f64 {
        self.lost as f64 / (self.records + self.lost).max(1) as f64
    }

    /// Tracer CPU seconds per million records delivered.
    pub fn cpu_per_million(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.records.max(1) as f64
    }

    /// Tracer CPU use while sending, as a fraction of one core.
    pub fn cpu_share(&self) -> f64 {
        self.cpu.as_secs_f64() / (self.secs() + self.run.settle.as_secs_f64())
    }

    /// How long after the flood's end the tracer was still writing records.
    pub fn lag(&self) -> Duration {
        self.run.settle.saturating_sub(SETTLE_QUIET)
    }

    /// No loss, and no backlog left at the end.
    pub fn sustained(&self) -> bool {
        self.lost == 0 && self.lag() <= LAG_OK
    }

    /// Records the tracer wrote per second from the flood's start until it had caught up:
    /// the offered rate when it kept up, its own capacity when it fell behind.
    pub fn processed_rps(&self) -> f64 {
        self.records as f64 / (self.secs() + self.lag().as_secs_f64())
    }
}

pub struct Ladder {
    pub records_per_packet: f64,
    pub steps: Vec<Step>,
}

impl Ladder {
    /// Steps by offered rate.
    pub fn sorted(&self) -> Vec<&Step> {
        let mut v: Vec<&Step> = self.steps.iter().collect();
        v.sort_by(|a, b| a.offered_rps().total_cmp(&b.offered_rps()));
        v
    }

    /// The highest sustained step below the first step that was not.
    pub fn max_sustained(&self) -> Option<&Step> {
        self.sorted()
            .into_iter()
            .take_while(|s| s.sustained())
            .last()
    }

    /// The lowest step that was not sustained (loss, or a backlog at the end).
    pub fn first_unsustained(&self) -> Option<&Step> {
        self.sorted().into_iter().find(|s| !s.sustained())
    }

    /// The highest step without loss below the first lossy one (its ring may have
    /// hidden a backlog).
    pub fn max_lossless(&self) -> Option<&Step> {
        self.sorted().into_iter().take_while(|s| s.lost == 0).last()
    }

    /// The lowest lossy step.
    pub fn first_lossy(&self) -> Option<&Step> {
        self.sorted().into_iter().find(|s| s.lost > 0)
    }
}

pub fn run(ctx: &Ctx) -> Result<Ladder> {
    let calibration = step(ctx, CALIBRATION_PPS, Duration::from_secs(1))?;
    if calibration.sent.packets == 0 || calibration.records == 0 {
        bail!(
            "the calibration step produced no records ({} packets sent): the tracer sees nothing of the flood",
            calibration.sent.packets
        );
    }
    let rpp = (calibration.records + calibration.lost) as f64 / calibration.sent.packets as f64;
    eprintln!("bench: pipeline: {rpp:.2} records per flood packet");
    let mut best = calibration.offered_rps();
    let mut ladder = Ladder {
        records_per_packet: rpp,
        steps: vec![calibration],
    };
    let (mut lossy_in_row, mut flat_in_row) = (0, 0);
    for &rps in LADDER {
        let s = step(ctx, (rps / rpp) as u64, ctx.window)?;
        lossy_in_row = if s.lost > 0 { lossy_in_row + 1 } else { 0 };
        flat_in_row = if s.offered_rps() > MORE * best {
            0
        } else {
            flat_in_row + 1
        };
        best = best.max(s.offered_rps());
        ladder.steps.push(s);
        if lossy_in_row >= STEPS_TO_STOP {
            break;
        }
        if flat_in_row >= STEPS_TO_STOP {
            eprintln!("bench: pipeline: the sender offers no more than {best:.0} records/s; the ladder ends here");
            break;
        }
    }
    for _ in 0..BISECTIONS {
        let (Some(lo), Some(hi)) = (ladder.max_sustained(), ladder.first_unsustained()) else {
            break;
        };
        if hi.pps <= lo.pps + 1000 {
            break;
        }
        let mid = (lo.pps + hi.pps) / 2;
        let s = step(ctx, mid, ctx.window)?;
        ladder.steps.push(s);
    }
    Ok(ladder)
}

/// One fresh tracer (every VIP packet a record), the flood paced at `pps` for `secs`,
/// then the tracer is let to catch up and is stopped.
fn step(ctx: &Ctx, pps: u64, secs: Duration) -> Result<Step> {
    let vip = VIP4.to_string();
    let tracer = ctx.start_tracer("tracer", &["--vip", &vip])?;
    let own = [tracer.observed_pid()];
    let foreign_before = foreign_tracers(PREFIX, &own);
    let sender = Sender::udp(&ctx.target(), Some(pps))?;
    std::thread::sleep(secs);
    let sent = sender.stop();
    let foreign = foreign_before.max(foreign_tracers(PREFIX, &own));
    let settle = tracer.settle(SETTLE_QUIET, SETTLE_MAX);
    let (hwm_kb, rss_kb) = tracer.memory_kb();
    let cpu = tracer.cpu_since_ready();
    let exited: Exited = tracer.interrupt_and_reap()?;
    if !exited.success {
        bail!(
            "the tracer failed at {pps} packets/s: {}",
            exited.stderr.join(" | ")
        );
    }
    let s = Step {
        pps,
        sent,
        records: exited.lines.records(),
        lost: exited.lines.lost,
        cpu,
        foreign,
        run: TracerRun {
            context: format!("pipeline, {pps} packets/s"),
            mode: Mode::Proxy,
            exited,
            hwm_kb,
            rss_kb,
            maps: Vec::new(),
            settle,
        },
    };
    eprintln!(
        "bench: pipeline {:>7} pps asked, {:>7.0} sent: offered {:>8.0} records/s, delivered {}, lost {} ({:.2} %), tracer CPU {:.0} % of a core, caught up {} ms after the flood",
        pps,
        s.sent.packets as f64 / s.secs(),
        s.offered_rps(),
        s.records,
        s.lost,
        s.loss_fraction() * 100.0,
        s.cpu_share() * 100.0,
        s.lag().as_millis()
    );
    Ok(s)
}
