#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plaza_proto::fuzzing::event(data));
