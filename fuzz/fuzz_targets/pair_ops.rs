//! cargo-fuzz target `pair_ops`; the body is [`relay_fuzz::pair_ops::body`].
//!
//! Outside `cargo fuzz` this builds as a replayer of corpus files.
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| relay_fuzz::pair_ops::body(data));

#[cfg(not(fuzzing))]
fn main() {
    relay_fuzz::replay_main("pair_ops", relay_fuzz::pair_ops::body);
}
