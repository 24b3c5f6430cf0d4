//! A ready record in the text view: its namespace's own hooks every time, the node-wide
//! ones once a run.
use crate::bpf::Ready;

/// What a ready record holds that is not its namespace's own: the hooks of the node object
/// (everything but `tc:`), which serve every traced namespace, and those of them refused or
/// not used. The text view says them once a run, and again only when they differ.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct NodeWide {
    pub(super) hooks: Vec<String>,
    pub(super) refused: Vec<(String, String)>,
    pub(super) unavailable: Vec<(String, String)>,
}

/// A hook on one namespace's interface (`tc:bridge0/ingress (tcx)`), not a node-wide one.
fn on_interface(hook: &str) -> bool {
    hook.starts_with("tc:")
}

/// The text lines of a ready record: its namespace's own hooks and notes, and the node-wide
/// hooks when `said` (the set printed last) is not the same; `said` becomes what this
/// record holds.
pub(super) fn ready_lines(r: &Ready, said: &mut Option<NodeWide>) -> Vec<String> {
    let vips: Vec<String> = r.vips.iter().map(|v| v.to_string()).collect();
    let port = r.client_port.map_or("every client port".to_string(), |p| {
        format!("client port {p}")
    });
    let found = if r.vips_from == "discovery" {
        " (found by discovery)"
    } else {
        ""
    };
    let records = if r.records.is_empty() {
        String::new()
    } else {
        format!(", records: {} (every packet counted)", r.records)
    };
    let mut lines = vec![format!(
        "ready: {} {}, VIPs {}{found}, {port}{records}",
        r.role,
        r.netns,
        vips.join(", ")
    )];
    let own = |(hook, _): &&(String, String)| on_interface(hook);
    let (mut own_hooks, mut node) = (Vec::new(), NodeWide::default());
    for hook in &r.hooks {
        if on_interface(hook) {
            own_hooks.push(hook.as_str());
        } else {
            node.hooks.push(hook.clone());
        }
    }
    node.refused = r.refused.iter().filter(|h| !own(h)).cloned().collect();
    node.unavailable = r.unavailable.iter().filter(|h| !own(h)).cloned().collect();
    if own_hooks.is_empty() {
        lines.push("  attached: none".into());
    } else {
        lines.push(format!("  attached: {}", own_hooks.join(", ")));
    }
    for (hook, why) in r.refused.iter().filter(own) {
        lines.push(format!("  REFUSED: {hook}: {why}"));
    }
    for (hook, why) in r.unavailable.iter().filter(own) {
        lines.push(format!("  not used: {hook}: {why}"));
    }
    if said.as_ref() != Some(&node) {
        let heading = if said.is_none() {
            "node-wide hooks (one set for every traced namespace):"
        } else {
            "node-wide hooks, changed (from here on):"
        };
        lines.push(format!("  {heading}"));
        if node.hooks.is_empty() {
            lines.push("    attached: none".into());
        } else {
            lines.push(format!("    attached: {}", node.hooks.join(", ")));
        }
        for (hook, why) in &node.refused {
            lines.push(format!("    REFUSED: {hook}: {why}"));
        }
        for (hook, why) in &node.unavailable {
            lines.push(format!("    not used: {hook}: {why}"));
        }
        *said = Some(node);
    }
    for note in &r.notes {
        lines.push(format!("  note: {note}"));
    }
    lines
}
