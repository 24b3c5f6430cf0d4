//! The reorder window: events wait here until they are older than the window, then leave
//! in kernel time order.
use std::collections::VecDeque;

use crate::events::{DecodeError, Event};

/// Records of different CPUs reach the one ring slightly out of kernel time order (a
/// record's place in the ring and its time are taken at different moments); holding them
/// this long lets the timeline come out in kernel time order.
pub const WINDOW_NS: u64 = 100_000_000;

/// An event waiting out the reorder window.
pub struct Waiting {
    pub ts: u64,
    pub site: usize,
    pub ev: Result<Event, DecodeError>,
}

/// Waiting events, kept in kernel time order (ring order among equal times).
#[derive(Default)]
pub struct Reorder {
    waiting: VecDeque<Waiting>,
}

impl Reorder {
    pub fn push(&mut self, site: usize, ev: Result<Event, DecodeError>) {
        let ts = event_ts(&ev);
        // The ring is nearly in time order: an event goes at the back, or a few places
        // before it. Kept sorted as it fills, the queue needs no sort (and no sort's scratch
        // copy of itself) when events leave.
        let at = match self.waiting.back() {
            Some(last) if last.ts > ts => self.waiting.partition_point(|w| w.ts <= ts),
            _ => self.waiting.len(),
        };
        self.waiting.insert(at, Waiting { ts, site, ev });
    }

    /// The oldest event, if it is no newer than `cutoff_ns`.
    pub fn pop_until(&mut self, cutoff_ns: u64) -> Option<Waiting> {
        if self.waiting.front()?.ts <= cutoff_ns {
            self.waiting.pop_front()
        } else {
            None
        }
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

/// A record that does not decode has no time: it leaves with the next flush.
fn event_ts(ev: &Result<Event, DecodeError>) -> u64 {
    match ev {
        Ok(Event::Packet(p)) => p.ts_ns,
        Ok(Event::Fib(f)) => f.ts_ns,
        Ok(Event::Hash(h)) => h.ts_ns,
        Ok(Event::Drop(d)) => d.ts_ns,
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::HashSample;

    /// A hash sample whose `hash` says which record of the ring it was.
    fn sample(ts_ns: u64, nth: u32) -> Result<Event, DecodeError> {
        Ok(Event::Hash(HashSample {
            ts_ns,
            hash: nth,
            src: [10, 0, 0, 1].into(),
            dst: [20, 0, 0, 1].into(),
            sport: 1,
            dport: 2,
            proto: 17,
            hook: "test",
        }))
    }

    #[test]
    fn events_leave_in_time_order_then_ring_order_and_only_past_the_cutoff() {
        let mut q = Reorder::default();
        for (nth, ts) in [(0, 10), (1, 30), (2, 20), (3, 30), (4, 5), (5, 40)] {
            q.push(0, sample(ts, nth));
        }
        q.push(1, Err(DecodeError::UnknownKind(99)));
        let mut out = Vec::new();
        while let Some(w) = q.pop_until(30) {
            out.push(match w.ev {
                Ok(Event::Hash(h)) => (w.ts, Some(h.hash)),
                _ => (w.ts, None),
            });
        }
        assert_eq!(
            out,
            [
                (0, None),
                (5, Some(4)),
                (10, Some(0)),
                (20, Some(2)),
                (30, Some(1)),
                (30, Some(3))
            ]
        );
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop_until(u64::MAX).map(|w| w.ts), Some(40));
        assert!(q.is_empty());
    }
}
