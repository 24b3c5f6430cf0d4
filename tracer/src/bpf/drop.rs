//! The drop hook: `skb:kfree_skb`, with the kernel's drop reasons where it has them.
use std::collections::HashMap;

use anyhow::{anyhow, Context, Result};
use aya::{programs::TracePoint, Ebpf};
use tracer_common::{programs, DropOffsets, FIELD_ABSENT};

use super::{
    object::{program, refused},
    offsets::{kernel_offsets, set_offsets},
    ready::Ready,
    tracefs,
};

/// The drop reason name given when the kernel has no drop reasons.
pub const NO_DROP_REASON: &str = "unknown (this kernel has no drop reasons)";

/// Attaches the drop hook and says so in `ready`; returns the kernel's reason names (empty
/// when the hook could not be attached: it is best effort).
pub(super) fn attach(ebpf: &mut Ebpf, ready: &mut Ready) -> HashMap<u32, String> {
    match attach_drop(ebpf) {
        Ok(Some(reasons)) => {
            ready.hooks.push("tracepoint:skb/kfree_skb".into());
            reasons
        }
        Ok(None) => {
            ready
                .hooks
                .push("tracepoint:skb/kfree_skb (without drop reasons)".into());
            ready.unavailable.push((
                "drop reasons".into(),
                "this kernel's skb:kfree_skb has no `reason` field (added in 5.17): \
                 drops are reported with where, not why"
                    .into(),
            ));
            HashMap::from([(0, NO_DROP_REASON.to_string())])
        }
        Err(e) => {
            ready
                .refused
                .push(("tracepoint:skb/kfree_skb".into(), format!("{e:#}")));
            Default::default()
        }
    }
}
/// `skb:kfree_skb`, filtered in the kernel to traced flows in the traced namespaces
/// (`NETNS_INUMS`, filled as sites come and go). Needs
/// the tracepoint's format (field offsets, reason names) and the kernel's BTF (where
/// `sk_buff`, `net_device` and `net` keep the members the program reads). Returns the
/// reason names, or `None` on a kernel whose tracepoint has no `reason` (before 5.17).
fn attach_drop(ebpf: &mut Ebpf) -> Result<Option<HashMap<u32, String>>> {
    let tracefs = tracefs::ensure_mounted()?;
    let format_path = tracefs.join("events/skb/kfree_skb/format");
    let text = std::fs::read_to_string(&format_path)
        .with_context(|| format!("cannot read {}", format_path.display()))?;
    let fields = tracefs::parse_format(&text);
    let has_reason = fields.contains_key("reason");
    let reasons = tracefs::drop_reasons(&text);
    let reason = |wanted: &str| {
        reasons
            .iter()
            .find(|(_, name)| name.as_str() == wanted)
            .and_then(|(n, _)| u16::try_from(*n).ok())
            .filter(|_| has_reason)
            .unwrap_or(0)
    };
    let offsets = DropOffsets {
        tp_skbaddr: tracefs::field(&fields, "skbaddr", 8)?,
        tp_location: tracefs::field(&fields, "location", 8)?,
        tp_protocol: tracefs::field(&fields, "protocol", 2)?,
        tp_reason: if has_reason {
            tracefs::field(&fields, "reason", 4)?
        } else {
            FIELD_ABSENT
        },
        valid: 1,
        reason_not_specified: reason("NOT_SPECIFIED"),
        reason_otherhost: reason("OTHERHOST"),
        ..kernel_offsets().drop.clone().map_err(|e| anyhow!("{e}"))?
    };
    set_offsets(ebpf, "DROP_OFFSETS", 0, offsets)?;
    let prog: &mut TracePoint = program(ebpf, programs::DROP)?;
    prog.load()
        .map_err(|e| refused("the tracepoint program", programs::DROP, &e))?;
    prog.attach("skb", "kfree_skb").context("attach failed")?;
    Ok(has_reason.then_some(reasons))
}
