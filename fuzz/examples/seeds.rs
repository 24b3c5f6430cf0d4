//! Writes the seeds of the `decode` and `btf_layout` corpora (the other corpora are files
//! copied from tracefs and the merge test data):
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example seeds -- fuzz/corpus`
//!
//! - `decode`: one record of each kind as the eBPF programs write them (the lab's addresses,
//!   ports and interfaces), a capture record with a real SYN frame;
//! - `btf_layout`: this kernel's /sys/kernel/btf/vmlinux cut down to the structs whose
//!   members the tracer reads (their members kept, named members' types replaced by `int`,
//!   anonymous structs and unions kept whole, recursively): a few KB instead of 5 MB.
use std::{collections::HashMap, fs, path::Path};

use tracer_common::*;

fn bytes<T>(v: &T) -> Vec<u8> {
    // SAFETY: the records are #[repr(C)] plain old data, read whole as bytes.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
        .to_vec()
}

fn v6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

fn records() -> Vec<(&'static str, Vec<u8>)> {
    let syn4 = PacketRecord {
        kind: KIND_PACKET,
        ifindex: 7,
        ts_ns: 12_212_006_196_912,
        src: v4_mapped([169, 254, 100, 150]),
        dst: v4_mapped([20, 0, 0, 1]),
        eth_src: [0x7e, 0xb1, 0x49, 0x3c, 0x62, 0x2c],
        eth_dst: [0x72, 0x03, 0x2c, 0xc1, 0xfa, 0x5f],
        sport: 35981,
        dport: 4000,
        ip_len: 60,
        mark: 0x1001,
        hash: 999_326_635,
        dir: DIR_INGRESS,
        family: AF_INET,
        proto: 6,
        tcp_flags: 0x02,
        site: 1,
        ..Default::default()
    };
    let frag6 = PacketRecord {
        kind: KIND_PACKET,
        ifindex: 3,
        src: v6("2000::1"),
        dst: v6("100:100::150"),
        sport: 4000,
        dport: 35982,
        ip_len: 1280,
        dir: DIR_EGRESS,
        family: AF_INET6,
        proto: 17,
        vlan: 100,
        vlan_tpid: 0x8100,
        vlan_tags: 1,
        frag: FRAG_IS | FRAG_MORE,
        frag_id: 77,
        site: 2,
        ..Default::default()
    };
    // Ethernet + IPv4 + TCP SYN from 169.254.100.150:35981 to 20.0.0.1:4000.
    let frame: Vec<u8> = [
        &[
            0x72, 0x03, 0x2c, 0xc1, 0xfa, 0x5f, 0x7e, 0xb1, 0x49, 0x3c, 0x62, 0x2c, 0x08, 0x00,
        ][..],
        &[
            0x45, 0, 0, 60, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 169, 254, 100, 150, 20, 0, 0, 1,
        ],
        &[
            0x8c, 0x8d, 0x0f, 0xa0, 0, 0, 0, 1, 0, 0, 0, 0, 0xa0, 0x02, 0xfa, 0xf0, 0, 0, 0, 0,
        ],
        &[
            2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
        ],
    ]
    .concat();
    let head = CaptureHead {
        packet: PacketRecord {
            kind: KIND_CAPTURE,
            ..syn4
        },
        wire_len: frame.len() as u32,
        cap_len: frame.len() as u32,
    };
    let mut capture = bytes(&head);
    capture.extend(&frame);
    // The ring reserves SNAP_SMALL bytes of frame: the rest is whatever was there.
    capture.resize(std::mem::size_of::<CaptureHead>() + SNAP_SMALL, 0);
    let mut dev = [0u8; 16];
    dev[..15].copy_from_slice(b"conduit-a.-6496");
    let fib = FibRecord {
        kind: KIND_FIB,
        table: 1,
        ts_ns: 12_212_006_200_000,
        oif: 4,
        iif: 7,
        sport: 35981,
        dport: 4000,
        src: v4_mapped([169, 254, 100, 150]),
        dst: v4_mapped([20, 0, 0, 1]),
        gw: v4_mapped([172, 16, 0, 6]),
        dev,
        mark: 0x1001,
        family: AF_INET,
        proto: 6,
        site: 1,
        tie: TIE_INGRESS,
        ..Default::default()
    };
    let hash = HashRecord {
        kind: KIND_HASH,
        hash: 0x5f3a_9c21,
        ts_ns: 12_212_006_199_000,
        src: v6("100:100::150"),
        dst: v6("2000::1"),
        sport: 35982,
        dport: 4000,
        proto: 6,
        family: AF_INET6,
        hook: HASH_HOOK_FEXIT,
        site: 1,
        ..Default::default()
    };
    let drop = DropRecord {
        kind: KIND_DROP,
        ifindex: 7,
        ts_ns: 12_212_006_300_000,
        location: 0xffff_ffff_8a12_3456,
        src: v4_mapped([169, 254, 100, 150]),
        dst: v4_mapped([20, 0, 0, 1]),
        reason: 2,
        sport: 35981,
        dport: 4000,
        family: AF_INET,
        proto: 6,
        site: 1,
        ..Default::default()
    };
    vec![
        ("packet-v4-syn", bytes(&syn4)),
        ("packet-v6-fragment-vlan", bytes(&frag6)),
        ("capture-v4-syn", capture),
        ("fib-v4", bytes(&fib)),
        ("hash-v6-fexit", bytes(&hash)),
        ("drop-v4", bytes(&drop)),
    ]
}

/// The structs `bpf::offsets` reads members of.
const STRUCTS: &[&str] = &[
    "sk_buff",
    "net_device",
    "possible_net_t",
    "net",
    "ns_common",
    "flowi4",
    "flowi6",
    "flowi_common",
    "fib_nh_common",
    "fib6_result",
    "fib6_nh",
    "fib6_table",
];

struct Btf {
    types: Vec<u8>,
    strings: Vec<u8>,
    starts: Vec<usize>,
}

impl Btf {
    fn read(data: &[u8]) -> Btf {
        let u32_at = |off: usize| u32::from_ne_bytes(data[off..off + 4].try_into().unwrap());
        let hdr = u32_at(4) as usize;
        let types = data[hdr + u32_at(8) as usize..][..u32_at(12) as usize].to_vec();
        let strings = data[hdr + u32_at(16) as usize..][..u32_at(20) as usize].to_vec();
        let mut starts = Vec::new();
        let mut at = 0;
        while at < types.len() {
            starts.push(at);
            let info = u32::from_ne_bytes(types[at + 4..at + 8].try_into().unwrap());
            let vlen = (info & 0xffff) as usize;
            at += 12
                + match (info >> 24) & 0x1f {
                    1 | 14 | 17 => 4,
                    3 => 12,
                    4 | 5 | 15 | 19 => 12 * vlen,
                    6 | 13 => 8 * vlen,
                    _ => 0,
                };
        }
        Btf {
            types,
            strings,
            starts,
        }
    }

    fn word(&self, id: u32, i: usize) -> u32 {
        let at = self.starts[id as usize - 1] + 4 * i;
        u32::from_ne_bytes(self.types[at..at + 4].try_into().unwrap())
    }

    fn name(&self, off: u32) -> &str {
        let tail = &self.strings[off as usize..];
        std::str::from_utf8(&tail[..tail.iter().position(|b| *b == 0).unwrap()]).unwrap()
    }

    fn kind(&self, id: u32) -> u32 {
        (self.word(id, 1) >> 24) & 0x1f
    }
}

/// The cut-down BTF being written.
struct Out {
    types: Vec<u8>,
    strings: Vec<u8>,
    interned: HashMap<String, u32>,
    next_id: u32,
}

impl Out {
    fn intern(&mut self, s: &str) -> u32 {
        if s.is_empty() {
            return 0;
        }
        if let Some(off) = self.interned.get(s) {
            return *off;
        }
        let off = self.strings.len() as u32;
        self.strings.extend(s.as_bytes());
        self.strings.push(0);
        self.interned.insert(s.to_string(), off);
        off
    }

    fn words(&mut self, words: &[u32]) {
        for w in words {
            self.types.extend(w.to_ne_bytes());
        }
    }

    /// Copies type `id` (a struct or union, through typedefs and qualifiers for anonymous
    /// members) and returns its new id. Id 1 is `int`.
    fn copy(&mut self, btf: &Btf, mut id: u32) -> u32 {
        while matches!(btf.kind(id), 8..=11 | 18) {
            id = btf.word(id, 2);
        }
        let kind = btf.kind(id);
        if !matches!(kind, 4 | 5) {
            return 1;
        }
        let info = btf.word(id, 1);
        let vlen = (info & 0xffff) as usize;
        let mut members = Vec::new();
        for m in 0..vlen {
            let (name, ty, off) = (
                btf.word(id, 3 + 3 * m),
                btf.word(id, 4 + 3 * m),
                btf.word(id, 5 + 3 * m),
            );
            let name = btf.name(name).to_string();
            let ty = if name.is_empty() {
                self.copy(btf, ty)
            } else {
                1
            };
            members.push((name, ty, off));
        }
        let name = self.intern(btf.name(btf.word(id, 0)));
        self.words(&[name, info, btf.word(id, 2)]);
        for (n, ty, off) in members {
            let n = self.intern(&n);
            self.words(&[n, ty, off]);
        }
        self.next_id += 1;
        self.next_id - 1
    }

    fn bytes(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(0xeb9fu16.to_ne_bytes());
        b.extend([1u8, 0]);
        for w in [
            24,
            0,
            self.types.len() as u32,
            self.types.len() as u32,
            self.strings.len() as u32,
        ] {
            b.extend(w.to_ne_bytes());
        }
        b.extend(&self.types);
        b.extend(&self.strings);
        b
    }
}

fn small_btf(vmlinux: &[u8]) -> Vec<u8> {
    let btf = Btf::read(vmlinux);
    let mut out = Out {
        types: Vec::new(),
        strings: vec![0],
        interned: HashMap::new(),
        next_id: 1,
    };
    // Id 1: int (INT, 4 bytes, signed 32 bits).
    let int = out.intern("int");
    out.words(&[int, 1 << 24, 4, (1 << 24) | 32]);
    out.next_id = 2;
    for want in STRUCTS {
        let id = (1..=btf.starts.len() as u32)
            .find(|&id| matches!(btf.kind(id), 4 | 8) && btf.name(btf.word(id, 0)) == *want)
            .unwrap_or_else(|| panic!("no {want} in this kernel's BTF"));
        if btf.kind(id) == 8 {
            let target = out.copy(&btf, btf.word(id, 2));
            let name = out.intern(want);
            out.words(&[name, 8 << 24, target]);
            out.next_id += 1;
        } else {
            out.copy(&btf, id);
        }
    }
    out.bytes()
}

fn main() {
    let root = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/corpus".into());
    let root = Path::new(&root);
    let write = |target: &str, name: &str, data: &[u8]| {
        let dir = root.join(target);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(name), data).unwrap();
    };
    for (name, data) in records() {
        write("decode", name, &data);
    }
    let vmlinux = fs::read("/sys/kernel/btf/vmlinux").expect("this kernel's BTF");
    write("btf_layout", "vmlinux-members", &small_btf(&vmlinux));
}
