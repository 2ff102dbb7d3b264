//! Changes to str0m's `Rtc`, as values. str0m's one rule is that every
//! change to an `Rtc` is followed by a full drain of its output before the
//! next; the sub-machines (tracks, channels) describe what they need done
//! as [`RtcOp`]s, and the peer applies them one at a time, draining after
//! each (`Peer::drain`).

use std::net::SocketAddr;

use str0m::channel::ChannelId as RtcChannelId;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid, Rid};

use crate::event::ChannelId;

/// One change to the `Rtc`.
#[derive(Debug)]
pub(crate) enum RtcOp {
    /// A media (one per track) before its streams.
    DeclareMedia { mid: Mid, kind: MediaKind },
    /// A stream we send on a declared media.
    DeclareTx {
        ssrc: u32,
        rtx: Option<u32>,
        mid: Mid,
        rid: Option<Rid>,
    },
    /// A stream we receive on a declared media; `nack` when retransmissions
    /// can be asked for.
    ExpectRx {
        ssrc: u32,
        rtx: Option<u32>,
        mid: Mid,
        rid: Option<Rid>,
        nack: bool,
    },
    /// A track's media and its streams go.
    RemoveMedia(Mid),
    /// A keyframe request on one received stream.
    KeyframeRequest {
        ssrc: u32,
        kind: KeyframeRequestKind,
    },
    /// Opens one of the application's channels (in band).
    OpenChannel(ChannelId),
    /// Closes a channel.
    CloseChannel(RtcChannelId),
    /// Sets when str0m reports room in a channel's send buffer.
    ChannelThreshold { channel: RtcChannelId, bytes: usize },
    /// A datagram kept from before the `Rtc` was rebuilt.
    Receive {
        source: SocketAddr,
        destination: SocketAddr,
        data: Vec<u8>,
    },
    /// Closes the connection (RTCP BYE, SCTP shutdown, DTLS close_notify).
    Close,
}
