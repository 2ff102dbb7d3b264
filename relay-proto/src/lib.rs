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
//! 3. Loop:
//!    1. handle every [`Peer::poll_event`] ([`Event::Ready`] first, then
//!       requests, replies, channels; [`Event::Closed`] last), calling
//!       [`Peer::emit`], [`Peer::request`], [`Peer::reply`] and the rest as
//!       you like;
//!    2. send every [`Peer::poll_transmit`] datagram from its `source`
//!       (this includes what the calls of step 1 queued);
//!    3. wait for a datagram or until [`Peer::poll_timeout`], whichever
//!       comes first, and feed it with [`Peer::handle_datagram`] or
//!       [`Peer::handle_timeout`].
//! 4. Calls made from elsewhere (another part of your loop) also queue
//!    transmits: run steps 1 and 2 after them before waiting again.
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
//!     while let Some(event) = peer.poll_event() {
//!         match event {
//!             Event::Ready => {
//!                 let _id = peer.request(Instant::now(), "hello", Some("hi".into()), None)?;
//!             }
//!             Event::Reply { payload, .. } => println!("reply: {payload:?}"),
//!             Event::Request(req) => peer.reply(Instant::now(), req.id, req.payload)?,
//!             Event::Closed(reason) => return Ok(println!("closed: {reason}")),
//!             _ => {}
//!         }
//!     }
//!     while let Some(t) = peer.poll_transmit() {
//!         socket.send_to(&t.contents, t.destination)?;
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
//! - a track signal for each added track ([`wire::TrackSignal`], A.4).
//!
//! Toward a base (Go) peer no envelope over 65,535 bytes is ever sent: it is
//! refused with [`Error::MessageTooLarge`]. Between two of our peers the
//! limit is the remote's announced maximum (default 1 MiB).
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
