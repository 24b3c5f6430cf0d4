//! `--pcap FILE`: a pcapng file beside the live view, for Wireshark. One Enhanced Packet
//! Block per hop record the live view prints (the frame's first bytes as the TC program
//! copied them, its length at the hook kept), one Interface Description Block per traced
//! (pod, interface), named `pod/interface`, and on each packet a comment with what the
//! tracer knows: flow, direction relative to the VIP, and on the routed hop the decision.
//! How the file is opened and rotated is [`file`]'s.
mod file;

use std::{
    borrow::Cow,
    collections::HashMap,
    fs::File,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result};
use pcap_file::{
    pcapng::{
        blocks::{
            enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption},
            interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
        },
        PcapNgWriter,
    },
    DataLink,
};

use file::Counted;
pub use file::Limits;

use super::text::{decision_text, flow_title};
use crate::{
    correlate::flows::{Hop, PathDir},
    events::fmt_mac,
    output::stamp::Stamp,
};

type Writer = PcapNgWriter<Counted<BufWriter<File>>>;

pub struct Pcap {
    writer: Writer,
    path: PathBuf,
    limits: Limits,
    /// (pod label, interface name) -> interface id in the file.
    ifaces: HashMap<(String, String), u32>,
    snap_len: u32,
    stamp: Stamp,
    /// Set after the first write error (disk full, ...): said once, then no more writes.
    failed: bool,
}

impl Pcap {
    pub fn create(path: &Path, snap_len: u32, limits: Limits, stamp: Stamp) -> Result<Pcap> {
        Ok(Pcap {
            writer: open(path, limits.overwrite)?,
            path: path.to_owned(),
            limits,
            ifaces: HashMap::new(),
            snap_len,
            stamp,
            failed: false,
        })
    }

    /// Writes the hop's packet; the first packet of an interface adds its description.
    pub fn hop(&mut self, h: &Hop) {
        if self.failed {
            return;
        }
        if let Err(e) = self.write(h) {
            log::warn!("the pcap file is incomplete: writing it failed: {e}");
            self.failed = true;
            return;
        }
        if self.writer.get_ref().bytes >= self.limits.max_bytes {
            if let Err(e) = self.rotate() {
                log::warn!("the pcap file stops here: rotating it failed: {e:#}");
                self.failed = true;
            }
        }
    }

    /// The full file becomes FILE.1 and a new FILE starts, with its own section and
    /// interface descriptions (a reader of either file needs them).
    fn rotate(&mut self) -> Result<()> {
        self.writer.get_mut().flush()?;
        std::fs::rename(&self.path, file::rotated(&self.path))?;
        self.writer = open(&self.path, false)?;
        self.ifaces.clear();
        Ok(())
    }

    fn write(&mut self, h: &Hop) -> Result<(), pcap_file::PcapError> {
        let key = (h.netns.clone(), h.ifname.clone());
        let id = match self.ifaces.get(&key) {
            Some(id) => *id,
            None => {
                let id = self.ifaces.len() as u32;
                self.writer.write_pcapng_block(InterfaceDescriptionBlock {
                    linktype: DataLink::ETHERNET,
                    snaplen: self.snap_len,
                    options: vec![
                        InterfaceDescriptionOption::IfName(Cow::Owned(format!(
                            "{}/{}",
                            h.netns, h.ifname
                        ))),
                        InterfaceDescriptionOption::IfDescription(Cow::Owned(format!(
                            "{} {} in {}",
                            h.role.as_str(),
                            h.netns,
                            self.stamp.node
                        ))),
                        // Nanoseconds, as the kernel's timestamps.
                        InterfaceDescriptionOption::IfTsResol(9),
                    ],
                })?;
                self.ifaces.insert(key, id);
                id
            }
        };
        let (data, wire_len) = match &h.packet.snap {
            Some(s) => (s.bytes.as_slice(), s.wire_len),
            None => (&[][..], 0),
        };
        let wall = u64::try_from(self.stamp.wall_ns(h.packet.ts_ns)).unwrap_or(0);
        self.writer.write_pcapng_block(EnhancedPacketBlock {
            interface_id: id,
            timestamp: Duration::from_nanos(wall),
            original_len: wire_len.max(data.len() as u32),
            data: Cow::Borrowed(data),
            options: vec![EnhancedPacketOption::Comment(Cow::Owned(comment(h)))],
        })?;
        Ok(())
    }

    pub fn flush(&mut self) {
        if !self.failed {
            let _ = self.writer.get_mut().flush();
        }
    }
}

/// A new pcapng file at `path` (see [`file::create`]), its section header written.
fn open(path: &Path, overwrite: bool) -> Result<Writer> {
    let file = file::create(path, overwrite)?;
    let out = Counted {
        inner: BufWriter::with_capacity(1 << 16, file),
        bytes: 0,
    };
    PcapNgWriter::new(out).with_context(|| format!("cannot write the pcap file {}", path.display()))
}

/// What the tracer knows about the hop, on one line: "flow #1 tcp 169.254.100.150:35000
/// <-> 20.0.0.1:4000; from VIP; proxy-a bridge0 egress; next-hop 172.16.0.5 (mac);
/// decision: rule ... -> table 1; hash ... -> predicted ..., actual ...".
pub fn comment(h: &Hop) -> String {
    let path = match h.path {
        PathDir::Ingress => "to VIP",
        PathDir::Egress => "from VIP",
    };
    let mut c = format!(
        "flow #{} {}; {path}; {} {} {} {}",
        h.flow_id,
        flow_title(&h.flow),
        h.role.as_str(),
        h.netns,
        h.ifname,
        h.packet.dir.as_str()
    );
    if let Some(f) = h.packet.frag {
        c += &format!(
            "; fragment id {:#x} offset {}{}{}",
            f.id,
            f.offset,
            if f.more { " more" } else { "" },
            if f.orphan { " orphan" } else { "" }
        );
    }
    if let Some(n) = h.nexthop {
        c += &format!("; next-hop {n} ({})", fmt_mac(&h.packet.eth_dst));
    } else if h.nexthop_unknown {
        c += &format!(
            "; next-hop unknown (no neighbour entry for {})",
            fmt_mac(&h.packet.eth_dst)
        );
    }
    if let Some(d) = &h.decision {
        c += "; ";
        c += &decision_text(d);
    }
    c
}
