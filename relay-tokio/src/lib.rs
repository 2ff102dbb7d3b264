//! `relay-tokio`: relay peers over tokio UDP sockets and timers.
//!
//! Wraps the sans-IO [`relay_proto::Peer`]: one task per peer owns the core
//! and is its only driver; the [`Peer`] handle (and the [`DataChannel`] and
//! [`Request`] handles) talk to it over bounded queues. Protocol timers and
//! limits come from the core; this crate only moves bytes and time.
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
//!
//! # Tracks
//!
//! ```no_run
//! use bytes::Bytes;
//! use relay_tokio::{KeyframeKind, Peer, RtpOut, TrackCodec, TrackMeta};
//!
//! # async fn run(peer: Peer) -> Result<(), relay_tokio::Error> {
//! // Remote tracks: read their RTP until the remote removes them.
//! peer.on_track(|track| {
//!     tokio::spawn(async move {
//!         let _ = track.request_keyframe(KeyframeKind::Pli).await;
//!         while let Some(packet) = track.read_rtp().await {
//!             println!("{:?}: seq {}", track.meta(), packet.sequence_number);
//!         }
//!     });
//! });
//!
//! // A track of ours: resolves once the remote accepted it.
//! let video = peer
//!     .add_track(TrackMeta::new("stream", "video"), TrackCodec::vp8(96))
//!     .await?;
//! video
//!     .write_rtp(RtpOut::new(96, 1, 3000, true, Bytes::from_static(b"frame")))
//!     .await?;
//! if let Some(request) = video.keyframe_request().await {
//!     println!("the remote wants a keyframe on layer {}", request.layer);
//! }
//! video.remove().await?;
//! # Ok(()) }
//! ```
//!
//! [`LocalTrack::write_rtp`] waits only for room in the peer's command
//! queue, never for the packet to be sent ([`LocalTrack::try_write_rtp`]
//! never waits); packets keep their order. An add fails with
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
//! (server-reflexive candidates).
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
//! - received RTP waits per remote track ([`Config::track_queue`]); past it
//!   packets are dropped and counted ([`Stats::rtp_packets_dropped`]).
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
mod track;

pub use channel::{ChannelMessage, DataChannel};
pub use config::{Config, EndpointConfig};
pub use endpoint::{Endpoint, EndpointStats};
pub use error::Error;
pub use peer::{Event, Events, Peer, Stats};
pub use relay_proto;
pub use relay_proto::{
    ChannelOptions, CloseReason, HeaderExtension, KeyframeKind, PeerMeta, Reliability,
    RequestError, RtpIn, RtpOut, SenderReport, TrackCodec, TrackId, TrackMeta, TrackOptions,
    TrackStats,
};
pub use request::Request;
pub use track::{KeyframeRequest, LocalTrack, RemoteTrack};
