//! cargo-fuzz target `extensions`; the body is [`relay_fuzz::extensions::body`].
//!
//! Outside `cargo fuzz` this builds as a replayer of corpus files.
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| relay_fuzz::extensions::body(data));

#[cfg(not(fuzzing))]
fn main() {
    relay_fuzz::replay_main("extensions", relay_fuzz::extensions::body);
}
