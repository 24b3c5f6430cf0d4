//! The JSON output rate workload, for `benches/json_rate.rs` (`cargo bench -p tracer --bench
//! json_rate`): how many records per second go from ring-buffer bytes to JSON lines on one
//! core, without the kernel: synthesized `tracer_common` records through [`events::decode`],
//! the flow table and the JSON renderer, into a sink behind the same 64 KiB buffer as stdout.
//!
//! The mix is what a proxy sees for a TCP flow: per round, every flow sends one packet
//! toward the VIP (2 hops: conduit port in, target port out) and one from it (target port
//! in, bridge0 in, its fib lookup, bridge0 out: the routed hop with its decision, conduit
//! port out): 7 records in, 8 JSON lines out (6 hops, 1 route, 1 decision).
use std::{
    collections::BTreeMap,
    io::{self, Write},
};

use tracer_common::{
    v4_mapped, FibRecord, PacketRecord, AF_INET, DIR_EGRESS, DIR_INGRESS, KIND_FIB, KIND_PACKET,
    PROTO_TCP,
};

use super::{json::Json, Render};
use crate::{
    correlate::flows::{
        fixture::{ip, proxy, BR, MAC_A, MAC_B, MAC_BR, TO_A, TO_B, TO_TARGET},
        FlowTable, SiteView,
    },
    discover::Role,
    events::{self, Event},
    netns::kernel_state::KernelState,
    records::Record,
};

const VIP: [u8; 4] = [20, 0, 0, 1];
const CLIENT: [u8; 4] = [169, 254, 100, 150];
const FLOWS: u16 = 1000;
const ROUNDS: u64 = 20;
/// Records per batch between flushes, like the session's batches from the ring readers.
const BATCH: usize = 1024;

