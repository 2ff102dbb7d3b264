//! `relay-smol`: relay peers over async-io UDP sockets and timers, for
//! smol and any executor; no tokio anywhere in its dependencies.
//!
//! This is [`relay_async`] on the smol runtime: [`Peer`] and [`Endpoint`]
//! are its peer and endpoint on [`Smol`], everything else is re-exported as
//! it is. The guide (the loop, tracks, sockets, what happens when the
//! application falls behind) is in [`relay_async`]'s documentation.
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
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[doc(no_inline)]
pub use relay_async::*;

/// A relay peer driven by its own smol task (see [`relay_async::Peer`]).
pub type Peer = relay_async::Peer<Smol>;

/// Sockets many peers share, on smol (see [`relay_async::Endpoint`]).
pub type Endpoint = relay_async::Endpoint<Smol>;

/// The peers a server keeps, to close together (see [`relay_async::PeerSet`]).
pub type PeerSet = relay_async::PeerSet<Smol>;
