//! `relay-tokio`: the tokio adapter for `relay-proto`.
//!
//! Not available yet. Until it is, drive [`relay_proto::Peer`] from your own
//! loop: the crate documentation of `relay-proto` shows how, and its
//! `loopback` example is a complete program over blocking UDP sockets.
#![forbid(unsafe_code)]

pub use relay_proto;
