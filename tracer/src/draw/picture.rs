//! The picture of one flow: a lane per pod in path order (its box at the top, its ports on
//! the box's lower edge, each port's line down through time), a row per event: the hops as
//! numbered arrows, the decisions as notes where they were taken, drops as red marks. Every
//! coordinate comes from the data: text widths, the number of pods, ports and events.
use svg::{
    node::element::{Group, Line as SvgLine, Rectangle, Text},
    Document,
};

use super::{
    flow::{Event, FlowView, Pod, Side},
    notes,
    style::{self, LINE, MARGIN},
};

/// Space between two pods' lanes.
const LANE_GAP: f64 = 24.0;
const HOP_ROW: f64 = 20.0;
/// Background of the node bands, in turn.
const BANDS: [&str; 3] = ["#eef4ff", "#fff3e6", "#effaef"];

/// Where each pod's lane and ports are.
struct Lanes {
    /// Per pod: left x, width, and the x of each port.
    lanes: Vec<(f64, f64, Vec<f64>)>,
    spacing: f64,
    right: f64,
}

fn lanes(pods: &[Pod], nodes: usize) -> Lanes {
    let widest = pods
        .iter()
        .flat_map(|p| &p.ports)
        .map(|p| style::small_width(&p.ifname))
        .fold(0.0, f64::max);
    let spacing = (widest + 14.0).max(96.0);
    let mut x = MARGIN + 8.0;
    let mut lanes = Vec::new();
    for pod in pods {
        let mut w = pod.ports.len().max(1) as f64 * spacing;
        for t in header(pod, nodes) {
            w = w.max(style::width(&t) + 16.0);
        }
        let first = x + (w - pod.ports.len() as f64 * spacing) / 2.0;
        let ports = (0..pod.ports.len())
            .map(|i| first + spacing * (i as f64 + 0.5))
            .collect();
        lanes.push((x, w, ports));
        x += w + LANE_GAP;
    }
    Lanes {
        lanes,
        spacing,
        right: x - LANE_GAP,
    }
}

/// The lines in a pod's box: role, pod, and node when there are several.
fn header(pod: &Pod, nodes: usize) -> Vec<String> {
    let mut lines = vec![pod.role.clone(), pod.netns.clone()];
    if nodes > 1 {
        lines.push(format!("node {}", pod.node));
    }
    lines
}

fn text(x: f64, y: f64, s: impl Into<String>) -> Text {
    Text::new(s.into()).set("x", x).set("y", y)
}

fn path_class(path: &str) -> &'static str {
    if path == "ingress" {
        "request"
    } else {
        "reply"
    }
}

fn row_height(e: &Event) -> f64 {
    match e {
        Event::Hop { .. } | Event::Drop { .. } => HOP_ROW,
        Event::Lb { route, .. } => notes::lb(route).len() as f64 * LINE + 12.0,
        Event::Ecmp { decision, .. } => notes::ecmp(decision).len() as f64 * LINE + 12.0,
    }
}

/// A note box with `lines` at (x, top); returns it and its right edge.
fn note(x: f64, top: f64, lines: &[String], class: &str) -> (Group, f64) {
    let w = lines.iter().map(|l| style::width(l)).fold(0.0, f64::max) + 12.0;
    let mut g = Group::new().set("class", class).add(
        Rectangle::new()
            .set("x", x)
            .set("y", top + 3.0)
            .set("width", w)
            .set("height", lines.len() as f64 * LINE + 6.0)
            .set("rx", 4)
            .set("fill", "#fffbe0")
            .set("stroke", "#b0a040"),
    );
    for (i, l) in lines.iter().enumerate() {
        g = g.add(text(
            x + 6.0,
            top + 3.0 + LINE * (i as f64 + 1.0) - 2.0,
            l.as_str(),
        ));
    }
    (g, x + w)
}

/// A note's lines with the time of the decision before the first.
fn timed(rel_ns: u64, mut lines: Vec<String>) -> Vec<String> {
    if let Some(first) = lines.first_mut() {
        *first = format!("{} {first}", style::ms(rel_ns));
    }
    lines
}

