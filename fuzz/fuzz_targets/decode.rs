//! One ring-buffer record (the eBPF programs' bytes) through the event decoder.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tracer::fuzzing::decode(data));
