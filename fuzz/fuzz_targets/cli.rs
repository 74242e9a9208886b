#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    irnn_fuzz::cli(data);
});
