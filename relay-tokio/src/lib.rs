//! `relay-tokio`: relay peers over tokio UDP sockets and timers.
//!
//! This is [`relay_async`] on the tokio runtime: [`Peer`] and [`Endpoint`]
//! are its peer and endpoint on [`Tokio`], everything else is re-exported as
//! it is. The guide (the loop, tracks, sockets, what happens when the
//! application falls behind) is in [`relay_async`]'s documentation.
//!
//! Call everything from within a tokio runtime (with the `net` and `time`
//! drivers enabled).
//!
//! ```no_run
//! use bytes::Bytes;
//! use relay_tokio::{Config, Peer, PeerMeta};
//!
//! # async fn run() -> Result<(), relay_tokio::Error> {
//! let localhost = vec!["127.0.0.1:0".parse().unwrap()];
//!
//! // The answering side, reached through the application's signal.
//! let answerer_config = Config::bind(localhost.clone());
//! let signal = |_meta: PeerMeta, offer: Vec<u8>| async move {
//!     let (answerer, answer) =
//!         Peer::answer(PeerMeta::new("b", "session"), answerer_config, &offer).await?;
//!     answerer.on_request(|req| {
//!         tokio::spawn(async move {
//!             let payload = req.payload().cloned();
//!             let _ = req.reply(payload).await; // echo
//!         });
//!     });
//!     // Keep it until the offerer closes it.
//!     tokio::spawn(async move { answerer.closed().await });
//!     Ok::<_, relay_tokio::Error>(answer)
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
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[doc(no_inline)]
pub use relay_async::*;

/// A relay peer driven by its own tokio task (see [`relay_async::Peer`]).
pub type Peer = relay_async::Peer<Tokio>;

/// Sockets many peers share, on tokio (see [`relay_async::Endpoint`]).
pub type Endpoint = relay_async::Endpoint<Tokio>;

/// The peers a server keeps, to close together (see [`relay_async::PeerSet`]).
pub type PeerSet = relay_async::PeerSet<Tokio>;
