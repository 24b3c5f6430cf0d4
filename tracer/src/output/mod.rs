//! Output: the live text view ([`text`]), JSON lines ([`json`]) and the pcapng capture
//! ([`pcapng`]), with what every record carries ([`stamp`]: node and wall-clock time) and
//! kernel addresses named ([`symbols`]). Renderers only render; every fact they print was
//! worked out by the flow table or the loader.
use crate::{
    bpf::Ready,
    correlate::flows::{Distribution, DropHop, FlowSummary, Hop, Overflow, RouteHop},
    netns::changes::Change,
};

pub trait Render {
    /// Writes out what is buffered.
    fn flush(&mut self);
    fn ready(&mut self, r: &Ready);
    fn hop(&mut self, h: &Hop);
    fn route(&mut self, r: &RouteHop);
    fn lost(&mut self, count: u64, total: u64);
    /// Per-hop counters the kernel's LRU map evicted (it was full): those hops' counts
    /// restarted, so the flows' exact counts are short by what they had.
    fn evicted(&mut self, count: u64);
    /// What every bound left out, at the end of a run where any did; by default the
    /// per-hop counters alone, as [`Render::evicted`].
    fn overflowed(&mut self, o: &Overflow) {
        if o.hop_counters > 0 {
            self.evicted(o.hop_counters);
        }
    }
    fn dropped(&mut self, d: &DropHop);
    fn change(&mut self, ts_ns: u64, netns: &str, c: &Change);
    /// `netns` names the proxy the routing verdict is about ("" when none saw the flow).
    fn summary(&mut self, s: &FlowSummary, netns: &str);
    fn distribution(&mut self, d: &Distribution);
}

/// `multi`: several namespaces are traced, so text lines name theirs. JSON records carry
/// `stamp` (node, wall clock).
pub fn renderer(json: bool, multi: bool, stamp: crate::output::stamp::Stamp) -> Box<dyn Render> {
    if json {
        Box::new(json::Json::stamped(buffered(), stamp))
    } else {
        Box::new(text::Text::new(multi, buffered()))
    }
}

/// JSON lines into `out` (the live picture of `--svg` reads them back).
pub fn json_renderer<W: std::io::Write + 'static>(
    out: W,
    stamp: crate::output::stamp::Stamp,
) -> Box<dyn Render> {
    Box::new(json::Json::stamped(out, stamp))
}

/// stdout behind one buffer: a write per record costs more than producing it, so output is
/// written in batches, at every [`Render::flush`] (the session flushes after each batch of
/// events it processed, so the live view stays live).
type Out = std::io::BufWriter<std::io::Stdout>;

fn buffered() -> Out {
    std::io::BufWriter::with_capacity(1 << 16, std::io::stdout())
}

/// `writeln!` whose error is ignored on purpose: a closed stdout (the reader went away)
/// must not stop the tracer from cleaning up.
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {{
        let _ = writeln!($out, $($arg)*);
    }};
}

mod json;
pub mod pcapng;
#[doc(hidden)]
pub mod rate;
pub mod stamp;
pub mod symbols;
mod text;

pub(crate) use text::overflow_warnings;
