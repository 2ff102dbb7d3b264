//! What a peer reports to its application.

use bytes::Bytes;

use crate::error::ChannelError;
use crate::media::{
    HeaderExtension, KeyframeKind, RtpIn, SenderReport, TrackCodec, TrackId, TrackMeta,
};

/// Id of a request this side sent; its outcome arrives as
/// [`Event::Reply`] or [`Event::RequestFailed`].
///
/// It is the envelope id on the wire (a random u64, as in ion-sfu).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[must_use = "the outcome of a request is reported under this id"]
pub struct RequestId(pub u64);

/// Id of a request (or emit) from the remote, to answer with
/// [`Peer::reply`](crate::Peer::reply).
///
/// It is the remote's envelope id on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InboundRequestId(pub u64);

/// Id of a data channel on one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[must_use = "a data channel is written and reported under this id"]
pub struct ChannelId(pub u64);

/// A message from the remote that is not a reply: an emit or a request.
///
/// The wire does not tell them apart; answer with
/// [`Peer::reply`](crate::Peer::reply) when the remote expects a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InboundRequest {
    /// Its id; pass it to [`Peer::reply`](crate::Peer::reply).
    pub id: InboundRequestId,
    /// The event name.
    pub event: String,
    /// The payload, `None` when the wire carried `null`.
    pub payload: Option<Bytes>,
}

/// Why a request ended without a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// No reply within the request's timeout.
    #[error("request timed out")]
    TimedOut,
    /// The peer closed first.
    #[error("peer closed")]
    Closed,
    /// The application withdrew it ([`Peer::cancel_request`](crate::Peer::cancel_request)).
    #[error("request cancelled")]
    Cancelled,
}

/// Why a peer closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// [`Peer::close`](crate::Peer::close) was called on this side.
    #[error("closed here")]
    Local,
    /// The remote closed the connection (DTLS close_notify or SCTP shutdown).
    #[error("closed by remote")]
    Remote,
    /// ICE stayed disconnected longer than the configured grace.
    #[error("remote unreachable")]
    Unreachable,
    /// The signalling channel did not open within the connect timeout.
    #[error("not ready within the connect timeout")]
    ConnectTimeout,
    /// The remote's certificate does not match the fingerprint it signalled.
    #[error("DTLS fingerprint mismatch")]
    FingerprintMismatch,
    /// DTLS failed (handshake alert, role mismatch, ...).
    #[error("DTLS failure: {0}")]
    Dtls(String),
    /// The WebRTC stack failed in another way.
    #[error("transport failure: {0}")]
    Transport(String),
}

/// Something that happened on a peer, pulled with
/// [`Peer::poll_event`](crate::Peer::poll_event).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// The signalling channel is open on this side. Nothing inbound is
    /// reported before this.
    Ready,
    /// The remote sent an emit or a request.
    Request(InboundRequest),
    /// A reply to one of our requests.
    Reply {
        /// The request it answers.
        id: RequestId,
        /// Its payload.
        payload: Option<Bytes>,
    },
    /// One of our requests ended without a reply.
    RequestFailed {
        /// The request.
        id: RequestId,
        /// Why.
        reason: RequestError,
    },
    /// A data channel opened, ours or the remote's.
    ChannelOpen {
        /// The channel.
        id: ChannelId,
        /// Its label.
        label: String,
        /// `true` when the remote opened it.
        remote: bool,
    },
    /// A message on a data channel.
    ChannelData {
        /// The channel.
        id: ChannelId,
        /// Binary (`true`) or text PPID.
        binary: bool,
        /// The message.
        data: Bytes,
    },
    /// A channel whose send buffer was full has room again.
    ChannelWritable(ChannelId),
    /// A data channel closed.
    ChannelClosed(ChannelId),
    /// A data channel failed (for instance an SCTP stream-id collision).
    ChannelError {
        /// The channel.
        id: ChannelId,
        /// What failed.
        error: ChannelError,
    },
    /// The remote accepted a track we added: RTP may flow.
    TrackAdded(TrackId),
    /// A track we added was not accepted (no reply in time, or the peer
    /// closed). The track is gone.
    TrackFailed {
        /// The track.
        track: TrackId,
        /// Why.
        reason: RequestError,
    },
    /// The remote added a track. Comes before any of its RTP.
    Track {
        /// Our id for it.
        track: TrackId,
        /// The remote's stream and track ids.
        meta: TrackMeta,
        /// Its codec, as the origin negotiated it.
        codec: TrackCodec,
        /// Its SSRC on the relay leg (the first layer's with simulcast).
        ssrc: u32,
        /// Simulcast layers by RTP stream id; empty for one encoding.
        layers: Vec<String>,
        /// The origin's header extensions its packets carry.
        header_extensions: Vec<HeaderExtension>,
    },
    /// An RTP packet on a remote track.
    Rtp(RtpIn),
    /// The remote asks for a keyframe on one of our tracks.
    KeyframeRequest {
        /// The track.
        track: TrackId,
        /// The simulcast layer asked for (0 with one encoding).
        layer: u8,
        /// PLI or FIR.
        kind: KeyframeKind,
    },
    /// A sender report for a remote track: the origin's own (carried in
    /// band between our peers, `origin: true`) or the relay leg's RTCP one.
    SenderReport {
        /// The track.
        track: TrackId,
        /// The report.
        report: SenderReport,
        /// `true` for the origin's report carried in band.
        origin: bool,
    },
    /// A remote track had no RTP for [`Config::track_inactive_after`](crate::Config::track_inactive_after).
    TrackInactive(TrackId),
    /// RTP flows again on a track reported inactive.
    TrackActive(TrackId),
    /// The remote removed a track (our track-removal extension). Nothing
    /// more arrives on it.
    TrackRemoved(TrackId),
    /// The path to the remote stopped working (ICE reported it
    /// disconnected) after Ready. The peer stays open: media, messages and
    /// requests resume when the path comes back
    /// ([`Event::PathRestored`]); it closes with
    /// [`CloseReason::Unreachable`] if it stays down for
    /// [`Config::disconnect_grace`](crate::Config::disconnect_grace).
    PathInterrupted,
    /// The path works again after [`Event::PathInterrupted`]: nothing was
    /// reset, tracks and channels keep their ids, and no second `Ready`
    /// fires.
    PathRestored,
    /// The peer closed. Fires exactly once; nothing follows it.
    Closed(CloseReason),
}
