//! Kernel code addresses to `function+0xoff`, from /proc/kallsyms, loaded on first use.
use std::sync::OnceLock;

static SYMBOLS: OnceLock<Vec<(u64, String)>> = OnceLock::new();

fn load() -> Vec<(u64, String)> {
    let text = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
    let mut syms: Vec<(u64, String)> = text
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let addr = u64::from_str_radix(parts.next()?, 16).ok()?;
            let kind = parts.next()?;
            let name = parts.next()?;
            (addr != 0 && matches!(kind, "t" | "T")).then(|| (addr, name.to_string()))
        })
        .collect();
    syms.sort_unstable();
    syms
}

/// `ip_rcv_finish_core+0x1a2`, or the raw address when kallsyms hides addresses.
pub fn symbolize(addr: u64) -> String {
    let syms = SYMBOLS.get_or_init(load);
    match syms.partition_point(|(a, _)| *a <= addr).checked_sub(1) {
        Some(i) if addr != 0 => format!("{}+{:#x}", syms[i].1, addr - syms[i].0),
        _ => format!("{addr:#x}"),
    }
}
