#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plaza_net::fuzzing::framing(data));
