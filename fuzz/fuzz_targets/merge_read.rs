//! NUL-separated JSON-lines inputs through the merge line reader.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tracer::fuzzing::merge_read(data));
