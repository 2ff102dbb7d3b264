//! `relay-async`: relay peers over real UDP sockets and timers, written once
//! against a small [`Runtime`] trait. Most applications use one of its two
//! faces, `relay-tokio` or `relay-smol`, which name the runtime
//! (`relay_tokio::Peer` is [`Peer<Tokio>`](Peer)) and re-export the rest;
//! this is the guide for both.
//!
//! Each peer wraps the sans-IO [`relay_proto::Peer`] in one task of its
//! own that is its only driver: the peer's sockets, its timer and the calls
//! of its handles are polled in one loop, with the time read once per
//! wake-up; datagrams are read and sent in batches (`recvmmsg`, GSO and
//! GRO, through `quinn-udp`); the handles ([`Peer`], [`DataChannel`],
//! [`Request`], [`LocalTrack`], [`RemoteTrack`]) talk to the task over
//! bounded queues. Protocol timers and limits come from the core; this
//! crate only moves bytes and time.
//!
//! ```no_run
//! use bytes::Bytes;
//! use relay_async::{Config, Error, Event, Peer, PeerMeta, Runtime};
//!
//! # async fn run<R: Runtime + Default>() -> Result<(), Error> {
//! let localhost = vec!["127.0.0.1:0".parse().unwrap()];
//!
//! // The signal function: the application's way to reach the remote (HTTP,
//! // gRPC, a bus...). Here the answering side lives in the same process and
//! // echoes one request.
//! let answerer_config = Config::bind(localhost.clone());
//! let (tx, rx) = async_channel::bounded(1);
//! let signal = |_meta: PeerMeta, offer: Vec<u8>| async move {
//!     let (answerer, answer) =
//!         Peer::<R>::answer(PeerMeta::new("b", "session"), answerer_config, &offer).await?;
//!     let _ = tx.try_send(answerer);
//!     Ok::<_, Error>(answer)
//! };
//!
//! let peer = Peer::<R>::new(PeerMeta::new("a", "session"), Config::bind(localhost)).await?;
//! let request = async {
//!     peer.offer(signal).await?; // returns once the peer is ready
//!     peer.request("echo", Some(Bytes::from_static(b"hi"))).await
//! };
//! let answer = async {
//!     let answerer = rx.recv().await.expect("answerer");
//!     let mut events = answerer.events().expect("not taken yet");
//!     while let Some(event) = events.next().await {
//!         if let Event::Request(req) = event {
//!             let payload = req.payload().cloned();
//!             req.reply(payload).await?; // echo
//!         }
//!     }
//!     Ok::<_, Error>(())
//! };
//! let (reply, _) = futures_lite::future::zip(request, answer).await;
//! assert_eq!(reply?.as_deref(), Some(&b"hi"[..]));
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
//! - Media tracks: [`Peer::add_track`] (and [`Peer::add_track_with`] for
//!   simulcast and header extensions) resolves to a [`LocalTrack`] once the
//!   remote accepted it, to write RTP and hear keyframe requests; the
//!   remote's tracks arrive as [`RemoteTrack`]s, to read RTP and ask for
//!   keyframes (see below).
//! - The same events through callbacks ([`Peer::on_ready`],
//!   [`Peer::on_request`], [`Peer::on_data_channel`], [`Peer::on_track`],
//!   [`Peer::on_close`]) or as a stream ([`Peer::events`]): one or the
//!   other.
//! - [`Endpoint`]: sockets many peers share (see its limit).
//! - [`PeerSet`]: the peers a server keeps, to close them all at once when
//!   it shuts down (each remote then learns at once).
//!
//! # Tracks
//!
//! ```no_run
//! use bytes::Bytes;
//! use relay_async::{Error, KeyframeKind, Peer, RemoteTrack, RtpOut, TrackCodec, TrackMeta};
//!
//! // The remote's tracks (from `Peer::on_track` or `Event::Track`): read
//! // their RTP until the remote removes them.
//! async fn read(track: RemoteTrack) {
//!     let _ = track.request_keyframe(KeyframeKind::Pli).await;
//!     while let Some(packet) = track.read_rtp().await {
//!         println!("{:?}: seq {}", track.meta(), packet.sequence_number);
//!     }
//! }
//!
//! // A track of ours: resolves once the remote accepted it.
//! async fn send<R>(peer: Peer<R>) -> Result<(), Error> {
//!     let video = peer
//!         .add_track(TrackMeta::new("stream", "video"), TrackCodec::vp8(96))
//!         .await?;
//!     video
//!         .write_rtp(RtpOut::new(96, 1, 3000, true, Bytes::from_static(b"frame")))
//!         .await?;
//!     if let Some(request) = video.keyframe_request().await {
//!         println!("the remote wants a keyframe on layer {}", request.layer);
//!     }
//!     video.remove().await
//! }
//!
//! // A relay: what one peer receives, another sends on, payloads
//! // untouched and not copied.
//! async fn forward(from: RemoteTrack, to: relay_async::LocalTrack) -> Result<(), Error> {
//!     while let Some(packet) = from.read_rtp().await {
//!         to.write_rtp(RtpOut::forward(&packet)).await?;
//!     }
//!     Ok(())
//! }
//! ```
//!
//! [`LocalTrack::write_rtp`] waits only for room in the peer's command
//! queue, never for the packet to be sent ([`LocalTrack::try_write_rtp`]
//! never waits); packets keep their order. A packet too large for the
//! peer's largest datagram ([`relay_proto::Config::max_datagram_size`],
//! 1,460 bytes) is refused at once with
//! [`relay_proto::Error::PacketTooLarge`]. An add fails with
//! [`Error::TrackFailed`] when the remote does not accept the track within
//! the core's track timeout (2 s), or with [`Error::Closed`]. Dropping a
//! [`LocalTrack`] removes the track. [`RemoteTrack::read_rtp`] returns
//! `None` once the remote removed the track ([`Event::TrackRemoved`]) or the
//! peer closed.
//!
//! # Sockets
//!
//! By default a peer binds every local interface address (one socket per
//! address, because the core must know the address a datagram arrived on:
//! str0m drops STUN not addressed to one of its host candidates), IPv4 and
//! IPv6, on ephemeral ports, and announces them as host candidates.
//! [`EndpointConfig`] adds 1:1 NAT addresses and a STUN server's view
//! (server-reflexive candidates). A peer made with [`Peer::new`] or
//! [`Peer::answer`] reads its own sockets in its own task; peers on an
//! [`Endpoint`] get their datagrams from the endpoint's receive task, in
//! one batch per read.
//!
//! # When the application falls behind
//!
//! The peer's task never waits for the application, so packets and timers
//! keep their pace whatever a consumer does:
//!
//! - events (inbound requests, remote channels and tracks, track changes)
//!   wait in a queue of [`Config::event_queue`]; when it is full the event
//!   is dropped and counted ([`Stats::events_dropped`]) and a warning is
//!   logged. The remote's request then times out on its side (the
//!   protocol has no error reply). `Ready` and `Closed` are never dropped.
//! - replies to our requests are never dropped: each goes straight to the
//!   future that awaits it.
//! - received data-channel messages wait per channel
//!   ([`Config::channel_queue`]); past it they are dropped and counted.
//! - received RTP waits per remote track ([`Config::track_queue`]): one
//!   queue between the socket and [`RemoteTrack::read_rtp`]; past it
//!   packets are dropped and counted ([`RemoteTrack::dropped`],
//!   [`Stats::rtp_packets_dropped`]).
//! - callbacks run in a task of their own, one at a time; a slow callback
//!   only delays the callbacks after it (and fills the event queue).
//!
//! Queues take memory only for what they hold.
//!
//! # Runtimes
//!
//! [`Runtime`] is what the peers need of one: a clock, timers, spawning, and
//! UDP sockets. With the feature `tokio`, [`Tokio`] implements it; with
//! `smol`, [`Smol`] does (async-io and smol's executor; no tokio).
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
mod queue;
mod request;
pub mod runtime;
mod set;
mod socket;
mod track;

pub use channel::{ChannelMessage, DataChannel};
pub use config::{Config, EndpointConfig};
pub use endpoint::{Endpoint, EndpointStats};
pub use error::Error;
pub use peer::{Event, Events, Peer, Stats};
pub use relay_proto;
pub use relay_proto::{
    ChannelOptions, CloseReason, HeaderExtension, InboundRequestId, KeyframeKind, PeerMeta,
    Reliability, RequestError, RtpIn, RtpOut, SenderReport, TrackCodec, TrackId, TrackMeta,
    TrackOptions, TrackStats,
};
pub use request::Request;
pub use runtime::Runtime;
#[cfg(feature = "smol")]
pub use runtime::Smol;
#[cfg(feature = "tokio")]
pub use runtime::Tokio;
pub use set::PeerSet;
pub use track::{KeyframeRequest, LocalTrack, RemoteTrack};
