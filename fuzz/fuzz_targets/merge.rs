//! An option byte, then NUL-separated JSON-lines inputs, through the batch and --follow mergers.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tracer::fuzzing::merge(data));
