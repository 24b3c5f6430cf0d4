//! `tracer merge`: the JSON lines of tracers on several nodes (files, or `kubectl logs
//! --prefix` output) put together into one timeline per flow, joined by the flow's 5-tuple
//! and ordered by wall clock (`wall_ns`: each node's kernel clock means nothing on another
//! node). With `--follow` the inputs are live streams and records wait a bounded hold-back
//! window for slower streams before they are printed. Kubernetes logs or files carry the
//! streams; this reads them, nothing more.
use std::{collections::HashMap, io::Write, time::Duration};

use anyhow::{bail, Context, Result};
use tracer_records::Record;

pub struct Options {
    pub inputs: Vec<String>,
    pub json: bool,
    pub follow: bool,
    pub hold: Duration,
}

/// What the records a batch merge holds may weigh at most ([`Rec::weight`]): it sorts
/// them all in memory, so beyond this it stops and says so.
pub(super) const MAX_BATCH_BYTES: usize = 1 << 30;

pub fn run(o: Options) -> Result<()> {
    let inputs = if o.inputs.is_empty() {
        vec!["-".to_string()]
    } else {
        o.inputs.clone()
    };
    if inputs.iter().filter(|i| *i == "-").count() > 1 {
        bail!("standard input (-) can be given only once");
    }
    let mut sources = Vec::new();
    for i in &inputs {
        sources.push(Source::open(i)?);
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if o.follow {
        follow(sources, &o, &mut out)
    } else {
        let recs = read_all(sources, MAX_BATCH_BYTES)?;
        if recs.is_empty() {
            bail!(
                "no tracer JSON records in {} (run the tracers with --json)",
                inputs.join(", ")
            );
        }
        let _ = write_batch(&recs, o.json, &mut out);
        Ok(())
    }
}

/// Every record of the inputs, for a batch merge; an error beyond `max_weight` of them
/// ([`Rec::weight`]).
pub(crate) fn read_all(sources: Vec<Source>, max_weight: usize) -> Result<Vec<Rec>> {
    let mut recs = Vec::new();
    let (mut seq, mut weight) = (0, 0);
    for mut s in sources {
        let mut r = Reader::new(&s.name);
        loop {
            let next = match s
                .lines
                .next()
                .with_context(|| format!("reading {}", s.name))?
            {
                Next::Pending => match s.lines.finish() {
                    Some(last) => last,
                    None => break,
                },
                next => next,
            };
            let Next::Line(line) = &next else {
                r.skip(&next);
                continue;
            };
            seq += 1;
            if let Some(rec) = r.parse(line, seq) {
                weight += rec.weight();
                if weight > max_weight {
                    bail!(
                        "the inputs hold more records than a batch merge keeps in memory ({} MiB): merge a shorter time span, e.g. fewer or shorter files",
                        max_weight >> 20
                    );
                }
                recs.push(rec);
            }
        }
        r.report();
    }
    Ok(recs)
}

/// The timelines of `recs` (all of them read), flows in order of their first record.
fn timelines(recs: &[Rec]) -> (Vec<&Rec>, Vec<(FlowKey, Vec<&Rec>)>) {
    let mut node_level = Vec::new();
    let mut flows: HashMap<FlowKey, Vec<&Rec>> = HashMap::new();
    for r in recs {
        match FlowKey::of(r) {
            Some(k) => flows.entry(k).or_default().push(r),
            None => node_level.push(r),
        }
    }
    let mut flows: Vec<(FlowKey, Vec<&Rec>)> = flows.into_iter().collect();
    for (_, t) in &mut flows {
        // Timed records by wall clock; summaries last, in the order read.
        t.sort_by_key(|r| (!r.timed, if r.timed { r.key } else { 0 }, r.seq));
    }
    flows.sort_by_key(|(k, t)| {
        (
            t.iter().find(|r| r.timed).map_or(i128::MAX, |r| r.key),
            k.clone(),
        )
    });
    node_level.sort_by_key(|r| (r.key, r.seq));
    (node_level, flows)
}

pub(crate) fn write_batch(recs: &[Rec], json: bool, out: &mut impl Write) -> std::io::Result<()> {
    let (node_level, flows) = timelines(recs);
    if json {
        for r in &node_level {
            writeln!(out, "{}", r.text)?;
        }
        for (i, (_, t)) in flows.iter().enumerate() {
            for r in t {
                writeln!(out, "{}", with_timeline(r, i + 1, false))?;
            }
        }
        return out.flush();
    }
    let change = |r: &&&Rec| matches!(r.record(), Some(Record::Change(_)));
    for r in node_level.iter().filter(|r| !change(r)) {
        if let Some(l) = node_line(r) {
            put(out, &l)?;
        }
    }
    for (i, (k, t)) in flows.iter().enumerate() {
        let mut nodes: Vec<&str> = Vec::new();
        for r in t {
            if !nodes.contains(&r.node.as_str()) {
                nodes.push(&r.node);
            }
        }
        put(
            out,
            &format!(
                "timeline {} {}  (nodes: {})",
                i + 1,
                k.text(),
                nodes.join(", ")
            ),
        )?;
        let start = t.iter().find(|r| r.timed).map_or(0, |r| r.key);
        for r in t.iter().filter(|r| !unmatched_lookup(r)) {
            if let Some(l) = flow_line(i + 1, r, start) {
                put(out, &l)?;
            }
        }
    }
    for r in node_level.iter().filter(change) {
        if let Some(l) = node_line(r) {
            put(out, &l)?;
        }
    }
    out.flush()
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod props;

#[cfg(test)]
mod input_tests;

mod escape;
pub(crate) mod follow;
pub(crate) mod input;
mod lines;
pub(crate) mod read;

use follow::follow;
use input::{Next, Source};
use lines::*;
use read::*;
