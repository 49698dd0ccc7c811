#![no_main]
//! Fuzz target `frame_parse`: see `clawnode_fuzz_check::check_frame_parse`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    clawnode_fuzz_check::check_frame_parse(data);
});
