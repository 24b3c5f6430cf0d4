//! What the loader attached, was refused and could not try: the ready line and record.
use std::net::IpAddr;

/// What the loader attached and could not attach, for the ready line/record.
#[derive(Debug, Clone, Default)]
pub struct Ready {
    pub netns: String,
    /// What the namespace is on the path: proxy, frontend or target.
    pub role: &'static str,
    pub vips: Vec<IpAddr>,
    /// Where the VIPs came from: "--vip", or "discovery" when none was given.
    pub vips_from: &'static str,
    pub client_port: Option<u16>,
    pub interfaces: Vec<String>,
    /// Hooks attached, e.g. "tc:bridge0/ingress (tcx)", "tracepoint:fib/fib_table_lookup".
    pub hooks: Vec<String>,
    /// Hooks tried and refused by the kernel, with the reason.
    pub refused: Vec<(String, String)>,
    /// Hooks this kernel cannot offer, not tried, with the reason.
    pub unavailable: Vec<(String, String)>,
    /// What the loader did beyond attaching, e.g. removing an earlier run's leftovers.
    pub notes: Vec<String>,
    /// The record budget in force, in words (set by the session): what was sampled.
    pub records: String,
}

impl Ready {
    /// Adds what the node object attached: the node-wide hooks serve every site.
    pub fn add_node_hooks(&mut self, node: &Ready) {
        self.hooks.extend(node.hooks.iter().cloned());
        self.refused.extend(node.refused.iter().cloned());
        self.unavailable.extend(node.unavailable.iter().cloned());
        self.notes.extend(node.notes.iter().cloned());
    }
}

/// Lists hooks `--hooks` left out as unavailable.
pub(super) fn not_asked(ready: &mut Ready, hooks: &[&str]) {
    for hook in hooks {
        let why = "not asked for (--hooks)".to_string();
        ready.unavailable.push((hook.to_string(), why));
    }
}
