//! Errors of the adapter's calls.

use relay_proto::{CloseReason, RequestError};

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A socket could not be bound or used.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// The core refused the call (bad signal, message too large, queue
    /// full...); see [`relay_proto::Error`].
    #[error(transparent)]
    Peer(#[from] relay_proto::Error),
    /// A request ended without a reply: timed out, cancelled, or the peer
    /// closed first.
    #[error("request failed: {0}")]
    Request(RequestError),
    /// The application's signal function failed; the peer was closed.
    #[error("signal function failed: {0}")]
    Signal(Box<dyn std::error::Error + Send + Sync>),
    /// The peer is closed (or closed before the call could complete), and
    /// why.
    #[error("peer closed: {0}")]
    Closed(CloseReason),
    /// The data channel is closed.
    #[error("data channel closed")]
    ChannelClosed,
    /// A track we added was not accepted by the remote: no reply within
    /// [`relay_proto::Config::track_request_timeout`] (`TimedOut`: the remote
    /// is gone or refused the track). When the peer closes first, the add
    /// fails with [`Error::Closed`] instead.
    #[error("track not accepted by the remote: {0}")]
    TrackFailed(RequestError),
    /// The track was removed (by us, or by the remote for its tracks).
    #[error("track removed")]
    TrackClosed,
    /// The peer's command queue is full
    /// ([`Config::command_queue`](crate::Config::command_queue)); from the
    /// calls that never wait, such as
    /// [`LocalTrack::try_write_rtp`](crate::LocalTrack::try_write_rtp).
    #[error("command queue full")]
    QueueFull,
}
