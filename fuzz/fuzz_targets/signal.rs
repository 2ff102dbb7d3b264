//! cargo-fuzz target `signal`; the body is [`relay_fuzz::signal::body`].
//!
//! Outside `cargo fuzz` this builds as a replayer of corpus files.
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| relay_fuzz::signal::body(data));

#[cfg(not(fuzzing))]
fn main() {
    relay_fuzz::replay_main("signal", relay_fuzz::signal::body);
}
