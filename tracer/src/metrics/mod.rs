//! `--metrics`: what the tracer counts, as OpenMetrics for Prometheus (and `/healthz` for
//! probes, see [`serve`]). Every label is a piece of the Meridio topology (VIP, pod, role,
//! interface, direction, next-hop, drop reason, hook): their number is bounded by the pods
//! and interfaces on the node, never by the clients, so a flood cannot grow the series. No
//! label carries a client address or port.
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::{
    correlate::{flows::Overflow, totals::Total},
    events::proto_name,
};

mod serve;

pub use serve::serve;

/// One VIP's packets of one protocol on one interface of one pod, in one direction, toward
/// one next-hop ("" off the routed hop).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HopLabels {
    pub vip: String,
    pub pod: String,
    pub role: String,
    pub interface: String,
    pub direction: String,
    pub nexthop: String,
    /// `tcp`, `udp`, `icmp`, `icmpv6` or `ip`: without it an IPv6 VIP's neighbour
    /// discovery would share the TCP series.
    pub proto: String,
}

impl HopLabels {
    fn of(t: &Total) -> HopLabels {
        HopLabels {
            vip: t.vip.to_string(),
            pod: t.pod.clone(),
            role: t.role.as_str().to_string(),
            interface: t.iface.clone(),
            direction: t.dir.as_str().to_string(),
            nexthop: match (t.routed, t.nexthop) {
                (true, Some(ip)) => ip.to_string(),
                (true, None) => "unknown".into(),
                (false, _) => String::new(),
            },
            proto: proto_name(t.proto).to_string(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    pub vip: String,
    pub pod: String,
    pub interface: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VipLabels {
    pub vip: String,
}

/// One of the flow table's per-flow bounds (docs/limits.md).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BoundLabels {
    /// `hash_samples`, `datagrams`, `queued` or `lb_changes`.
    pub bound: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookLabels {
    pub pod: String,
    pub hook: String,
    /// `attached` or `refused`.
    pub state: String,
}

/// The tracer's metrics; clones share the same series.
#[derive(Clone, Default)]
pub struct Metrics {
    packets: Family<HopLabels, Counter>,
    bytes: Family<HopLabels, Counter>,
    flows: Family<HopLabels, Counter>,
    nexthop_changes: Family<VipLabels, Counter>,
    drops: Family<DropLabels, Counter>,
    records_lost: Counter,
    counters_evicted: Counter,
    flows_evicted: Counter,
    rsts_consumed: Counter,
    not_for_host: Counter,
    totals_full: Counter,
    overflows: Family<BoundLabels, Counter>,
    hooks: Family<HookLabels, Gauge>,
    /// Seconds since the epoch of the event loop's latest turn, for `/healthz`.
    pub(crate) alive: Arc<AtomicU64>,
}

/// Sets a counter to a cumulative value read elsewhere (the kernel's maps).
fn set(c: &Counter, v: u64) {
    c.inner().store(v, Ordering::Relaxed);
}

impl Metrics {
    /// A registry that serves these metrics.
    pub fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix("meridio_tracer");
        r.register(
            "packets",
            "VIP packets per pod, interface, direction and next-hop, counted in the kernel",
            self.packets.clone(),
        );
        r.register("bytes", "IP bytes of those packets", self.bytes.clone());
        r.register(
            "flows",
            "VIP flows per pod, interface, direction and next-hop (TCP SYNs, else each flow's first packet)",
            self.flows.clone(),
        );
        r.register(
            "nexthop_changes",
            "Next-hop changes within a flow, per VIP, of the flows summarised",
            self.nexthop_changes.clone(),
        );
        r.register(
            "drops",
            "Packets of VIP flows the kernel dropped, per pod, interface and reason",
            self.drops.clone(),
        );
        r.register(
            "records_lost",
            "Records the eBPF programs could not write (ring buffer full); counts stay exact",
            self.records_lost.clone(),
        );
        r.register(
            "counters_evicted",
            "Per-hop counter entries the kernel evicted (map full): those flows' own counts are not exact",
            self.counters_evicted.clone(),
        );
        r.register(
            "flows_evicted",
            "Flows summarised early because the flow table was full (--max-flows)",
            self.flows_evicted.clone(),
        );
        r.register(
            "rsts_consumed",
            "TCP RSTs a traced stack consumed (freed with no drop reason), not reported as drops",
            self.rsts_consumed.clone(),
        );
        r.register(
            "not_for_host",
            "Packets of VIP flows a traced stack discarded as another host's (OTHERHOST: copies a bridge flooded), not reported as drops",
            self.not_for_host.clone(),
        );
        r.register(
            "totals_full",
            "Packets the per-VIP totals map had no room for",
            self.totals_full.clone(),
        );
        r.register(
            "overflows",
            "What a flow's own bounds left out, per bound: hash samples dropped, fragmented datagrams not followed, load balancer queue entries forgotten, load balancer changes not kept",
            self.overflows.clone(),
        );
        r.register(
            "hook",
            "Hooks attached and refused, per pod (1 each)",
            self.hooks.clone(),
        );
        r
    }

    /// The kernel's per-VIP totals, as last read (cumulative): all of them, every time.
    pub fn totals(&self, totals: &[Total]) {
        // Kernel keys that share a label set (next-hop MACs the neighbour table does not
        // know, all "unknown") add up; set one by one, the last would hide the others.
        let mut sums: HashMap<HopLabels, [u64; 3]> = HashMap::new();
        for t in totals {
            let s = sums.entry(HopLabels::of(t)).or_default();
            s[0] += t.packets;
            s[1] += t.bytes;
            s[2] += t.flows;
        }
        for (l, [packets, bytes, flows]) in sums {
            set(&self.packets.get_or_create(&l), packets);
            set(&self.bytes.get_or_create(&l), bytes);
            set(&self.flows.get_or_create(&l), flows);
        }
    }

    /// The node-wide counters, as last read (cumulative): records lost, RSTs consumed,
    /// copies discarded as another host's, and every bound's overflow.
    pub fn node(&self, lost: u64, rsts: u64, not_for_host: u64, o: &Overflow) {
        set(&self.records_lost, lost);
        set(&self.rsts_consumed, rsts);
        set(&self.not_for_host, not_for_host);
        set(&self.counters_evicted, o.hop_counters);
        set(&self.flows_evicted, o.flows);
        set(&self.totals_full, o.totals_full);
        for (bound, n) in [
            ("hash_samples", o.hash_samples),
            ("datagrams", o.datagrams),
            ("queued", o.queued),
            ("lb_changes", o.lb_changes),
        ] {
            set(&self.overflows.get_or_create(&BoundLabels { bound }), n);
        }
    }

    pub fn nexthop_changes(&self, vip: std::net::IpAddr, changes: u64) {
        if changes > 0 {
            self.nexthop_changes
                .get_or_create(&VipLabels {
                    vip: vip.to_string(),
                })
                .inc_by(changes);
        }
    }

    pub fn dropped(&self, vip: std::net::IpAddr, pod: &str, interface: &str, reason: &str) {
        self.drops
            .get_or_create(&DropLabels {
                vip: vip.to_string(),
                pod: pod.to_string(),
                interface: interface.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// A pod's hooks as its ready record lists them.
    pub fn hooks(&self, pod: &str, attached: &[String], refused: &[(String, String)]) {
        let one = |hook: &str, state: &str| {
            self.hooks
                .get_or_create(&HookLabels {
                    pod: pod.to_string(),
                    hook: hook.to_string(),
                    state: state.to_string(),
                })
                .set(1);
        };
        for h in attached {
            one(h, "attached");
        }
        for (h, _) in refused {
            one(h, "refused");
        }
    }

    /// The event loop took a turn now.
    pub fn alive(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.alive.store(now, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{discover::Role, events::Dir};

    #[test]
    fn totals_become_series_labelled_by_topology_only() {
        let m = Metrics::default();
        let t = Total {
            vip: "20.0.0.1".parse().unwrap(),
            pod: "proxy-a".into(),
            role: Role::Proxy,
            iface: "bridge0".into(),
            dir: Dir::Egress,
            routed: true,
            nexthop: Some("169.254.100.1".parse().unwrap()),
            proto: 6,
            packets: 42,
            bytes: 4200,
            flows: 3,
        };
        m.totals(std::slice::from_ref(&t));
        m.totals(&[Total { packets: 50, ..t }]);
        m.dropped(
            "20.0.0.1".parse().unwrap(),
            "target-a",
            "eth0",
            "NETFILTER_DROP",
        );
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &m.registry()).unwrap();
        assert!(
            text.contains(r#"meridio_tracer_packets_total{vip="20.0.0.1",pod="proxy-a",role="proxy",interface="bridge0",direction="egress",nexthop="169.254.100.1",proto="tcp"} 50"#),
            "{text}"
        );
        assert!(text.contains("meridio_tracer_drops_total{"), "{text}");
        assert!(text.ends_with("# EOF\n"), "OpenMetrics: {text}");
    }

    #[test]
    fn every_bound_overflow_is_a_counter() {
        let m = Metrics::default();
        let o = Overflow {
            hop_counters: 1,
            totals_full: 2,
            flows: 3,
            hash_samples: 4,
            datagrams: 5,
            queued: 6,
            lb_changes: 7,
        };
        m.node(8, 9, 10, &o);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &m.registry()).unwrap();
        for line in [
            "meridio_tracer_counters_evicted_total 1",
            "meridio_tracer_totals_full_total 2",
            "meridio_tracer_flows_evicted_total 3",
            r#"meridio_tracer_overflows_total{bound="hash_samples"} 4"#,
            r#"meridio_tracer_overflows_total{bound="datagrams"} 5"#,
            r#"meridio_tracer_overflows_total{bound="queued"} 6"#,
            r#"meridio_tracer_overflows_total{bound="lb_changes"} 7"#,
            "meridio_tracer_records_lost_total 8",
            "meridio_tracer_rsts_consumed_total 9",
            "meridio_tracer_not_for_host_total 10",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
    }

    /// An IPv6 VIP's TCP and its neighbour discovery on the same hop are two series, and
    /// two next-hop MACs the neighbour table does not know add up in one: no count hides
    /// another (each used to overwrite the series the other had set).
    #[test]
    fn totals_sharing_labels_add_up_and_protocols_stay_apart() {
        let m = Metrics::default();
        let tcp = Total {
            vip: "2000::1".parse().unwrap(),
            pod: "target-a-2".into(),
            role: Role::Target,
            iface: "nsm-0".into(),
            dir: Dir::Ingress,
            routed: false,
            nexthop: None,
            proto: 6,
            packets: 170,
            bytes: 13_000,
            flows: 34,
        };
        let icmpv6 = Total {
            proto: 58,
            packets: 1,
            bytes: 72,
            flows: 1,
            ..tcp.clone()
        };
        let unknown = Total {
            pod: "proxy-a".into(),
            role: Role::Proxy,
            iface: "bridge0".into(),
            dir: Dir::Egress,
            routed: true,
            ..tcp.clone()
        };
        m.totals(&[
            tcp,
            icmpv6,
            unknown.clone(),
            Total {
                packets: 30,
                ..unknown
            },
        ]);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &m.registry()).unwrap();
        let sample = |name: &str, labels: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}{{{labels}}} ")))
                .unwrap_or_else(|| panic!("no {name}{{{labels}}}: {text}"))
                .to_string()
        };
        let hop = r#"vip="2000::1",pod="target-a-2",role="target",interface="nsm-0",direction="ingress",nexthop="""#;
        assert_eq!(
            sample(
                "meridio_tracer_flows_total",
                &format!(r#"{hop},proto="tcp""#)
            ),
            "34"
        );
        assert_eq!(
            sample(
                "meridio_tracer_flows_total",
                &format!(r#"{hop},proto="icmpv6""#)
            ),
            "1"
        );
        let routed = r#"vip="2000::1",pod="proxy-a",role="proxy",interface="bridge0",direction="egress",nexthop="unknown",proto="tcp""#;
        assert_eq!(sample("meridio_tracer_packets_total", routed), "200");
    }
}
