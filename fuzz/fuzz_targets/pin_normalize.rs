#![no_main]
//! Fuzz target `pin_normalize`: see `clawnode_fuzz_check::check_pin_normalize`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    clawnode_fuzz_check::check_pin_normalize(data);
});
