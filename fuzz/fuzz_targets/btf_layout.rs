//! A BTF blob in place of the kernel's, through the member-offset lookups.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tracer::fuzzing::btf_layout(data));
