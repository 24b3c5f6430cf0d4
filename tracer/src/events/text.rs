//! How MACs, TCP flags and protocol numbers are written in output.
use super::model::Mac;

pub fn fmt_mac(mac: &Mac) -> String {
    MacText::new(mac).as_str().to_string()
}

/// A MAC as `02:00:00:00:00:0b`, formatted on the stack: the JSON output writes one or two
/// per record and allocates nothing for them.
pub struct MacText([u8; 17]);

impl MacText {
    pub fn new(mac: &Mac) -> MacText {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut t = [b':'; 17];
        for (i, b) in mac.iter().enumerate() {
            t[3 * i] = HEX[usize::from(b >> 4)];
            t[3 * i + 1] = HEX[usize::from(b & 0xf)];
        }
        MacText(t)
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits and colons")
    }
}

/// TCP flags in tcpdump's order, e.g. "SYN,ACK".
pub fn fmt_tcp_flags(flags: u8) -> String {
    FlagsText::new(flags).as_str().to_string()
}

/// TCP flags as `SYN,ACK` (empty when none), formatted on the stack.
pub struct FlagsText {
    text: [u8; 31],
    len: usize,
}

impl FlagsText {
    pub fn new(flags: u8) -> FlagsText {
        const NAMES: [(u8, &[u8; 3]); 8] = [
            (0x02, b"SYN"),
            (0x10, b"ACK"),
            (0x01, b"FIN"),
            (0x04, b"RST"),
            (0x08, b"PSH"),
            (0x20, b"URG"),
            (0x40, b"ECE"),
            (0x80, b"CWR"),
        ];
        let mut t = FlagsText {
            text: [b','; 31],
            len: 0,
        };
        for (bit, name) in NAMES {
            if flags & bit != 0 {
                let at = if t.len == 0 { 0 } else { t.len + 1 };
                t.text[at..at + 3].copy_from_slice(name);
                t.len = at + 3;
            }
        }
        t
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.text[..self.len]).expect("ASCII names and commas")
    }
}

pub fn proto_name(proto: u8) -> &'static str {
    match proto {
        tracer_common::PROTO_TCP => "tcp",
        tracer_common::PROTO_UDP => "udp",
        tracer_common::PROTO_ICMP => "icmp",
        tracer_common::PROTO_ICMPV6 => "icmpv6",
        _ => "ip",
    }
}
