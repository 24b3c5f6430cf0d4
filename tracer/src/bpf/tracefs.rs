//! tracefs: where it is, and the field offsets of the fib tracepoints on this kernel.
//!
//! The layout of `fib:fib_table_lookup` and `fib6:fib6_table_lookup` records changes
//! between kernel versions, so the offsets are read from their `format` files at start-up
//! and handed to the eBPF programs through a map instead of being compiled in.
use std::{collections::HashMap, path::PathBuf};

use anyhow::{bail, Context, Result};
use tracer_common::FibOffsets;

const CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// The tracefs mount point. When none is mounted, mounts it at /sys/kernel/tracing (what
/// `perf` and `bpftrace` do too) and says so; the mount is harmless and stays.
pub fn ensure_mounted() -> Result<PathBuf> {
    if let Some(p) = CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.join("events").is_dir())
    {
        return Ok(p);
    }
    let target = PathBuf::from(CANDIDATES[0]);
    let mount = crate::privilege::tools::find("mount").context(
        "tracefs is not mounted and no `mount` is in a PATH directory only root can write",
    )?;
    let status = std::process::Command::new(mount)
        .args(["-t", "tracefs", "tracefs"])
        .arg(&target)
        .status()
        .context("tracefs is not mounted and `mount` could not be run")?;
    if !status.success() || !target.join("events").is_dir() {
        bail!("tracefs is not mounted and mounting it at /sys/kernel/tracing failed; mount it with `mount -t tracefs tracefs /sys/kernel/tracing`");
    }
    eprintln!("note: mounted tracefs at /sys/kernel/tracing (it was not mounted)");
    Ok(target)
}

/// Field name -> (offset, size) from a tracepoint `format` file.
pub fn parse_format(text: &str) -> HashMap<String, (u16, u16)> {
    let mut fields = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("field:") else {
            continue;
        };
        let mut decl = None;
        let mut offset = None;
        let mut size = None;
        for part in rest.split(';') {
            let part = part.trim();
            if let Some(v) = part.strip_prefix("offset:") {
                offset = v.parse().ok();
            } else if let Some(v) = part.strip_prefix("size:") {
                size = v.parse().ok();
            } else if decl.is_none() && !part.is_empty() {
                decl = Some(part);
            }
        }
        // "__u8 gw6[16]" -> "gw6"; "char name[16]" -> "name".
        let name = decl
            .and_then(|d| d.split_whitespace().last())
            .map(|n| n.split('[').next().unwrap_or(n).to_string());
        if let (Some(name), Some(offset), Some(size)) = (name, offset, size) {
            fields.insert(name, (offset, size));
        }
    }
    fields
}

/// Offsets for one family's fib tracepoint, checked for the sizes the program reads.
pub fn fib_offsets(text: &str, v6: bool) -> Result<FibOffsets> {
    let fields = parse_format(text);
    let addr_len = if v6 { 16 } else { 4 };
    let gw_name = if v6 { "gw" } else { "gw4" };
    let get = |name: &str, size: u16| field(&fields, name, size);
    // The device name is a `char name[16]` since 5.18 or so; before, a dynamic string
    // (`__data_loc char[] name`, 4 bytes: where the string is in the record).
    let (name, name_loc) = match field(&fields, "name", 16) {
        Ok(off) => (off, 0),
        Err(e) => match field(&fields, "name", 4) {
            Ok(off) if is_data_loc(text, "name") => (off, 1),
            _ => return Err(e),
        },
    };
    Ok(FibOffsets {
        tb_id: get("tb_id", 4)?,
        err: get("err", 4)?,
        oif: get("oif", 4)?,
        iif: get("iif", 4)?,
        proto: get("proto", 1)?,
        src: get("src", addr_len)?,
        dst: get("dst", addr_len)?,
        gw: get(gw_name, addr_len)?,
        sport: get("sport", 2)?,
        dport: get("dport", 2)?,
        name,
        valid: 1,
        name_loc,
    })
}

/// Whether a tracepoint field is declared `__data_loc` (a dynamic array).
fn is_data_loc(text: &str, name: &str) -> bool {
    text.lines().any(|l| {
        let decl = l.trim().strip_prefix("field:").unwrap_or_default();
        let decl = decl.split(';').next().unwrap_or_default();
        decl.starts_with("__data_loc") && decl.split_whitespace().last() == Some(name)
    })
}

/// Offset of a tracepoint field that must have `size` bytes.
pub fn field(fields: &HashMap<String, (u16, u16)>, name: &str, size: u16) -> Result<u16> {
    let (off, sz) = *fields
        .get(name)
        .with_context(|| format!("field {name} missing from the tracepoint format"))?;
    if sz != size {
        bail!("field {name} has size {sz}, expected {size}");
    }
    Ok(off)
}

