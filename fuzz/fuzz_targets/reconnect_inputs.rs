#![no_main]
//! Fuzz target `reconnect_inputs`: see `clawnode_fuzz_check::check_reconnect_inputs`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    clawnode_fuzz_check::check_reconnect_inputs(data);
});
