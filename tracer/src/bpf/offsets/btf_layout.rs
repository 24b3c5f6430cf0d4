//! Byte offsets of kernel struct members, from the running kernel's BTF
//! (/sys/kernel/btf/vmlinux).
//!
//! The drop and raw fib programs read `sk_buff`, `net_device`, `flowi4`... directly; their
//! layouts change between kernels and configs, so the offsets are looked up at start-up,
//! never compiled in.
//!
//! Hand-written on purpose: the tracer needs some twenty member offsets, and a general BTF
//! parser builds every one of the kernel's 100 000+ types first. Measured on this machine's
//! 5.5 MB vmlinux BTF: `btf-rs` took 209 ms and 41 MB at its peak (and kept 14 MB of heap
//! after it was dropped), aya's parser 35 ms and 20 MB but it keeps members private. This
//! reads the file once and indexes where each type starts (the file plus 4 bytes per
//! type); the format is the kernel's `include/uapi/linux/btf.h`. The unit tests check it
//! against `btf-rs` on every member the tracer reads.
use anyhow::{bail, ensure, Context, Result};

const MAGIC: u16 = 0xeb9f;
const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;
/// `struct btf_type`: name_off, info, size or type.
const TYPE_LEN: usize = 12;

pub struct Layout {
    /// The whole file.
    data: Vec<u8>,
    /// Where the type and string sections are in `data`.
    types: std::ops::Range<usize>,
    strings: std::ops::Range<usize>,
    /// Where type id `i + 1` starts in the type section (id 0 is void).
    starts: Vec<u32>,
}

/// One `struct btf_type` as read.
struct TypeRef<'a> {
    name_off: u32,
    kind: u32,
    vlen: usize,
    kind_flag: bool,
    /// `size` or `type`, by kind.
    size_type: u32,
    /// What follows the header (members for structs and unions).
    extra: &'a [u8],
}

fn u32_at(b: &[u8], off: usize) -> Result<u32> {
    let bytes = b.get(off..off + 4).context("the kernel BTF is truncated")?;
    Ok(u32::from_ne_bytes(bytes.try_into().unwrap()))
}

impl Layout {
    pub fn from_sys_fs() -> Result<Layout> {
        let data = std::fs::read("/sys/kernel/btf/vmlinux")
            .context("cannot read the kernel BTF at /sys/kernel/btf/vmlinux")?;
        Layout::parse(data)
    }

    pub fn parse(data: Vec<u8>) -> Result<Layout> {
        let magic = data.get(..2).context("the kernel BTF is empty")?;
        ensure!(
            u16::from_ne_bytes(magic.try_into().unwrap()) == MAGIC,
            "the kernel BTF has no BTF magic (or another byte order)"
        );
        let hdr_len = u32_at(&data, 4)? as usize;
        let section = |off: usize| -> Result<std::ops::Range<usize>> {
            let start = hdr_len + u32_at(&data, off)? as usize;
            let range = start..start + u32_at(&data, off + 4)? as usize;
            ensure!(range.end <= data.len(), "the kernel BTF is truncated");
            Ok(range)
        };
        let (types, strings) = (section(8)?, section(16)?);
        let section = &data[types.clone()];
        let mut starts = Vec::with_capacity(section.len() / 24);
        let mut at = 0;
        while at < section.len() {
            starts.push(at as u32);
            let info = u32_at(section, at + 4)?;
            let vlen = (info & 0xffff) as usize;
            at += TYPE_LEN
                + match (info >> 24) & 0x1f {
                    KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                    KIND_ARRAY => 12,
                    KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
                    KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
                    KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST
                    | KIND_RESTRICT | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => 0,
                    // Its size is unknown to this reader: the walk would lose its way.
                    kind => {
                        bail!("the kernel BTF has a type kind ({kind}) this tracer does not know")
                    }
                };
        }
        Ok(Layout {
            data,
            types,
            strings,
            starts,
        })
    }

