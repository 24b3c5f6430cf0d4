//! The distribution picture, per VIP: the flows per proxy next-hop as bars beside the
//! route's weights, and the flows per target beside each frontend load balancer's share of
//! its table for that target.
use std::net::IpAddr;

use anyhow::{bail, Result};
use svg::{
    node::element::{Group, Rectangle, Text},
    Document,
};

use super::records::{Candidate, Distribution, Line, Record};

use super::style::{self, LINE, MARGIN, REPLY, REQUEST};

/// The length of a 100 % bar.
const BAR: f64 = 300.0;

/// The latest route candidates of `vip`'s flows (flow summaries and decisions carry them).
fn weights(lines: &[Line], vip: IpAddr) -> Vec<Candidate> {
    let mut found = Vec::new();
    for l in lines {
        match &l.record {
            Record::Flow(f) if f.flow.vip == vip && !f.egress.candidates.is_empty() => {
                found = f.egress.candidates.clone();
            }
            Record::Decision(d) if d.flow.vip == vip && !d.candidates.is_empty() => {
                found = d.candidates.clone();
            }
            _ => {}
        }
    }
    found
}

fn pct(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part / whole
    } else {
        0.0
    }
}

/// Indent of a bar that stands beside the one above it.
const INDENT: f64 = 16.0;

/// One bar row: its label, a bar of its share, what it stands for; flows in blue, what
/// the weights or tables give (indented under them) in orange.
struct Row {
    label: String,
    share: f64,
    flows: bool,
    what: String,
}

fn bar(x: f64, y: f64, label_w: f64, row: &Row) -> Group {
    let (fill, class, indent) = if row.flows {
        (REQUEST, "flows", 0.0)
    } else {
        (REPLY, "weight", INDENT)
    };
    Group::new()
        .set("class", format!("bar {class}"))
        .add(
            Text::new(row.label.as_str())
                .set("x", x + indent)
                .set("y", y + 11.0),
        )
        .add(
            Rectangle::new()
                .set("x", x + label_w)
                .set("y", y)
                .set("width", (row.share * BAR).max(1.0))
                .set("height", 13)
                .set("fill", fill),
        )
        .add(
            Text::new(row.what.as_str())
                .set("x", x + label_w + BAR + 10.0)
                .set("y", y + 11.0),
        )
}

/// The picture of every VIP's distribution in the lines.
pub fn picture(lines: &[Line]) -> Result<Document> {
    let dists: Vec<&Distribution> = lines
        .iter()
        .filter_map(|l| match &l.record {
            Record::Distribution(d) => Some(d),
            _ => None,
        })
        .collect();
    if dists.is_empty() {
        bail!("no distribution record in the input: a tracer writes one per VIP when it stops, after more than one flow");
    }
    let (style_el, defs) = style::defs();
    let mut groups = Vec::new();
    let mut y = MARGIN;
    let mut right: f64 = 0.0;
    for d in dists {
        let total = d.flows as f64;
        let cands = weights(lines, d.vip);
        let weight_sum: f64 = cands.iter().map(|c| c.weight as f64).sum();
        let mut rows: Vec<Row> = Vec::new();
        for n in &d.nexthops {
            let name = format!(
                "next-hop {} {}",
                n.nexthop.map_or("?".into(), |ip| ip.to_string()),
                n.ifname.as_deref().unwrap_or("")
            );
            let share = pct(n.flows as f64, total);
            rows.push(Row {
                label: name,
                share,
                flows: true,
                what: format!("{} flows ({:.1} %)", n.flows, share * 100.0),
            });
            if let Some(c) = cands.iter().find(|c| c.gw == n.nexthop) {
                let w = pct(c.weight as f64, weight_sum);
                rows.push(Row {
                    label: "route weight".into(),
                    share: w,
                    flows: false,
                    what: format!("weight {} of {weight_sum} ({:.1} %)", c.weight, w * 100.0),
                });
            }
        }
        for t in &d.targets {
            let mark = t.mark.map_or("?".into(), |m| format!("{m:#x}"));
            let name = format!(
                "target {} {}",
                t.netns,
                t.target_ip.map_or(String::new(), |ip| ip.to_string())
            );
            let share = pct(t.flows as f64, total);
            rows.push(Row {
                label: name,
                share,
                flows: true,
                what: format!("{} flows ({:.1} %), mark {mark}", t.flows, share * 100.0),
            });
            for table in &d.lb_tables {
                if let Some(slot) = table.active.iter().find(|s| Some(s.mark) == t.mark) {
                    let s = pct(slot.entries as f64, table.m as f64);
                    rows.push(Row {
                        label: format!("{} load balancer", table.netns),
                        share: s,
                        flows: false,
                        what: format!(
                            "{} of {} table entries ({:.1} %), {} flows",
                            slot.entries,
                            table.m,
                            s * 100.0,
                            slot.flows
                        ),
                    });
                }
            }
        }
        let mut notes = Vec::new();
        for table in &d.lb_tables {
            if !table.not_in_table.is_empty() {
                notes.push(format!(
                    "{}: marks {:?} not in its table {}",
                    table.netns, table.not_in_table, table.name
                ));
            }
        }
        let title = format!("VIP {}: {} flows", d.vip, d.flows);
        y += style::TITLE;
        right = right.max(MARGIN + title.chars().count() as f64 * style::TITLE_CHAR);
        let mut g = Group::new().set("class", "vip").add(
            Text::new(title)
                .set("x", MARGIN)
                .set("y", y)
                .set("class", "title"),
        );
        y += 8.0;
        let label_w = rows
            .iter()
            .map(|r| style::width(&r.label) + if r.flows { 0.0 } else { INDENT })
            .fold(0.0, f64::max)
            + 12.0;
        for row in &rows {
            g = g.add(bar(MARGIN, y, label_w, row));
            right = right.max(MARGIN + label_w + BAR + 10.0 + style::width(&row.what));
            y += 18.0;
        }
        for n in notes {
            y += LINE;
            right = right.max(MARGIN + style::width(&n));
            g = g.add(
                Text::new(n)
                    .set("x", MARGIN)
                    .set("y", y)
                    .set("class", "drop"),
            );
        }
        groups.push(g);
        y += 24.0;
    }
    let legend = format!("blue: flows seen; orange: what the route's weights or the load balancer's table give ({BAR} px = 100 %)");
    y += 4.0;
    right = right.max(MARGIN + style::width(&legend));
    let width = (right + MARGIN).ceil();
    let height = (y + MARGIN).ceil();
    let mut doc = style::page(width, height, style_el, defs);
    for g in groups {
        doc = doc.add(g);
    }
    Ok(doc.add(
        Text::new(legend)
            .set("x", MARGIN)
            .set("y", y)
            .set("class", "legend"),
    ))
}
