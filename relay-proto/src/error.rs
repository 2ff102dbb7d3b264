//! Errors returned by the peer's methods.

use crate::wire::DecodeError;

/// What went wrong with a call on a [`Peer`](crate::Peer).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration cannot work (no local address, an unspecified one...).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The offer or answer could not be parsed.
    #[error("bad signal: {0}")]
    BadSignal(#[from] DecodeError),
    /// The offer or answer parsed but lacks what the protocol needs, or
    /// carries something we cannot use.
    #[error("unusable signal: {0}")]
    UnusableSignal(String),
    /// An offer or answer was made or applied at the wrong moment (a second
    /// offer, an answer on the answering side, ...).
    #[error("signal out of order: {0}")]
    SignalState(&'static str),
    /// The peer is closed; nothing more can be sent.
    #[error("peer is closed")]
    Closed,
    /// The envelope would exceed what the remote reads.
    #[error("message of {len} bytes exceeds the remote's limit of {limit} bytes")]
    MessageTooLarge {
        /// Encoded envelope size.
        len: usize,
        /// The remote's limit (65,535 for a base peer).
        limit: usize,
    },
    /// Too many requests await replies ([`Config::max_pending_requests`](crate::Config::max_pending_requests)).
    #[error("too many pending requests (limit {0})")]
    TooManyRequests(usize),
    /// The signalling send queue is full ([`Config::max_send_queue_bytes`](crate::Config::max_send_queue_bytes)).
    #[error("signalling send queue full")]
    SendQueueFull,
    /// `reply` named an inbound request that is unknown, already answered, or
    /// forgotten.
    #[error("no unanswered request with id {0}")]
    UnknownRequest(u64),
    /// A data-channel operation failed.
    #[error("data channel: {0}")]
    Channel(#[from] ChannelError),
    /// No such track (never added, failed, or removed).
    #[error("unknown track")]
    UnknownTrack,
    /// RTP was written for a track the remote has not accepted yet; wait for
    /// [`Event::TrackAdded`](crate::Event::TrackAdded).
    #[error("track not accepted by the remote yet")]
    TrackNotAccepted,
    /// The payload type cannot cross the relay: 64..=95 collide with RTCP
    /// packet types under rtcp-mux, and 128..=255 are not RTP payload types.
    #[error("payload type {0} cannot be relayed (allowed: 0..=63 and 96..=127)")]
    PayloadType(u8),
    /// The codec's MIME type is neither `audio/...` nor `video/...`.
    #[error("MIME type {0:?} is neither audio/ nor video/")]
    MimeType(String),
    /// The RTP packet's datagram would exceed the largest one the peer
    /// sends ([`Config::max_datagram_size`](crate::Config::max_datagram_size));
    /// it was not sent. A source sending smaller packets fixes it (ffmpeg:
    /// `-pkt_size 1200`).
    #[error(
        "RTP packet of {len} bytes on the wire exceeds the largest datagram, {limit} bytes: send smaller packets (ffmpeg: -pkt_size 1200)"
    )]
    PacketTooLarge {
        /// The datagram's size.
        len: usize,
        /// [`Config::max_datagram_size`](crate::Config::max_datagram_size).
        limit: usize,
    },
    /// The track has no such simulcast layer.
    #[error("no simulcast layer {0} on this track")]
    UnknownLayer(u8),
    /// The track needs an extension the remote did not announce.
    #[error("the remote does not announce the {0:?} extension")]
    ExtensionNotNegotiated(&'static str),
    /// Too many header extensions on one track.
    #[error("{0} header extensions on one track; at most 9 cross the relay")]
    TooManyHeaderExtensions(usize),
    /// The underlying WebRTC stack refused an operation.
    #[error("webrtc: {0}")]
    Rtc(String),
}

/// Why a data-channel operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// No such channel (never existed, or closed).
    #[error("unknown channel")]
    Unknown,
    /// The channel is not open yet.
    #[error("channel not open yet")]
    NotOpen,
    /// The send buffer is full; wait for
    /// [`Event::ChannelWritable`](crate::Event::ChannelWritable).
    #[error("send buffer full")]
    Full,
    /// The message exceeds the 64 KiB a data-channel message may carry here.
    #[error("message of {0} bytes exceeds the channel limit")]
    TooLarge(usize),
    /// The channel could not be opened: its SCTP stream id was taken by the
    /// remote at the same moment (a Go peer numbers its channels with no
    /// even/odd split), or the remote refused it.
    #[error("channel could not be opened (stream id collision or refused by the remote)")]
    OpenFailed,
    /// The label is the signalling channel's, which is reserved.
    #[error("label {0:?} is reserved")]
    ReservedLabel(String),
}
