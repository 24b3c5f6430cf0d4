//! The records a picture is drawn from, as a reader holds them: owned (`'static`), read
//! from JSON lines (the record types borrow only when the tracer writes them).
pub use crate::records::Candidate;

pub type Line = crate::records::Line<'static>;
pub type Record = crate::records::Record<'static>;
pub type Distribution = crate::records::Distribution<'static>;
pub type Decision = crate::records::Decision<'static>;
pub type Drop = crate::records::Drop<'static>;
pub type Flow = crate::records::Flow<'static>;
pub type FlowKey = crate::records::FlowKey<'static>;
pub type Hop = crate::records::Hop<'static>;
pub type Route = crate::records::Route<'static>;
pub type Rule = crate::records::Rule<'static>;
