//! cargo-fuzz target `envelope`; the body is [`relay_fuzz::envelope::body`].
//!
//! Outside `cargo fuzz` this builds as a replayer of corpus files.
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| relay_fuzz::envelope::body(data));

#[cfg(not(fuzzing))]
fn main() {
    relay_fuzz::replay_main("envelope", relay_fuzz::envelope::body);
}