fn bytes<T>(r: &T) -> Vec<u8> {
    // SAFETY: a view of a `#[repr(C)]` tracer_common record as the bytes the ring carries.
    unsafe { std::slice::from_raw_parts((r as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
        .to_vec()
}

/// The ring-buffer records of `ROUNDS` rounds over `FLOWS` flows.
fn records() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let ts = std::cell::Cell::new(1_000_000u64);
    for round in 0..ROUNDS {
        for f in 0..FLOWS {
            let port = 10_000 + f;
            let hash = 0x9e37_79b9u32.wrapping_mul(u32::from(f) + 1) | 1;
            let (mac, conduit) = if hash >> 1 < 1 << 30 {
                (MAC_A, TO_A)
            } else {
                (MAC_B, TO_B)
            };
            let flags = if round == 0 { 0x02 } else { 0x10 };
            let pkt = |ifindex, dir, to_vip: bool, eth_dst, tcp_flags| {
                ts.set(ts.get() + 1_000);
                let (src, sport, dst, dport) = if to_vip {
                    (CLIENT, port, VIP, 4000)
                } else {
                    (VIP, 4000, CLIENT, port)
                };
                bytes(&PacketRecord {
                    kind: KIND_PACKET,
                    ifindex,
                    ts_ns: ts.get(),
                    src: v4_mapped(src),
                    dst: v4_mapped(dst),
                    eth_src: MAC_BR,
                    eth_dst,
                    sport,
                    dport,
                    ip_len: 60,
                    vlan: 0,
                    mark: 0,
                    hash,
                    dir,
                    family: AF_INET,
                    proto: PROTO_TCP,
                    tcp_flags,
                    ..Default::default()
                })
            };
            out.push(pkt(conduit, DIR_INGRESS, true, MAC_BR, flags));
            out.push(pkt(TO_TARGET, DIR_EGRESS, true, MAC_BR, flags));
            out.push(pkt(TO_TARGET, DIR_INGRESS, false, MAC_BR, flags | 0x10));
            out.push(pkt(BR, DIR_INGRESS, false, MAC_BR, flags | 0x10));
            let mut dev = [0u8; 16];
            dev[..7].copy_from_slice(b"bridge0");
            out.push(bytes(&FibRecord {
                kind: KIND_FIB,
                table: 7,
                ts_ns: ts.get() + 1,
                err: 0,
                oif: BR as i32,
                iif: BR as i32,
                sport: 4000,
                dport: port,
                src: v4_mapped(VIP),
                dst: v4_mapped(CLIENT),
                gw: v4_mapped([172, 16, 0, 3]),
                dev,
                mark: 0,
                family: AF_INET,
                proto: PROTO_TCP,
                site: 1,
                ..Default::default()
            }));
            out.push(pkt(BR, DIR_EGRESS, false, mac, flags | 0x10));
            out.push(pkt(conduit, DIR_EGRESS, false, mac, flags | 0x10));
        }
    }
    out
}

/// Decodes, correlates and renders every record once; returns the records that decoded.
fn run(records: &[Vec<u8>], out: &mut dyn Render, state: &KernelState) -> u64 {
    let site = SiteView {
        index: 0,
        label: "proxy-a",
        role: Role::Proxy,
        state,
    };
    let mut flows = FlowTable::new([ip("20.0.0.1")]);
    let mut n = 0;
    for batch in records.chunks(BATCH) {
        for r in batch {
            match events::decode(r) {
                Ok((_, Event::Packet(p))) => {
                    if let Some(h) = flows.on_packet(p, &site) {
                        out.hop(&h);
                    }
                }
                Ok((_, Event::Fib(f))) => {
                    if let Some(r) = flows.on_fib(f, &site) {
                        out.route(&r);
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("a synthesized record does not decode: {e}"),
            }
            n += 1;
        }
        out.flush();
    }
    n
}

/// Counts what it is given and keeps nothing.
struct CountingSink(u64);

impl Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Renders nothing: what decoding and the flow table cost alone.
struct Discard;

impl Render for Discard {
    fn flush(&mut self) {}
    fn ready(&mut self, _: &crate::bpf::Ready) {}
    fn hop(&mut self, _: &crate::correlate::flows::Hop) {}
    fn route(&mut self, _: &crate::correlate::flows::RouteHop) {}
    fn lost(&mut self, _: u64, _: u64) {}
    fn evicted(&mut self, _: u64) {}
    fn dropped(&mut self, _: &crate::correlate::flows::DropHop) {}
    fn change(&mut self, _: u64, _: &str, _: &crate::netns::changes::Change) {}
    fn summary(&mut self, _: &crate::correlate::flows::FlowSummary, _: &str) {}
    fn distribution(&mut self, _: &crate::correlate::flows::Distribution) {}
}

/// The synthesized records and the proxy they are correlated against.
pub struct Workload {
    records: Vec<Vec<u8>>,
    state: KernelState,
}

impl Default for Workload {
    fn default() -> Self {
        Workload::new()
    }
}

impl Workload {
    /// Builds the records once and checks what one pass writes: every line JSON, the
    /// expected mix of types.
    pub fn new() -> Workload {
        let w = Workload {
            records: records(),
            state: proxy(),
        };
        let mut j = Json::new(Vec::new());
        let decoded = run(&w.records, &mut j, &w.state);
        let text = String::from_utf8(j.into_inner()).unwrap();
        let mut types = BTreeMap::<&str, u64>::new();
        for line in text.lines() {
            let l: crate::records::Line = serde_json::from_str(line).expect("a JSON line");
            let kind = match l.record {
                Record::Hop(_) => "hop",
                Record::Route(_) => "route",
                Record::Decision(_) => "decision",
                other => panic!("not in the mix: {other:?}"),
            };
            *types.entry(kind).or_default() += 1;
        }
        assert_eq!(decoded, w.records.len() as u64);
        assert_eq!(types.get("decision"), Some(&(u64::from(FLOWS) * ROUNDS)));
        w
    }

    /// Records one pass decodes ({FLOWS} flows x {ROUNDS} rounds x 7).
    pub fn records(&self) -> usize {
        self.records.len()
    }

    /// One pass decoded, correlated and written as JSON lines behind the renderer's own
    /// 64 KiB buffer, a new flow table each pass; `stamped`: with `node`, `wall_ns` and
    /// `time` on every record, as the tracer writes them. Returns the bytes written.
    pub fn json(&self, stamped: bool) -> u64 {
        let sink = io::BufWriter::with_capacity(1 << 16, CountingSink(0));
        let mut j = if stamped {
            let stamp = crate::output::stamp::Stamp::fixed("worker-a", 1_796_000_000_000_000_000);
            Json::stamped(sink, stamp)
        } else {
            Json::new(sink)
        };
        run(&self.records, &mut j, &self.state);
        j.into_inner().into_inner().map_err(|_| ()).unwrap().0
    }

    /// One pass decoded and correlated, not rendered: what the flow table costs alone.
    pub fn bare(&self) -> u64 {
        run(&self.records, &mut Discard, &self.state)
    }
}