/// Names of `enum skb_drop_reason` values, from the `__print_symbolic(REC->reason, { 2,
/// "NOT_SPECIFIED" }, ...)` list in the `skb:kfree_skb` format file.
pub fn drop_reasons(text: &str) -> HashMap<u32, String> {
    let mut names = HashMap::new();
    let Some(start) = text.find("__print_symbolic(REC->reason") else {
        return names;
    };
    for entry in text[start..].split('{').skip(1) {
        let Some((num, rest)) = entry.split_once(',') else {
            continue;
        };
        let name = rest.split('"').nth(1);
        if let (Ok(num), Some(name)) = (num.trim().parse(), name) {
            names.insert(num, name.to_string());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    // Excerpt of the 6.18 format files (fib6 fields are unaligned there).
    const FIB: &str = "name: fib_table_lookup
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:u32 tb_id;\toffset:8;\tsize:4;\tsigned:0;
\tfield:int err;\toffset:12;\tsize:4;\tsigned:1;
\tfield:int oif;\toffset:16;\tsize:4;\tsigned:1;
\tfield:int iif;\toffset:20;\tsize:4;\tsigned:1;
\tfield:u8 proto;\toffset:24;\tsize:1;\tsigned:0;
\tfield:__u8 src[4];\toffset:28;\tsize:4;\tsigned:0;
\tfield:__u8 dst[4];\toffset:32;\tsize:4;\tsigned:0;
\tfield:__u8 gw4[4];\toffset:36;\tsize:4;\tsigned:0;
\tfield:__u8 gw6[16];\toffset:40;\tsize:16;\tsigned:0;
\tfield:u16 sport;\toffset:56;\tsize:2;\tsigned:0;
\tfield:u16 dport;\toffset:58;\tsize:2;\tsigned:0;
\tfield:char name[16];\toffset:60;\tsize:16;\tsigned:0;
";

    #[test]
    fn reads_fib_offsets() {
        let o = fib_offsets(FIB, false).unwrap();
        assert_eq!((o.tb_id, o.src, o.gw, o.name, o.valid), (8, 28, 36, 60, 1));
    }

    // The 5.10 (Debian 11) formats: the device name is a dynamic string there.
    const FIB_5_10: &str = "name: fib_table_lookup
format:
\tfield:u32 tb_id;\toffset:8;\tsize:4;\tsigned:0;
\tfield:int err;\toffset:12;\tsize:4;\tsigned:1;
\tfield:int oif;\toffset:16;\tsize:4;\tsigned:1;
\tfield:int iif;\toffset:20;\tsize:4;\tsigned:1;
\tfield:u8 proto;\toffset:24;\tsize:1;\tsigned:0;
\tfield:__u8 tos;\toffset:25;\tsize:1;\tsigned:0;
\tfield:__u8 scope;\toffset:26;\tsize:1;\tsigned:0;
\tfield:__u8 flags;\toffset:27;\tsize:1;\tsigned:0;
\tfield:__u8 src[4];\toffset:28;\tsize:4;\tsigned:0;
\tfield:__u8 dst[4];\toffset:32;\tsize:4;\tsigned:0;
\tfield:__u8 gw4[4];\toffset:36;\tsize:4;\tsigned:0;
\tfield:__u8 gw6[16];\toffset:40;\tsize:16;\tsigned:0;
\tfield:u16 sport;\toffset:56;\tsize:2;\tsigned:0;
\tfield:u16 dport;\toffset:58;\tsize:2;\tsigned:0;
\tfield:__data_loc char[] name;\toffset:60;\tsize:4;\tsigned:1;
";

    #[test]
    fn reads_a_dynamic_device_name() {
        let o = fib_offsets(FIB_5_10, false).unwrap();
        assert_eq!((o.name, o.name_loc, o.gw), (60, 1, 36));
        assert_eq!(fib_offsets(FIB, false).unwrap().name_loc, 0);
        // A 4-byte name that is not a dynamic string is still refused.
        let odd = FIB_5_10.replace("__data_loc char[] name", "u32 name");
        assert!(fib_offsets(&odd, false).is_err());
    }

    #[test]
    fn refuses_a_format_that_does_not_fit() {
        let e = fib_offsets(FIB, true).unwrap_err().to_string();
        assert!(e.contains("size"), "{e}");
        let e = fib_offsets("format:\n", false).unwrap_err().to_string();
        assert!(e.contains("missing"), "{e}");
    }

    #[test]
    fn names_drop_reasons() {
        let text = r#"print fmt: "skbaddr=%p reason: %s", REC->skbaddr, __print_symbolic(REC->reason, { 2, "NOT_SPECIFIED" }, { 88, "IP_INNOROUTES" }, { 16, "IP_RPFILTER" })"#;
        let r = drop_reasons(text);
        assert_eq!(r.get(&88).map(String::as_str), Some("IP_INNOROUTES"));
        assert_eq!(r.get(&16).map(String::as_str), Some("IP_RPFILTER"));
        assert_eq!(r.len(), 3);
        assert!(drop_reasons("no list").is_empty());
    }

    #[test]
    fn matches_the_running_kernel_when_readable() {
        // On a machine with tracefs mounted this checks the real files parse.
        for (dir, v6) in [
            ("fib/fib_table_lookup", false),
            ("fib6/fib6_table_lookup", true),
        ] {
            for base in CANDIDATES {
                let p = format!("{base}/events/{dir}/format");
                if let Ok(text) = std::fs::read_to_string(&p) {
                    fib_offsets(&text, v6).unwrap();
                }
            }
        }
    }
}