    fn get(&self, id: u32) -> Result<TypeRef<'_>> {
        let types = &self.data[self.types.clone()];
        let start = *id
            .checked_sub(1)
            .and_then(|i| self.starts.get(i as usize))
            .with_context(|| format!("type id {id} is not in the kernel BTF"))?
            as usize;
        let info = u32_at(types, start + 4)?;
        Ok(TypeRef {
            name_off: u32_at(types, start)?,
            kind: (info >> 24) & 0x1f,
            vlen: (info & 0xffff) as usize,
            kind_flag: info >> 31 == 1,
            size_type: u32_at(types, start + 8)?,
            extra: types.get(start + TYPE_LEN..).unwrap_or_default(),
        })
    }

    fn name(&self, off: u32) -> &[u8] {
        let strings = &self.data[self.strings.clone()];
        let tail = strings.get(off as usize..).unwrap_or_default();
        &tail[..tail.iter().position(|b| *b == 0).unwrap_or(tail.len())]
    }

    /// Follows typedefs and qualifiers to the type they name.
    fn resolve(&self, mut id: u32) -> Result<TypeRef<'_>> {
        for _ in 0..32 {
            let t = self.get(id)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_type
                }
                _ => return Ok(t),
            }
        }
        bail!("type id {id}: a chain of typedefs too long to follow")
    }

    /// Offset in bytes of `strukt.field`, looking through anonymous structs and unions
    /// (members such as `sk_buff.network_header` sit inside `struct_group`s). `strukt` may
    /// also be a typedef of a struct (`possible_net_t`).
    pub fn offset(&self, strukt: &str, field: &str) -> Result<u16> {
        let mut named = false;
        for id in 1..=self.starts.len() as u32 {
            let t = self.get(id)?;
            if !matches!(t.kind, KIND_STRUCT | KIND_TYPEDEF)
                || self.name(t.name_off) != strukt.as_bytes()
            {
                continue;
            }
            named = true;
            let s = self.resolve(id)?;
            if s.kind != KIND_STRUCT {
                continue;
            }
            if let Some(bits) = self.find(&s, field.as_bytes(), 0, 0)? {
                if bits % 8 != 0 {
                    bail!("{strukt}.{field} is a bitfield");
                }
                return u16::try_from(bits / 8)
                    .with_context(|| format!("{strukt}.{field} is too far into the struct"));
            }
        }
        if !named {
            bail!("struct {strukt} not in the kernel BTF");
        }
        bail!("struct {strukt} has no member {field} in this kernel")
    }

    /// The bit offset of `field` in the struct or union `s`, itself at `base_bits`, `depth`
    /// anonymous members down (bounded: a BTF whose anonymous member holds its own struct
    /// would recurse until the stack overflows).
    fn find(
        &self,
        s: &TypeRef<'_>,
        field: &[u8],
        base_bits: u32,
        depth: u32,
    ) -> Result<Option<u32>> {
        ensure!(
            depth < 32,
            "the kernel BTF nests anonymous members too deep to follow"
        );
        for m in 0..s.vlen {
            // `struct btf_member`: name_off, type, offset (with kind_flag, the bit offset
            // is the low 24 bits and the bitfield size the high 8).
            let name = self.name(u32_at(s.extra, 12 * m)?);
            let ty = u32_at(s.extra, 12 * m + 4)?;
            let offset = u32_at(s.extra, 12 * m + 8)?;
            let bits = base_bits
                .checked_add(if s.kind_flag {
                    offset & 0xff_ffff
                } else {
                    offset
                })
                .context("the kernel BTF has a member offset past 4 Gbit")?;
            if name == field {
                return Ok(Some(bits));
            }
            if name.is_empty() {
                // Anonymous struct or union: its members belong to the outer struct.
                let inner = self.resolve(ty)?;
                if matches!(inner.kind, KIND_STRUCT | KIND_UNION) {
                    if let Some(found) = self.find(&inner, field, bits, depth + 1)? {
                        return Ok(Some(found));
                    }
                }
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every member the drop and raw fib programs read (`bpf::node`).
    const READ: &[(&str, &str)] = &[
        ("sk_buff", "head"),
        ("sk_buff", "network_header"),
        ("sk_buff", "transport_header"),
        ("sk_buff", "dev"),
        ("sk_buff", "mark"),
        ("net_device", "ifindex"),
        ("net_device", "nd_net"),
        ("net_device", "name"),
        ("possible_net_t", "net"),
        ("net", "ns"),
        ("ns_common", "inum"),
        ("flowi4", "__fl_common"),
        ("flowi6", "__fl_common"),
        ("flowi_common", "flowic_iif"),
        ("flowi_common", "flowic_oif"),
        ("flowi_common", "flowic_mark"),
        ("flowi4", "saddr"),
        ("flowi4", "daddr"),
        ("flowi6", "saddr"),
        ("flowi6", "daddr"),
        ("fib_nh_common", "nhc_dev"),
        ("fib_nh_common", "nhc_gw_family"),
        ("fib_nh_common", "nhc_gw"),
        ("fib6_result", "nh"),
        ("fib6_result", "fib6_type"),
        ("fib6_nh", "nh_common"),
        ("fib6_table", "tb6_id"),
    ];

    /// The same offsets `btf-rs`, a general parser, finds; and clear errors for what is
    /// not there.
    #[test]
    fn agrees_with_btf_rs_on_every_member_the_programs_read() {
        let Ok(layout) = Layout::from_sys_fs() else {
            eprintln!("no kernel BTF here; nothing to check");
            return;
        };
        let other = btf_rs::Btf::from_file("/sys/kernel/btf/vmlinux").unwrap();
        for (s, f) in READ {
            let ours = layout.offset(s, f).unwrap();
            assert_eq!(ours, btf_rs_offset(&other, s, f), "{s}.{f}");
        }
        let err = layout.offset("sk_buff", "no_such_member").unwrap_err();
        assert!(err.to_string().contains("has no member"), "{err}");
        let err = layout.offset("no_such_struct", "x").unwrap_err();
        assert!(err.to_string().contains("not in the kernel BTF"), "{err}");
    }

    #[test]
    fn refuses_what_is_not_btf() {
        assert!(Layout::parse(Vec::new()).is_err());
        assert!(Layout::parse(vec![0u8; 64]).is_err());
        // The right magic, sections pointing past the end.
        let mut truncated = vec![0u8; 24];
        truncated[..2].copy_from_slice(&MAGIC.to_ne_bytes());
        truncated[4..8].copy_from_slice(&24u32.to_ne_bytes());
        truncated[12..16].copy_from_slice(&100u32.to_ne_bytes());
        assert!(Layout::parse(truncated).is_err());
    }

    /// A BTF blob from its types (`btf_type` words and what follows each) and strings.
    fn blob(types: &[u32], strings: &[u8]) -> Vec<u8> {
        let mut b = MAGIC.to_ne_bytes().to_vec();
        b.extend([1, 0]);
        let len = 4 * types.len() as u32;
        for w in [24, 0, len, len, strings.len() as u32].iter().chain(types) {
            b.extend(w.to_ne_bytes());
        }
        b.extend(strings);
        b
    }

    fn info(kind: u32, vlen: u32) -> u32 {
        (kind << 24) | vlen
    }

    // Found by the btf_layout fuzz target: an anonymous member's bit offset plus its own
    // member's overflowed u32 (a panic in a debug build).
    #[test]
    fn refuses_a_member_offset_past_4_gbit() {
        let types = [
            // 1: struct s { union { f at bit 0x20 } at bit 0xffff_fff0 }
            1,
            info(KIND_STRUCT, 1),
            8,
            0,
            2,
            0xffff_fff0,
            // 2: the anonymous union
            0,
            info(KIND_UNION, 1),
            8,
            3,
            0,
            0x20,
        ];
        let layout = Layout::parse(blob(&types, b"\0s\0f\0")).unwrap();
        let err = layout.offset("s", "f").unwrap_err();
        assert!(err.to_string().contains("past 4 Gbit"), "{err}");
    }

    // An anonymous member whose type is its own struct: followed, it recursed until the
    // stack overflowed.
    #[test]
    fn refuses_an_anonymous_member_that_holds_its_own_struct() {
        let types = [1, info(KIND_STRUCT, 1), 8, 0, 1, 0];
        let layout = Layout::parse(blob(&types, b"\0s\0f\0")).unwrap();
        let err = layout.offset("s", "f").unwrap_err();
        assert!(err.to_string().contains("too deep"), "{err}");
    }

    // Two offsets that each fit in u16 but not their sum (`net_device.nd_net` +
    // `possible_net_t.net`): added unchecked, a panic in a debug build, a wrapped offset
    // the drop program would read at in a release one.
    #[test]
    fn refuses_a_nested_member_past_64_kib() {
        let strings = b"\0net_device\0nd_net\0possible_net_t\0net\0";
        let types = [
            1,
            info(KIND_STRUCT, 1),
            0x1_0000,
            12,
            0,
            0xfff0 * 8,
            19,
            info(KIND_STRUCT, 1),
            8,
            34,
            0,
            0x20 * 8,
        ];
        let layout = Layout::parse(blob(&types, strings)).unwrap();
        assert_eq!(layout.offset("net_device", "nd_net").unwrap(), 0xfff0);
        let err = super::super::dev_nd_net(&layout).unwrap_err();
        assert!(err.to_string().contains("64 KiB"), "{err}");
    }

    /// `strukt.field` by `btf-rs`, through anonymous members and typedefs.
    fn btf_rs_offset(btf: &btf_rs::Btf, strukt: &str, field: &str) -> u16 {
        fn find(btf: &btf_rs::Btf, s: &btf_rs::Struct, field: &str, base: u32) -> Option<u32> {
            for m in &s.members {
                let name = btf.resolve_name(m).unwrap_or_default();
                let bits = base + m.bit_offset();
                if name == field {
                    return Some(bits);
                }
                if name.is_empty() {
                    if let Ok(btf_rs::Type::Struct(i) | btf_rs::Type::Union(i)) =
                        btf.resolve_chained_type(m)
                    {
                        if let Some(found) = find(btf, &i, field, bits) {
                            return Some(found);
                        }
                    }
                }
            }
            None
        }
        for t in btf.resolve_types_by_name(strukt).unwrap() {
            let t = match t {
                btf_rs::Type::Typedef(td) => btf.resolve_chained_type(&td).unwrap(),
                other => other,
            };
            if let btf_rs::Type::Struct(s) = t {
                if let Some(bits) = find(btf, &s, field, 0) {
                    return (bits / 8) as u16;
                }
            }
        }
        panic!("btf-rs finds no {strukt}.{field}");
    }
}
