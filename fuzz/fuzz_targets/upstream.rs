#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| injector::fuzz::upstream(data));
