//! `tracer discover --json`'s lines: one `netns` line per namespace listed, then one
//! `summary`.
//!
//! ```
//! use tracer_records::discover::DiscoverLine;
//! let l: DiscoverLine = serde_json::from_str(
//!     r#"{"frontends":2,"message":"m","namespaces":9,"other":1,"proxies":1,"targets":5,"type":"summary"}"#,
//! )
//! .unwrap();
//! assert!(matches!(l, DiscoverLine::Summary(s) if s.targets == 5));
//! ```
use std::{borrow::Cow, net::IpAddr};

use serde::{Deserialize, Serialize};

/// A line of `tracer discover --json`, by its `"type"`.
// A handful of lines per run: boxing the namespace would only cost readers a deref.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DiscoverLine<'a> {
    Netns(Namespace<'a>),
    Summary(Summary<'a>),
}

/// One network namespace: where it was found, who lives in it, the Meridio role its
/// interfaces and VIPs give it. Absent values are written as `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Namespace<'a> {
    /// `proxy`, `frontend`, `target` or `other`.
    pub role: Cow<'a, str>,
    pub name: Cow<'a, str>,
    /// The file it was read through: a netns file when there is one, else
    /// `/proc/<pid>/ns/net`.
    pub path: Cow<'a, str>,
    pub inode: u64,
    /// Every netns file naming it.
    pub files: Vec<Cow<'a, str>>,
    /// The first few processes in it, lowest first; `pid_count` counts them all.
    pub pids: Vec<u32>,
    pub pid_count: u64,
    /// The node's own namespace.
    pub host: bool,
    /// `namespace/name` of its pod, from crictl.
    pub pod: Option<Cow<'a, str>>,
    pub pod_uid: Option<Cow<'a, str>>,
    /// The hostname of a containerised process in it (a pod's name).
    pub hostname: Option<Cow<'a, str>>,
    pub vips: Vec<IpAddr>,
    pub interfaces: Vec<Interface<'a>>,
    pub note: Option<Cow<'a, str>>,
    /// Why the namespace could not be read (it is then `other`).
    pub error: Option<Cow<'a, str>>,
}

/// An interface that gave the namespace its role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interface<'a> {
    pub name: Cow<'a, str>,
    /// `bridge`, `port`, `external`, `conduit` or `vip`.
    pub kind: Cow<'a, str>,
}

/// The last line: how many namespaces of each role, and the sentence the table ends with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary<'a> {
    pub namespaces: u64,
    pub proxies: u64,
    pub frontends: u64,
    pub targets: u64,
    pub other: u64,
    pub message: Cow<'a, str>,
}
