//! `relay-proto`: the sans-IO relay peer.
//!
//! A relay peer is one secure connection between two media servers (SFU to
//! SFU, or SFU to any service), set up with a single out-of-band round trip,
//! and wire-compatible with ion-sfu's Go relay (`PROTOCOL.md` part A), with
//! extensions used only when both ends announce them (part B, see
//! `docs/protocol.md` in the repository).
//!
//! This crate owns no socket, reads no clock, spawns nothing: every input
//! carries the time it happened and every output is pulled. That makes it
//! deterministic (tests run on a simulated network faster than real time),
//! fuzzable, and embeddable in any event loop. `relay-tokio` and `relay-smol`
//! wrap it for those runtimes.
//!
//! # Driving a peer
//!
//! 1. Create a [`Peer`] with [`PeerMeta`] and a [`Config`] naming the local
//!    addresses your socket is bound to (they become the ICE host candidates).
//! 2. Signal, once, out of band:
//!    - offering side: [`Peer::create_offer`], send the bytes (with the meta)
//!      through your signal function, then [`Peer::accept_answer`];
//!    - answering side: [`Peer::accept_offer`] returns the answer bytes.
//! 3. Loop, in this order:
//!    1. send every [`Peer::poll_transmit`] datagram from its `source`;
//!    2. handle every [`Peer::poll_event`] ([`Event::Ready`] first, then
//!       requests, replies, channels; [`Event::Closed`] last), calling
//!       [`Peer::emit`], [`Peer::request`], [`Peer::reply`] and the rest as
//!       you like; if you called anything, go back to 1;
//!    3. wait for a datagram or until [`Peer::poll_timeout`], whichever
//!       comes first, and feed it with [`Peer::handle_datagram`] or
//!       [`Peer::handle_timeout`].
//!
//! What each call may change, so that you know what to poll after it:
//!
//! | call | may add transmits | may add events | may move the timeout |
//! |---|---|---|---|
//! | `handle_datagram`, `handle_timeout` | yes | yes | yes |
//! | `emit`, `request`, `reply` | at the next poll (queued messages go to SCTP together then) | no | yes |
//! | `create_offer`, `accept_answer`, `accept_offer` | yes | yes | yes |
//! | `add_track`, `write_rtp`, `request_keyframe`, `remove_track` | yes | yes | yes |
//! | `create_data_channel`, `channel_write`, `close_data_channel` | yes | yes | yes |
//! | `cancel_request`, `close` | yes | yes (`RequestFailed`, `Closed`) | yes |
//!
//! `poll_transmit`, `poll_event` and `poll_timeout` take `&mut self`:
//! messages that calls queued are handed to SCTP at the first of them, so
//! a burst of calls leaves in as few packets as SCTP bundles them into.
//! Nothing else happens between two inputs: when `poll_transmit` and
//! `poll_event` both return `None`, the peer waits for a datagram or its
//! deadline.
//!
//! ```no_run
//! use std::net::UdpSocket;
//! use std::time::Instant;
//! use relay_proto::{Config, Event, Peer, PeerMeta};
//!
//! # fn signal(offer: &[u8]) -> Vec<u8> { offer.to_vec() } // the application's round trip
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let socket = UdpSocket::bind("127.0.0.1:0")?;
//! let local = socket.local_addr()?;
//! let mut peer = Peer::new(PeerMeta::new("peer-1", "session-1"), Config::new(vec![local]), Instant::now())?;
//!
//! // One round trip through the application's signal function.
//! let offer = peer.create_offer(Instant::now())?;
//! let answer = signal(&offer);
//! peer.accept_answer(Instant::now(), &answer)?;
//!
//! let mut buf = vec![0; 2000];
//! loop {
//!     while let Some(t) = peer.poll_transmit() {
//!         socket.send_to(&t.contents, t.destination)?;
//!     }
//!     let mut called = false;
//!     while let Some(event) = peer.poll_event() {
//!         match event {
//!             Event::Ready => {
//!                 let _id = peer.request(Instant::now(), "hello", Some("hi".into()), None)?;
//!                 called = true;
//!             }
//!             Event::Reply { payload, .. } => println!("reply: {payload:?}"),
//!             Event::Request(req) => {
//!                 peer.reply(Instant::now(), req.id, req.payload)?;
//!                 called = true;
//!             }
//!             Event::Closed(reason) => return Ok(println!("closed: {reason}")),
//!             _ => {}
//!         }
//!     }
//!     if called {
//!         continue; // what the calls queued goes out first
//!     }
//!     let now = Instant::now();
//!     let deadline = peer.poll_timeout().unwrap_or(now + std::time::Duration::from_secs(1));
//!     socket.set_read_timeout(Some(deadline.saturating_duration_since(now).max(std::time::Duration::from_millis(1))))?;
//!     match socket.recv_from(&mut buf) {
//!         Ok((n, from)) => peer.handle_datagram(Instant::now(), from, local, &buf[..n]),
//!         Err(_) => peer.handle_timeout(Instant::now()),
//!     }
//! }
//! # }
//! ```
//!
//! # How the crate is laid out
//!
//! - [`wire`]: every message on the wire, base and extensions, as typed
//!   codecs, and every event, feature and label name. A new message goes
//!   there (codec, round-trip property test, byte-exact wire test in
//!   `tests/tests/wire.rs`, a fuzz body in `fuzz/src/`).
//! - `peer/`: [`Peer`] and its API by topic (connect, messages, channels,
//!   media). It owns str0m's `Rtc` and changes it one mutation at a time,
//!   polling it to its timeout after each, as str0m requires; the one
//!   documented exception is writing the queued signalling messages back to
//!   back, as str0m's own tests do.
//! - The sub-machines it composes, each with its state, its
//!   `handle_*`/`poll_timeout` where it has timers, and no access to str0m
//!   (they describe changes as `RtcOp`s the peer applies): the connection
//!   phase (one enum), signalling (send queue, framing, requests, the
//!   remote's unanswered requests), the application's data channels,
//!   tracks (the codec table, our tracks, the remote's), and liveness.
//! - RTP received: str0m's `RtpPacket` becomes an [`Event::Rtp`] in
//!   `tracks/remote.rs` without a copy (the payload stays str0m's buffer);
//!   RTP sent: `tracks/local.rs` checks the size and writes one packet per
//!   [`Peer::write_rtp`].
//!
//! # Media tracks
//!
//! After [`Event::Ready`], [`Peer::add_track`] signals a track
//! (`ion_relay_request`); [`Event::TrackAdded`] says the remote accepted it,
//! and from then on [`Peer::write_rtp`] forwards the origin's packets
//! unchanged (payload type, sequence number, timestamp, marker, payload).
//! The remote sees [`Event::Track`] first, then one [`Event::Rtp`] per
//! packet; it asks for keyframes with [`Peer::request_keyframe`] (the
//! sender gets [`Event::KeyframeRequest`]). Between two of our peers the
//! extensions add retransmission, the origin's header extensions, simulcast
//! layers ([`Peer::add_track_with`]), immediate removal and the origin's
//! sender reports for lip sync; toward a Go peer the base protocol holds.
//!
//! # What the wire carries
//!
//! - the offer and answer ([`wire::Signal`], PROTOCOL.md A.1);
//! - one JSON envelope per message on the signalling data channel
//!   ([`wire::Envelope`], A.3): emits and requests look the same; a reply
//!   copies the request's id;
//! - a track signal for each added track ([`wire::TrackSignal`], A.4);
//! - between our peers, the extension messages ([`wire::ext`]).
//!
//! Toward a base (Go) peer no envelope over 65,535 bytes is ever sent: it is
//! refused with [`Error::MessageTooLarge`]. Between two of our peers the
//! limit is the remote's announced maximum (default 1 MiB). No RTP datagram
//! over [`Config::max_datagram_size`] (1,460 bytes, what pion reads) is
//! sent: [`Peer::write_rtp`] refuses it with [`Error::PacketTooLarge`].
//!
//! # Liveness
//!
//! A Ready peer that hears nothing from the remote for
//! [`Config::disconnect_grace`] (5 s) closes with
//! [`CloseReason::Unreachable`]: both ends' ICE agents send a check at least
//! every second (ours) or 2 s (pion), so only a dead path is that quiet.
//! Before that, [`Event::PathInterrupted`] says the path stopped answering
//! (a check of ours unanswered for [`Config::path_quiet_after`], 2 s, or
//! ICE disconnected) and [`Event::PathRestored`] that it works again;
//! nothing is reset in between. A remote whose NAT gives it a new address
//! is followed there on its next authenticated check
//! ([`Stats::remote_moves`]).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod candidates;
mod cert;
mod channels;
mod config;
mod crypto;
mod error;
mod event;
mod framing;
mod hdrext;
mod liveness;
mod media;
mod ops;
mod path;
mod peer;
mod phase;
mod requests;
mod router;
mod signalling;
mod stats;
mod time;
mod tracks;
pub mod wire;

pub use cert::Certificate;
pub use channels::{ChannelOptions, Reliability};
pub use config::{AnnouncedAddr, Config, PeerMeta};
pub use error::{ChannelError, Error};
pub use event::{
    ChannelId, CloseReason, Event, InboundRequest, InboundRequestId, RequestError, RequestId,
};
pub use media::{
    HeaderExtension, KeyframeKind, RtpIn, RtpOut, SenderReport, TrackCodec, TrackId, TrackKind,
    TrackMeta, TrackOptions, TrackStats, payload_type_is_carried,
};
pub use peer::{Peer, Transmit};
pub use router::{Router, is_stun, stun_binding_request, stun_mapped_address, ufrag_of};
pub use stats::{Drops, PeerState, Stats};
