//! A tracepoint format file through the fib offsets and drop-reason parsers.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tracer::fuzzing::tracefs_format(data));
