//! Byte offsets of kernel struct members, from the running kernel's BTF
//! (/sys/kernel/btf/vmlinux, parsed with the `btf-rs` crate).
//!
//! The drop program reads `sk_buff`, `net_device` and `net` directly; their layouts change
//! between kernels and configs, so the offsets are looked up at start-up, never compiled in.
use anyhow::{bail, Context, Result};
use btf_rs::{Btf, Type};

pub struct Layout {
    btf: Btf,
}

impl Layout {
    pub fn from_sys_fs() -> Result<Layout> {
        let btf = Btf::from_file("/sys/kernel/btf/vmlinux")
            .context("cannot read the kernel BTF at /sys/kernel/btf/vmlinux")?;
        Ok(Layout { btf })
    }

    /// Offset in bytes of `strukt.field`, looking through anonymous structs and unions
    /// (members such as `sk_buff.network_header` sit inside `struct_group`s).
    pub fn offset(&self, strukt: &str, field: &str) -> Result<u16> {
        let types = self
            .btf
            .resolve_types_by_name(strukt)
            .with_context(|| format!("struct {strukt} not in the kernel BTF"))?;
        for t in types {
            // `possible_net_t` and friends are typedefs of anonymous structs.
            let t = match t {
                Type::Typedef(td) => self.btf.resolve_chained_type(&td)?,
                other => other,
            };
            if let Type::Struct(s) = t {
                if let Some(bits) = self.find(&s, field, 0)? {
                    if bits % 8 != 0 {
                        bail!("{strukt}.{field} is a bitfield");
                    }
                    return u16::try_from(bits / 8)
                        .with_context(|| format!("{strukt}.{field} is too far into the struct"));
                }
            }
        }
        bail!("struct {strukt} has no member {field} in this kernel")
    }

    fn find(&self, s: &btf_rs::Struct, field: &str, base_bits: u32) -> Result<Option<u32>> {
        for m in &s.members {
            let name = self.btf.resolve_name(m).unwrap_or_default();
            let bits = base_bits + m.bit_offset();
            if name == field {
                return Ok(Some(bits));
            }
            if name.is_empty() {
                // Anonymous struct or union: its members belong to the outer struct.
                match self.btf.resolve_chained_type(m)? {
                    Type::Struct(inner) | Type::Union(inner) => {
                        if let Some(found) = self.find(&inner, field, bits)? {
                            return Ok(Some(found));
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a machine with kernel BTF, the members the drop program reads are all found.
    #[test]
    fn finds_the_members_the_drop_program_reads() {
        let Ok(layout) = Layout::from_sys_fs() else {
            eprintln!("no kernel BTF here; nothing to check");
            return;
        };
        for (s, f) in [
            ("sk_buff", "head"),
            ("sk_buff", "network_header"),
            ("sk_buff", "transport_header"),
            ("sk_buff", "dev"),
            ("sk_buff", "mark"),
            ("net_device", "ifindex"),
            ("net_device", "nd_net"),
            ("possible_net_t", "net"),
            ("net", "ns"),
            ("ns_common", "inum"),
        ] {
            layout.offset(s, f).unwrap();
        }
        assert!(layout.offset("sk_buff", "no_such_member").is_err());
    }
}
