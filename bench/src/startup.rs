//! Start-up on a whole path of many namespaces: four more labs beside the bench's own (five
//! Meridio paths, 20 namespaces that carry the VIPs), and a whole-path tracer started on
//! them again and again. What it measures is the time from start to the ready records (the
//! tracer attaches everywhere before it prints any) and the start-up's peak memory; no
//! traffic flows.

use std::time::Duration;

use anyhow::{Context, Result};
use lab::{Lab, LabSpec, VIP6};

use crate::{Ctx, Mode, TracerRun, PREFIX};

/// Labs added to the bench's own: 4 traced namespaces each (proxy, two frontends, target).
const EXTRA_LABS: usize = 4;
/// Starts measured, at least (the part is short, and one start is a noisy figure).
const MIN_STARTS: usize = 5;
/// How long a started tracer runs before SIGINT: long enough to sample its memory.
const HOLD: Duration = Duration::from_millis(300);

pub struct Startup {
    /// Ready records of each start: the namespaces traced.
    pub runs: Vec<TracerRun>,
}

impl Startup {
    /// The most namespaces one start traced (every start should trace them all).
    pub fn namespaces(&self) -> usize {
        self.runs
            .iter()
            .map(|r| r.exited.lines.ready.len())
            .max()
            .unwrap_or(0)
    }
}

pub fn run(ctx: &Ctx, reps: usize) -> Result<Startup> {
    let mut labs = Vec::new();
    let measured = (|| -> Result<Startup> {
        for i in 0..EXTRA_LABS {
            // Inside the bench's prefix, so the whole-path tracer's view holds them too.
            let prefix = format!("{PREFIX}{}-", i + 2);
            let spec = LabSpec {
                prefix: prefix.clone(),
                ..LabSpec::default()
            };
            labs.push(Lab::up(spec).with_context(|| format!("could not bring lab {prefix} up"))?);
        }
        let vip = VIP6.to_string();
        let mut runs = Vec::new();
        for _ in 0..reps.max(MIN_STARTS) {
            let o = ctx.start_whole_path("tracer (whole path, 5 labs)", &["--vip", &vip])?;
            std::thread::sleep(HOLD);
            let (hwm_kb, rss_kb) = o.memory_kb();
            let exited = o.interrupt_and_reap()?;
            runs.push(TracerRun {
                context: "start-up, whole path of 5 labs".into(),
                mode: Mode::ManyLabs,
                exited,
                hwm_kb,
                rss_kb,
                maps: Vec::new(),
                settle: Duration::ZERO,
            });
        }
        Ok(Startup { runs })
    })();
    for lab in labs {
        let _ = lab.down();
    }
    measured
}
