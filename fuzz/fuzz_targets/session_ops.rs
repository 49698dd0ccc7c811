#![no_main]
//! Fuzz target `session_ops`: see `clawnode_fuzz_check::check_session_ops`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    clawnode_fuzz_check::check_session_ops(data);
});
