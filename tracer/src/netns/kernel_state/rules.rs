//! Policy rules (`ip rule`): the selectors Meridio uses, and the lookup table.
use std::net::IpAddr;

use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};

use super::{host_len, prefix_contains};

/// One `ip rule`. Only the selectors Meridio uses are kept; a rule with any other selector
/// is marked `other_selectors` so it is never mistaken for a plain source rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub priority: u32,
    pub src: Option<(IpAddr, u8)>,
    pub dst: Option<(IpAddr, u8)>,
    pub fwmark: Option<u32>,
    pub fwmask: Option<u32>,
    pub iif: Option<String>,
    pub other_selectors: bool,
    /// Table for `lookup` rules; `None` for other actions.
    pub table: Option<u32>,
    pub v6: bool,
}

impl Rule {
    /// `from 20.0.0.1`, `fwmark 0x1389`, ... as `ip rule` would print the selector.
    pub fn selector(&self) -> String {
        let mut parts = Vec::new();
        match self.src {
            Some((ip, len)) if len == host_len(ip) => parts.push(format!("from {ip}")),
            Some((ip, len)) => parts.push(format!("from {ip}/{len}")),
            None => parts.push("from all".to_string()),
        }
        if let Some((ip, len)) = self.dst {
            parts.push(format!("to {ip}/{len}"));
        }
        match (self.fwmark, self.fwmask) {
            (Some(m), Some(mask)) if mask != u32::MAX => {
                parts.push(format!("fwmark {m:#x}/{mask:#x}"))
            }
            (Some(m), _) => parts.push(format!("fwmark {m:#x}")),
            _ => {}
        }
        if let Some(i) = &self.iif {
            parts.push(format!("iif {i}"));
        }
        parts.join(" ")
    }

    /// Whether this rule's selectors match a packet (rules with selectors the tracer does
    /// not model never match, so they are never blamed wrongly).
    pub fn matches(&self, src: IpAddr, dst: IpAddr, mark: u32, iif: Option<&str>) -> bool {
        !self.other_selectors
            && self.v6 == src.is_ipv6()
            && self.src.is_none_or(|(n, l)| prefix_contains(n, l, src))
            && self.dst.is_none_or(|(n, l)| prefix_contains(n, l, dst))
            && self
                .fwmark
                .is_none_or(|m| mark & self.fwmask.unwrap_or(u32::MAX) == m)
            && self.iif.as_deref().is_none_or(|i| Some(i) == iif)
    }
}

pub(super) fn parse_rule(m: &RuleMessage, v6: bool) -> Rule {
    let mut rule = Rule {
        priority: 0,
        src: None,
        dst: None,
        fwmark: None,
        fwmask: None,
        iif: None,
        other_selectors: m.header.tos != 0,
        table: (m.header.action == RuleAction::ToTable).then_some(u32::from(m.header.table)),
        v6,
    };
    for a in &m.attributes {
        match a {
            RuleAttribute::Priority(p) => rule.priority = *p,
            RuleAttribute::Source(ip) => rule.src = Some((*ip, m.header.src_len)),
            RuleAttribute::Destination(ip) => rule.dst = Some((*ip, m.header.dst_len)),
            RuleAttribute::FwMark(mark) => rule.fwmark = Some(*mark),
            RuleAttribute::FwMask(mask) => rule.fwmask = Some(*mask),
            RuleAttribute::Iifname(i) => rule.iif = Some(i.clone()),
            RuleAttribute::Table(t) if rule.table.is_some() => rule.table = Some(*t),
            RuleAttribute::Oifname(_)
            | RuleAttribute::UidRange(_)
            | RuleAttribute::IpProtocol(_)
            | RuleAttribute::SourcePortRange(_)
            | RuleAttribute::DestinationPortRange(_) => rule.other_selectors = true,
            _ => {}
        }
    }
    rule
}
