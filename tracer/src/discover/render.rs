//! `tracer discover`'s output: a table, or JSON lines.
use tracer_records::discover::{self, DiscoverLine, Summary};

use super::{plural, Class, Discovery, IfaceKind, Namespace, Role};

pub(super) fn interfaces_text(c: &Class) -> String {
    let names = |kind: IfaceKind| -> Vec<&str> {
        c.interfaces
            .iter()
            .filter(|i| i.kind == kind)
            .map(|i| i.name.as_str())
            .collect()
    };
    match c.role {
        Role::Proxy => {
            // Bridges, each followed by its ports.
            let mut parts: Vec<String> = Vec::new();
            for i in &c.interfaces {
                match i.kind {
                    IfaceKind::Bridge => parts.push(format!("bridge {}:", i.name)),
                    _ => parts.push(i.name.clone()),
                }
            }
            parts.join(" ")
        }
        Role::Frontend => {
            let mut parts = vec![format!("external {}", names(IfaceKind::External).join(" "))];
            let conduits = names(IfaceKind::Conduit);
            if !conduits.is_empty() {
                parts.push(format!("conduit {}", conduits.join(" ")));
            }
            parts.join(", ")
        }
        Role::Target => names(IfaceKind::Vip).join(" "),
        Role::Other => String::new(),
    }
}

fn or_dash(s: String) -> String {
    if s.is_empty() {
        "-".to_string()
    } else {
        s
    }
}

/// Columns padded to their widest cell, two spaces apart (as `kubectl get` prints them).
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub(super) fn summary_sentence(d: &Discovery, all: bool) -> String {
    let looked = plural(d.namespaces.len(), "namespace", "namespaces");
    let other = d.count(Role::Other);
    if d.meridio().next().is_none() {
        return format!(
            "no Meridio proxy, frontend or target namespace found on this node ({looked} looked at)"
        );
    }
    let mut s = format!(
        "{looked} looked at: {}, {}, {}, {other} other",
        plural(d.count(Role::Proxy), "proxy", "proxies"),
        plural(d.count(Role::Frontend), "frontend", "frontends"),
        plural(d.count(Role::Target), "target", "targets"),
    );
    if !all && other > 0 {
        s.push_str(" (`tracer discover --all` lists them)");
    }
    s
}

pub fn render_text(d: &Discovery, all: bool) -> String {
    let shown: Vec<&Namespace> = d
        .namespaces
        .iter()
        .filter(|n| all || n.class.role != Role::Other)
        .collect();
    let mut out = String::new();
    if !shown.is_empty() {
        let mut rows = vec![["ROLE", "NAME", "NETNS", "VIPS", "INTERFACES"]
            .map(String::from)
            .to_vec()];
        for n in &shown {
            rows.push(vec![
                n.class.role.as_str().to_string(),
                n.name.clone(),
                n.path.display().to_string(),
                or_dash(
                    n.class
                        .vips
                        .iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                or_dash(interfaces_text(&n.class)),
            ]);
        }
        out.push_str(&table(&rows));
        for n in &shown {
            if let Some(note) = &n.class.note {
                out.push_str(&format!("note: {}: {note}\n", n.name));
            }
        }
    }
    out.push_str(&summary_sentence(d, all));
    out.push('\n');
    out
}

pub fn render_json(d: &Discovery, all: bool) -> String {
    let mut out = String::new();
    for n in d
        .namespaces
        .iter()
        .filter(|n| all || n.class.role != Role::Other)
    {
        push_line(&mut out, &DiscoverLine::Netns(netns_line(n)));
    }
    let summary = Summary {
        namespaces: d.namespaces.len() as u64,
        proxies: d.count(Role::Proxy) as u64,
        frontends: d.count(Role::Frontend) as u64,
        targets: d.count(Role::Target) as u64,
        other: d.count(Role::Other) as u64,
        message: summary_sentence(d, all).into(),
    };
    push_line(&mut out, &DiscoverLine::Summary(summary));
    out
}

fn netns_line(n: &Namespace) -> discover::Namespace<'_> {
    let lossy = |p: &std::path::Path| p.to_string_lossy().into_owned().into();
    discover::Namespace {
        role: n.class.role.as_str().into(),
        name: n.name.as_str().into(),
        path: lossy(&n.path),
        inode: n.inode,
        files: n.files.iter().map(|f| lossy(f)).collect(),
        pids: n.pids.clone(),
        pid_count: n.pid_count as u64,
        host: n.host,
        pod: n.pod.as_deref().map(Into::into),
        pod_uid: n.pod_uid.as_deref().map(Into::into),
        hostname: n.hostname.as_deref().map(Into::into),
        vips: n.class.vips.clone(),
        interfaces: n
            .class
            .interfaces
            .iter()
            .map(|i| discover::Interface {
                name: i.name.as_str().into(),
                kind: i.kind.as_str().into(),
            })
            .collect(),
        note: n.class.note.as_deref().map(Into::into),
        error: n.error.as_deref().map(Into::into),
    }
}

/// Through a `Value`, whose keys are sorted: the bytes `discover --json` has always
/// written (a few lines per node, so the detour costs nothing that matters).
fn push_line(out: &mut String, line: &DiscoverLine) {
    let v = serde_json::to_value(line).expect("discover records serialise");
    out.push_str(&v.to_string());
    out.push('\n');
}
