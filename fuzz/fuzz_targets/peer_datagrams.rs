//! cargo-fuzz target `peer_datagrams`; the body is [`relay_fuzz::peer_datagrams::body`].
//!
//! Outside `cargo fuzz` this builds as a replayer of corpus files.
#![cfg_attr(fuzzing, no_main)]

#[cfg(fuzzing)]
libfuzzer_sys::fuzz_target!(|data: &[u8]| relay_fuzz::peer_datagrams::body(data));

#[cfg(not(fuzzing))]
fn main() {
    relay_fuzz::replay_main("peer_datagrams", relay_fuzz::peer_datagrams::body);
}
