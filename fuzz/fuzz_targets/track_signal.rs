//! cargo-fuzz target `track_signal`; the body is [`relay_fuzz::track_signal::body`].
//!
//! Outside `cargo fuzz` this builds as a replayer of corpus files.
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| relay_fuzz::track_signal::body(data));

#[cfg(not(fuzzing))]
fn main() {
    relay_fuzz::replay_main("track_signal", relay_fuzz::track_signal::body);
}
