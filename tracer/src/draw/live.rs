//! `tracer --port P --svg FILE`: the picture of the followed flow, rewritten as it goes on.
//! A renderer beside the view: every record also goes to a JSON renderer into memory, read
//! back at each flush as the typed records `tracer draw` reads from a file.
use std::{
    io::Write,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use super::records::Line;
use crate::{
    bpf::Ready,
    correlate::flows::{Distribution, DropHop, FlowSummary, Hop, RouteHop},
    netns::changes::Change,
    output::{self, stamp::Stamp, Render},
};

use super::{flow, picture, write_file};

/// What the JSON renderer wrote since the last flush.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Live {
    view: Box<dyn Render>,
    json: Box<dyn Render>,
    written: Shared,
    /// The flow-level records so far (--port keeps them to the followed flow's).
    lines: Vec<Line>,
    path: PathBuf,
}

/// `view`, and with `svg` the live picture beside it.
pub fn renderer(view: Box<dyn Render>, svg: Option<PathBuf>, stamp: Stamp) -> Box<dyn Render> {
    let Some(path) = svg else {
        return view;
    };
    let written = Shared::default();
    Box::new(Live {
        view,
        json: output::json_renderer(written.clone(), stamp),
        written,
        lines: Vec::new(),
        path,
    })
}

impl Live {
    /// Reads back what was written and redraws the latest flow when there was any.
    fn redraw(&mut self) {
        let bytes = std::mem::take(&mut *self.written.0.lock().unwrap_or_else(|e| e.into_inner()));
        let before = self.lines.len();
        for line in bytes.split(|b| *b == b'\n') {
            if let Ok(l) = serde_json::from_slice::<Line>(line) {
                if flow::key_of(&l.record).is_some() {
                    self.lines.push(l);
                }
            }
        }
        if self.lines.len() == before {
            return;
        }
        // The flow going on: the one of the newest record.
        let Some(key) = self
            .lines
            .iter()
            .rev()
            .find_map(|l| flow::key_of(&l.record))
        else {
            return;
        };
        let svg = picture::flow(&flow::view(&self.lines, &key)).to_string();
        if let Err(e) = write_file(&self.path, &svg) {
            log::warn!("--svg: {e:#}");
        }
    }
}

impl Render for Live {
    fn flush(&mut self) {
        self.view.flush();
        self.json.flush();
        self.redraw();
    }
    fn ready(&mut self, r: &Ready) {
        self.view.ready(r);
        self.json.ready(r);
    }
    fn hop(&mut self, h: &Hop) {
        self.view.hop(h);
        self.json.hop(h);
    }
    fn route(&mut self, r: &RouteHop) {
        self.view.route(r);
        self.json.route(r);
    }
    fn lost(&mut self, count: u64, total: u64) {
        self.view.lost(count, total);
        self.json.lost(count, total);
    }
    fn evicted(&mut self, count: u64) {
        self.view.evicted(count);
        self.json.evicted(count);
    }
    fn dropped(&mut self, d: &DropHop) {
        self.view.dropped(d);
        self.json.dropped(d);
    }
    fn change(&mut self, ts_ns: u64, netns: &str, c: &Change) {
        self.view.change(ts_ns, netns, c);
        self.json.change(ts_ns, netns, c);
    }
    fn summary(&mut self, s: &FlowSummary, netns: &str) {
        self.view.summary(s, netns);
        self.json.summary(s, netns);
    }
    fn distribution(&mut self, d: &Distribution) {
        self.view.distribution(d);
        self.json.distribution(d);
    }
}
