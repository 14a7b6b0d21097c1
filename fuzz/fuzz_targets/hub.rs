#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| plaza_core::fuzzing::hub(data));
