//! The picture from recorded lines of the lab (`cargo xtask demo`'s: one node with nfqlb,
//! two connections; and `cargo xtask demo --nodes 2`'s two tracers merged): what the
//! records say is in the SVG, once, and nothing outside its view box.
use super::records::{Line, Record};
use super::{flow, picture, read};

const ONE_NODE: &str = include_str!("testdata/one-node.jsonl");
const TWO_NODES: &str = include_str!("testdata/two-nodes.jsonl");
/// The distribution and flow summaries of three connections through nfqlb.
const DISTRIBUTION: &str = include_str!("testdata/distribution.jsonl");

fn lines(text: &str) -> Vec<Line> {
    let (lines, skipped) = read(text.as_bytes()).unwrap();
    assert_eq!(skipped, 0);
    lines
}

fn count(svg: &str, needle: &str) -> usize {
    svg.matches(needle).count()
}

#[test]
fn one_box_per_pod_one_port_per_interface_one_arrow_per_hop() {
    let lines = lines(ONE_NODE);
    let (key, note) = flow::choose(&lines, flow::Pick::First).unwrap();
    assert!(note.is_some(), "two flows in the file: the choice is said");
    let v = flow::view(&lines, &key);
    let svg = picture::flow(&v).to_string();
    let hops: Vec<_> = lines
        .iter()
        .filter_map(|l| match &l.record {
            Record::Hop(h) if flow::key_of(&l.record).as_ref() == Some(&key) => Some(h),
            _ => None,
        })
        .collect();
    assert!(!hops.is_empty());
    assert_eq!(count(&svg, "<g class=\"hop "), hops.len());
    let mut pods: Vec<&str> = hops.iter().map(|h| &*h.netns).collect();
    pods.sort_unstable();
    pods.dedup();
    assert_eq!(count(&svg, "<g class=\"pod\""), pods.len(), "{pods:?}");
    for h in &hops {
        // The svg crate writes a text element's content on a line of its own.
        assert!(
            svg.contains(&format!("\n{}\n</text>", h.ifname)),
            "{}",
            h.ifname
        );
        assert!(
            svg.contains(&format!("\n{}\n</text>", h.netns)),
            "{}",
            h.netns
        );
    }
    let ports: usize = v.pods.iter().map(|p| p.ports.len()).sum();
    assert_eq!(count(&svg, "<g class=\"port\""), ports);
    // The proxy's bridge is inside its box, the conduits the requests came in by and the
    // replies left by on the gateway side, its port toward the target on the other.
    let summary = &v.summaries[0];
    let proxy = v.pods.iter().find(|p| p.role == "proxy").unwrap();
    let side = |n: &str| proxy.ports.iter().find(|p| p.ifname == n).unwrap().side;
    assert_eq!(side("bridge0"), flow::Side::Inside);
    assert_eq!(
        side(summary.ingress.ifname.as_deref().unwrap()),
        flow::Side::Gateway
    );
    assert_eq!(
        side(summary.egress.ifname.as_deref().unwrap()),
        flow::Side::Gateway
    );
    let to_target = summary.path.proxy_to_target.as_ref().unwrap();
    assert_eq!(side(&to_target.ifname), flow::Side::Target);
    // The decisions: the proxy's next-hop taken, the load balancer's target.
    let nexthop = summary.egress.nexthop.unwrap();
    assert!(svg.contains(&format!("taken {nexthop}")), "{svg}");
    let lb = &summary.path.lb[0];
    assert!(svg.contains(&format!("target {} dev {}", lb.target_ip, lb.dev)));
    // One load-balancer note however many request packets were looked up again.
    assert_eq!(count(&svg, "<g class=\"decision lb\""), 1);
}

#[test]
fn two_nodes_get_a_band_each_and_their_names() {
    let all = lines(TWO_NODES);
    let (key, _) = flow::choose(&all, flow::Pick::Number(1)).unwrap();
    let v = flow::view(&all, &key);
    assert_eq!(v.nodes.len(), 2);
    let svg = picture::flow(&v).to_string();
    let bands = count(&svg, "<g class=\"node\"");
    assert!(bands >= 2, "{bands} bands");
    for n in &v.nodes {
        assert!(svg.contains(&format!("node {n}")), "{n}");
    }
}

#[test]
fn the_flow_is_chosen_by_number_or_client_and_a_wrong_one_is_named() {
    let lines = lines(ONE_NODE);
    let (k1, _) = flow::choose(&lines, flow::Pick::Number(1)).unwrap();
    let client = std::net::SocketAddr::new(k1.client, k1.client_port);
    let (k, note) = flow::choose(&lines, flow::Pick::Client(client)).unwrap();
    assert_eq!((k, note), (k1, None));
    let e = flow::choose(&lines, flow::Pick::Number(99)).unwrap_err();
    assert!(e.to_string().contains("no flow 99"), "{e}");
    let e = flow::choose(&lines, flow::Pick::Client("1.2.3.4:5".parse().unwrap())).unwrap_err();
    assert!(e.to_string().contains("no flow of client 1.2.3.4:5"), "{e}");
}

#[test]
fn coordinates_stay_inside_the_view_box() {
    let lines = lines(ONE_NODE);
    let (key, _) = flow::choose(&lines, flow::Pick::Number(2)).unwrap();
    let svg = picture::flow(&flow::view(&lines, &key)).to_string();
    let attr = |name: &str| -> Vec<f64> {
        svg.split(&format!(" {name}=\""))
            .skip(1)
            .filter_map(|s| s.split('"').next()?.parse().ok())
            .collect()
    };
    let w = attr("width")[0];
    let h = attr("height")[0];
    for x in attr("x").into_iter().chain(attr("x1")).chain(attr("x2")) {
        assert!((0.0..=w).contains(&x), "x {x} outside 0..{w}");
    }
    for y in attr("y").into_iter().chain(attr("y1")).chain(attr("y2")) {
        assert!((0.0..=h).contains(&y), "y {y} outside 0..{h}");
    }
}

#[test]
fn no_distribution_is_one_sentence() {
    let e = super::distribution::picture(&lines(ONE_NODE)).unwrap_err();
    assert!(e.to_string().starts_with("no distribution record"), "{e}");
}

#[test]
fn distribution_has_a_bar_per_next_hop_target_and_their_weights() {
    let lines = lines(DISTRIBUTION);
    let svg = super::distribution::picture(&lines).unwrap().to_string();
    let d = lines
        .iter()
        .find_map(|l| match &l.record {
            Record::Distribution(d) => Some(d),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        count(&svg, "<g class=\"bar flows\""),
        d.nexthops.len() + d.targets.len()
    );
    // A route weight per next-hop, a table share per frontend per target reached.
    assert_eq!(
        count(&svg, "<g class=\"bar weight\""),
        d.nexthops.len() + d.targets.len() * d.lb_tables.len()
    );
    for t in &d.targets {
        let flows = format!("{} flows", t.flows);
        assert!(
            svg.contains(&*t.netns) && svg.contains(&flows),
            "{}",
            t.netns
        );
    }
}
