//! `relay-smol`: relay peers over async-io UDP sockets and timers, for
//! smol and any executor; no tokio anywhere in its dependencies.
//!
//! Wraps the sans-IO [`relay_proto::Peer`]: one task per peer owns the core
//! and is its only driver; the [`Peer`] handle (and the [`DataChannel`] and
//! [`Request`] handles) talk to it over bounded queues. Protocol timers and
//! limits come from the core; this crate only moves bytes and time.
//!
//! Any executor can await the handles; the peers' own tasks run on smol's
//! global executor (`smol::spawn`), and sockets and timers on async-io's
//! reactor.
//!
//! ```no_run
//! use bytes::Bytes;
//! use relay_smol::{Config, Peer, PeerMeta};
//!
//! # async fn run() -> Result<(), relay_smol::Error> {
//! let localhost = vec!["127.0.0.1:0".parse().unwrap()];
//!
//! // The answering side, reached through the application's signal.
//! let answerer_config = Config::bind(localhost.clone());
//! let signal = |_meta: PeerMeta, offer: Vec<u8>| async move {
//!     let (answerer, answer) =
//!         Peer::answer(PeerMeta::new("b", "session"), answerer_config, &offer).await?;
//!     answerer.on_request(|req| {
//!         smol::spawn(async move {
//!             let payload = req.payload().cloned();
//!             let _ = req.reply(payload).await; // echo
//!         })
//!         .detach();
//!     });
//!     // Keep it until the offerer closes it.
//!     smol::spawn(async move { answerer.closed().await }).detach();
//!     Ok::<_, relay_smol::Error>(answer)
//! };
//!
//! // The offering side.
//! let peer = Peer::new(PeerMeta::new("a", "session"), Config::bind(localhost)).await?;
//! peer.offer(signal).await?;
//! let reply = peer.request("echo", Some(Bytes::from_static(b"hi"))).await?;
//! assert_eq!(reply.as_deref(), Some(&b"hi"[..]));
//! peer.close().await;
//! # Ok(()) }
//! ```
//!
//! # What you get
//!
//! - [`Peer::new`] + [`Peer::offer`] (with the application's async signal
//!   function), or [`Peer::answer`]; [`Peer::ready`], [`Peer::closed`].
//! - [`Peer::emit`], [`Peer::request`] (the core's timeout; the request is
//!   withdrawn when its future is dropped), inbound [`Request`]s with
//!   [`Request::reply`].
//! - [`Peer::create_data_channel`] and remote channels as [`DataChannel`].
//! - The same events through callbacks ([`Peer::on_ready`],
//!   [`Peer::on_request`], [`Peer::on_data_channel`], [`Peer::on_close`]) or
//!   as a stream ([`Peer::events`]): one or the other.
//! - [`Endpoint`]: sockets many peers share (see its limit).
//!
//! # Sockets
//!
//! By default a peer binds every local interface address (one socket per
//! address, because the core must know the address a datagram arrived on:
//! str0m drops STUN not addressed to one of its host candidates), IPv4 and
//! IPv6, on ephemeral ports, and announces them as host candidates.
//! [`EndpointConfig`] adds 1:1 NAT addresses and a STUN server's view
//! (server-reflexive candidates).
//!
//! # When the application falls behind
//!
//! The peer's task never waits for the application, so packets and timers
//! keep their pace whatever a consumer does:
//!
//! - events (inbound requests, remote channels) wait in a queue of
//!   [`Config::event_queue`]; when it is full an inbound request or remote
//!   channel is dropped and counted ([`Stats::events_dropped`]) and a warning
//!   is logged. The remote's request then times out on its side (the
//!   protocol has no error reply). `Ready` and `Closed` are never dropped.
//! - replies to our requests are never dropped: each goes straight to the
//!   future that awaits it.
//! - received data-channel messages wait per channel
//!   ([`Config::channel_queue`]); past it they are dropped and counted.
//! - callbacks run in a task of their own, one at a time; a slow callback
//!   only delays the callbacks after it (and fills the event queue).
//!
//! # Tracing
//!
//! Each peer's task runs in a `relay_peer` span with `peer` and `session`
//! fields; state changes are logged at info, each datagram at trace.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod channel;
mod config;
mod driver;
mod endpoint;
mod error;
mod peer;
mod request;
mod rt;

pub use channel::{ChannelMessage, DataChannel};
pub use config::{Config, EndpointConfig};
pub use endpoint::{Endpoint, EndpointStats};
pub use error::Error;
pub use peer::{Event, Events, Peer, Stats};
pub use relay_proto;
pub use relay_proto::{ChannelOptions, CloseReason, PeerMeta, Reliability, RequestError};
pub use request::Request;