/// The SVG of one flow.
pub fn flow(v: &FlowView) -> Document {
    let nodes = v.nodes.len();
    let (style, defs) = style::defs();
    let mut right = MARGIN;
    let mut out: Vec<Box<dyn svg::Node>> = Vec::new();

    // Title and verdict.
    let title = notes::title(v);
    let mut y = MARGIN + style::TITLE;
    right = right.max(MARGIN + title.chars().count() as f64 * style::TITLE_CHAR);
    out.push(Box::new(text(MARGIN, y, title).set("class", "title")));
    for l in notes::verdict(v) {
        y += LINE;
        right = right.max(MARGIN + style::width(&l));
        out.push(Box::new(text(MARGIN, y, l).set("class", "verdict")));
    }

    let band_top = y + 12.0;
    let box_top = band_top + if nodes > 1 { 22.0 } else { 0.0 };
    let lines = if nodes > 1 { 3.0 } else { 2.0 };
    let box_bottom = box_top + lines * LINE + 8.0;
    let rows_top = box_bottom + 30.0;
    let rows_bottom = rows_top + v.events.iter().map(row_height).sum::<f64>();
    let l = lanes(&v.pods, nodes);
    right = right.max(l.right);
    let arrow = l.spacing / 2.0 - 8.0;

    // Node bands behind the pods, one per run of pods on the same node.
    if nodes > 1 {
        let mut i = 0;
        let mut colour = 0;
        while i < v.pods.len() {
            let node = &v.pods[i].node;
            let mut j = i;
            while j + 1 < v.pods.len() && v.pods[j + 1].node == *node {
                j += 1;
            }
            let x0 = l.lanes[i].0 - 6.0;
            let x1 = l.lanes[j].0 + l.lanes[j].1 + 6.0;
            let label = format!("node {node}");
            right = right.max(x1).max(x0 + 6.0 + style::width(&label));
            out.push(Box::new(
                Group::new()
                    .set("class", "node")
                    .add(
                        Rectangle::new()
                            .set("x", x0)
                            .set("y", band_top)
                            .set("width", x1 - x0)
                            .set("height", rows_bottom + 8.0 - band_top)
                            .set("fill", BANDS[colour % BANDS.len()]),
                    )
                    .add(text(x0 + 6.0, band_top + 15.0, label).set("class", "role")),
            ));
            colour += 1;
            i = j + 1;
        }
    }

    // Pods: lane, box, ports and their lines down through time.
    for (pod, (x, w, ports)) in v.pods.iter().zip(&l.lanes) {
        let mut g = Group::new()
            .set("class", "pod")
            .add(
                Rectangle::new()
                    .set("x", *x)
                    .set("y", box_top)
                    .set("width", *w)
                    .set("height", rows_bottom + 4.0 - box_top)
                    .set("fill", "#ffffff")
                    .set("fill-opacity", 0.6)
                    .set("stroke", "#c8c8c8"),
            )
            .add(
                Rectangle::new()
                    .set("x", *x)
                    .set("y", box_top)
                    .set("width", *w)
                    .set("height", box_bottom - box_top)
                    .set("rx", 4)
                    .set("fill", "#e9eef3")
                    .set("stroke", "#445"),
            );
        for (i, t) in header(pod, nodes).into_iter().enumerate() {
            let class = if i == 0 { "role" } else { "name" };
            g = g.add(text(x + 8.0, box_top + LINE * (i as f64 + 1.0), t).set("class", class));
        }
        for (port, px) in pod.ports.iter().zip(ports) {
            let fill = if port.side == Side::Inside {
                "#ffffff"
            } else {
                "#445"
            };
            g = g.add(
                Group::new()
                    .set("class", "port")
                    .add(
                        SvgLine::new()
                            .set("x1", *px)
                            .set("y1", box_bottom + 5.0)
                            .set("x2", *px)
                            .set("y2", rows_bottom)
                            .set("stroke", "#aaa")
                            .set("stroke-dasharray", "3 3"),
                    )
                    .add(
                        Rectangle::new()
                            .set("x", px - 5.0)
                            .set("y", box_bottom - 5.0)
                            .set("width", 10)
                            .set("height", 10)
                            .set("fill", fill)
                            .set("stroke", "#445"),
                    )
                    .add(
                        text(*px, box_bottom + 20.0, port.ifname.as_str())
                            .set("class", "small")
                            .set("text-anchor", "middle"),
                    ),
            );
        }
        out.push(Box::new(g));
    }

    // Events, one row each.
    let port_x = |netns: &str, ifname: &str| -> Option<(f64, f64)> {
        let i = v.pods.iter().position(|p| p.netns == netns)?;
        let (x, w, ports) = &l.lanes[i];
        let at = v.pods[i].ports.iter().position(|p| p.ifname == ifname);
        Some((*x, at.map_or(x + w / 2.0, |a| ports[a])))
    };
    let time_x = l.right + 20.0;
    let mut top = rows_top;
    for e in &v.events {
        let h = row_height(e);
        let mid = top + h / 2.0;
        match e {
            Event::Hop {
                number,
                hop,
                rel_ns,
            } => {
                let class = path_class(&hop.path);
                let Some((_, px)) = port_x(&hop.netns, &hop.ifname) else {
                    continue;
                };
                let toward = if hop.path == "ingress" { 1.0 } else { -1.0 };
                let (x1, x2) = if hop.dir == "ingress" {
                    (px - toward * arrow, px)
                } else {
                    (px, px + toward * arrow)
                };
                let label = format!(
                    "#{number} {} {} {} {} B",
                    style::ms(*rel_ns),
                    hop.ifname,
                    if hop.tcp_flags.is_empty() {
                        &hop.proto
                    } else {
                        &hop.tcp_flags
                    },
                    hop.len
                );
                right = right.max(time_x + style::width(&label));
                out.push(Box::new(
                    Group::new()
                        .set("class", format!("hop {class}"))
                        .add(
                            SvgLine::new()
                                .set("x1", x1)
                                .set("y1", mid)
                                .set("x2", x2)
                                .set("y2", mid)
                                .set("stroke-width", 2)
                                .set("marker-end", format!("url(#head-{class})")),
                        )
                        .add(
                            text((x1 + x2) / 2.0, mid - 3.0, number.to_string())
                                .set("class", format!("small number {class}"))
                                .set("text-anchor", "middle"),
                        )
                        .add(text(time_x, mid + 4.0, label).set("class", class)),
                ));
            }
            Event::Lb { route, rel_ns } => {
                if let Some((x, _)) = port_x(&route.netns, "") {
                    let lines = timed(*rel_ns, notes::lb(route));
                    let (g, r) = note(x + 6.0, top, &lines, "decision lb");
                    right = right.max(r);
                    out.push(Box::new(g));
                }
            }
            Event::Ecmp { decision, rel_ns } => {
                if let Some((x, _)) = port_x(&decision.netns, "") {
                    let lines = timed(*rel_ns, notes::ecmp(decision));
                    let (g, r) = note(x + 6.0, top, &lines, "decision ecmp");
                    right = right.max(r);
                    out.push(Box::new(g));
                }
            }
            Event::Drop { drop, rel_ns } => {
                let Some((_, px)) = port_x(&drop.netns, &drop.ifname) else {
                    continue;
                };
                let label = format!("{} {}", style::ms(*rel_ns), notes::drop(drop));
                right = right.max(px + 10.0 + style::small_width(&label));
                let cross = |dx: f64| {
                    SvgLine::new()
                        .set("x1", px - 5.0)
                        .set("y1", mid - dx)
                        .set("x2", px + 5.0)
                        .set("y2", mid + dx)
                        .set("stroke-width", 3)
                };
                out.push(Box::new(
                    Group::new()
                        .set("class", "drop")
                        .add(cross(5.0))
                        .add(cross(-5.0))
                        .add(text(px + 10.0, mid + 4.0, label).set("class", "small drop")),
                ));
            }
        }
        top += h;
    }

    // Legend.
    let legend_y = rows_bottom + 30.0;
    let mut x = MARGIN;
    let mut legend = Group::new().set("class", "legend");
    for (class, label) in [
        ("request", "request (toward the target)"),
        ("reply", "reply (toward the gateway)"),
    ] {
        legend = legend
            .add(
                SvgLine::new()
                    .set("x1", x)
                    .set("y1", legend_y - 4.0)
                    .set("x2", x + 30.0)
                    .set("y2", legend_y - 4.0)
                    .set("class", class)
                    .set("stroke-width", 2)
                    .set("marker-end", format!("url(#head-{class})")),
            )
            .add(text(x + 36.0, legend_y, label));
        x += 36.0 + style::width(label) + 20.0;
    }
    let rest = "#N hop record, time from the flow's first packet; X drop; yellow: decision";
    legend = legend.add(text(x, legend_y, rest));
    right = right.max(x + style::width(rest));

    let width = (right + MARGIN).ceil();
    let height = (legend_y + MARGIN).ceil();
    let mut doc = style::page(width, height, style, defs);
    for n in out {
        doc = doc.add(n);
    }
    doc.add(legend)
}
