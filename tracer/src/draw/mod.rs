//! `tracer draw`: the picture of one flow's journey across the pods (SVG), or of how a
//! VIP's flows spread over next-hops and targets (`--distribution`), from the JSON lines of
//! one tracer or of `tracer merge` (several nodes). Layout comes from the data: a lane per
//! pod in path order, a port per interface the records name, a row per event, a band per
//! node; the `svg` crate writes it. Nothing here needs root or a kernel.
mod distribution;
mod flow;
mod live;
mod notes;
mod picture;
mod records;
mod style;
#[cfg(test)]
mod tests;

use std::{
    fs::File,
    io::{BufRead, BufReader, Write},
    path::PathBuf,
};

use anyhow::{bail, Context, Result};

use records::Line;

pub use flow::Pick;
pub use live::renderer as live;

pub struct Options {
    /// A file, or `-` for standard input.
    pub input: String,
    pub pick: Pick,
    pub distribution: bool,
    /// Default: standard output.
    pub output: Option<PathBuf>,
}

pub fn run(o: Options) -> Result<()> {
    let reader: Box<dyn BufRead> = if o.input == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        Box::new(BufReader::new(
            File::open(&o.input).with_context(|| format!("cannot read {}", o.input))?,
        ))
    };
    let (lines, skipped) = read(reader).with_context(|| format!("reading {}", o.input))?;
    if lines.is_empty() {
        bail!(
            "no tracer JSON records in {} (run the tracer with --json, or `tracer merge --json` for several nodes)",
            o.input
        );
    }
    if skipped > 0 {
        eprintln!(
            "tracer draw: {}: skipped {skipped} line(s) that are not tracer JSON records",
            o.input
        );
    }
    let doc = if o.distribution {
        distribution::picture(&lines)?
    } else {
        let (key, note) = flow::choose(&lines, o.pick)?;
        if let Some(note) = note {
            eprintln!("tracer draw: {note}");
        }
        picture::flow(&flow::view(&lines, &key))
    };
    match &o.output {
        Some(path) => write_file(path, &doc.to_string()),
        None => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{doc}")?;
            Ok(())
        }
    }
}

/// The tracer's JSON lines as typed records; lines that are not one (a pod's log holds the
/// tracer's warnings too) are counted.
fn read(input: impl BufRead) -> Result<(Vec<Line>, u64)> {
    let mut lines = Vec::new();
    let mut skipped = 0;
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Line>(&line) {
            Ok(l) => lines.push(l),
            Err(_) => skipped += 1,
        }
    }
    Ok((lines, skipped))
}

/// Writes `svg` whole to a temporary file beside `path`, then renames it over `path`, so a
/// viewer reloading the picture never reads half of one.
pub fn write_file(path: &std::path::Path, svg: &str) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, format!("{svg}\n"))
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}
