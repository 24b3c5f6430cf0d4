//! The loader's choices the command line makes (`--hooks`, `--hash-hook`, `--attach`...).
use tracer_common::BUDGET_ALL;

/// How many packet records the TC programs write per hop (one flow direction on one
/// interface, and on the routed hop one next-hop). Every packet is counted in the kernel
/// whatever the budget; the first packet of each hop and TCP SYN/FIN/RST are always
/// recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordBudget {
    All,
    First(u32),
}

impl RecordBudget {
    pub(super) fn global(self) -> u32 {
        match self {
            RecordBudget::All => BUDGET_ALL,
            RecordBudget::First(n) => n.min(BUDGET_ALL - 1),
        }
    }
}

/// Which hook reads the kernel's multipath hash: the best the kernel allows (fexit, else
/// kretprobe), one of them only (to test each where the kernel has both), or none.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HashHook {
    #[default]
    Auto,
    Fexit,
    Kretprobe,
    None,
}

/// The tracer's hook families, as `--hooks` names them.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookFamily {
    Tc,
    Fib,
    Drop,
    Hash,
}

/// How TC programs are attached: TCX links (kernel >= 6.6; file descriptors that vanish
/// with the process) or netlink `clsact` filters (any kernel; they outlive a killed
/// process, so each start removes the ones an earlier run left).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// TCX where the kernel has it, netlink otherwise.
    Auto,
    Tcx,
    Netlink,
}

/// How often the TC programs are loaded (`--tc-programs`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcPrograms {
    /// Once for every site where the kernel allows it, else once per site.
    Auto,
    /// Once per site.
    PerNamespace,
}

/// How the route lookups are hooked (`--fib-hook`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FibHook {
    /// Raw tracepoints where the kernel allows them, else the perf tracepoints.
    Auto,
    /// Only raw tracepoints (the lookup's arguments, read with offsets from BTF).
    Raw,
    /// Only the perf tracepoints (records the kernel formats, offsets from tracefs).
    Tracepoint,
}
