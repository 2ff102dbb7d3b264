//! Interop with ion-sfu's Go relay: our `relay_proto::Peer` on a real
//! loopback socket against `relay-go-peer` (pion/webrtc 3.1.56, ORTC, ion-sfu's
//! relay behaviour; see `tests/interop/README.md`).
//!
//! The tests need the Go peer, so they are ignored by a plain `cargo test`.
//! Run them (serially; each starts its own Go process) with:
//!
//! ```sh
//! bash tests/interop/build.sh
//! cargo test -p relay-tests --test interop -- --ignored --test-threads=1 --nocapture
//! ```
//!
//! Each test prints one `interop[...]` line per check with the counts of
//! what crossed, per kind.

mod harness;

mod channels;
mod close;
mod connect;
mod messaging;
mod tracks;
