//! Loading the eBPF object ([`object`]) and attaching its programs, one module per hook
//! family ([`tc`], [`fib`], [`drop`], [`hash`]), and what that needs to know of the running
//! kernel: struct member offsets ([`offsets`], from BTF) and tracepoint record layouts
//! ([`tracefs`]). The program names are `tracer_common::programs`.
//!
//! The same object is loaded more than once, each copy with a job of its own:
//!
//! - one **node object** ([`node::NodeProbes`]) holds the node-wide hooks: the route
//!   lookups, the multipath hash and `kfree_skb`. Those fire for every namespace on the
//!   node, so they are attached once per node, whatever the number of traced namespaces,
//!   and tag what they report with the site (traced namespace) it belongs to;
//! - the **TC programs** ([`tc`]) on the traced namespaces' interfaces: one object for
//!   every site where the kernel lets them find a packet's namespace, else one object per
//!   site. They share the node object's maps (see [`share`]): `LAST_INGRESS` (how a route
//!   lookup finds the traced packet it routes), the one ring buffer `EVENTS`, and the
//!   per-hop counts, which userspace reads from the node object for every site at once.
//!
//! All or nothing for the TC side: if any interface cannot be attached, everything already
//! attached is detached before the error is returned. The node-wide hooks are best effort:
//! without them the tracer still names the next-hop from the wire, and says what it lacks.
//! TCX links (kernel >= 6.6) are file descriptors owned by the objects: they disappear with
//! the process, also when it is killed, so nothing of ours can be left on an interface.
mod drop;
mod fib;
mod hash;
mod node;
mod object;
pub(crate) mod offsets;
mod options;
mod ready;
mod share;
mod tc;
pub(crate) mod tracefs;

pub use node::{NodeProbes, NodeRequest, TracedIface};
pub use options::{AttachMode, FibHook, HashHook, HookFamily, RecordBudget, TcPrograms};
pub use ready::Ready;
pub use tc::{Probes, Request};
