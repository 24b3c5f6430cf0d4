//! The fuzzing surface (`--features fuzzing`, for the `fuzz/` targets only, not an
//! interface): bytes in, straight to the parsers that read what the tracer does not control
//! (the ring buffer's records, the kernel's BTF and tracefs format files, other nodes' JSON
//! lines). Each function only has to return: a panic, an overflow or an endless loop in a
//! parser is what the fuzzer finds.
use crate::bpf::{offsets, tracefs};
use crate::merge::{follow::Merger, input::Source, read::Rec, read_all, write_batch};

/// One ring-buffer record, as a session decodes it.
pub fn decode(bytes: &[u8]) {
    let _ = crate::events::decode(bytes);
}

/// A BTF blob in place of /sys/kernel/btf/vmlinux: parsed, then every member offset the
/// drop and raw fib programs read looked up.
pub fn btf_layout(bytes: &[u8]) {
    if let Ok(layout) = offsets::btf_layout::Layout::parse(bytes.to_vec()) {
        let _ = offsets::drop_offsets(&layout);
        let _ = offsets::fib_raw_offsets(&layout);
    }
}

/// A tracepoint `format` file, read as the fib (both families) and kfree_skb ones are.
pub fn tracefs_format(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let _ = tracefs::parse_format(&text);
    let _ = tracefs::fib_offsets(&text, false);
    let _ = tracefs::fib_offsets(&text, true);
    let _ = tracefs::drop_reasons(&text);
}

/// The separator between inputs in a merge fuzz case (NUL: never in a JSON line).
pub const INPUT_SEPARATOR: u8 = 0;

/// The inputs of a merge case: NUL-separated, at most 4 (more add nothing new).
fn inputs(bytes: &[u8]) -> impl Iterator<Item = (String, &[u8])> {
    bytes
        .split(|b| *b == INPUT_SEPARATOR)
        .take(4)
        .enumerate()
        .map(|(i, b)| (format!("node-{i}"), b))
}

/// The records of a merge case's inputs, read as a batch merge reads files (with a
/// smaller memory bound, which a case can reach).
fn read(bytes: &[u8]) -> Vec<Rec> {
    let sources = inputs(bytes)
        .map(|(name, b)| Source::from_bytes(&name, b.to_vec()))
        .collect();
    read_all(sources, 16 << 20).unwrap_or_default()
}

/// The merge line reader alone: every input's lines into records.
pub fn merge_read(bytes: &[u8]) {
    read(bytes);
}

/// The mergers: the batch one over all inputs in both views, and the `--follow` one fed
/// the same records in order of arrival, its clock the newest wall time seen (the hold-back
/// window from the first byte).
pub fn merge(bytes: &[u8]) {
    let Some((&options, rest)) = bytes.split_first() else {
        return;
    };
    let recs = read(rest);
    if recs.is_empty() {
        return;
    }
    let mut out = Vec::new();
    let _ = write_batch(&recs, false, &mut out);
    out.clear();
    let _ = write_batch(&recs, true, &mut out);
    out.clear();
    let json = options & 1 == 1;
    let hold_ns = i128::from(options >> 1) * 1_000_000;
    let mut m = Merger::new(hold_ns, json);
    let mut now = i128::MIN;
    for rec in recs {
        now = now.max(rec.key);
        m.push(rec);
        let _ = m.release(now, &mut out);
        if out.len() > 1 << 20 {
            out.clear();
        }
    }
    let _ = m.release(i128::MAX, &mut out);
}
