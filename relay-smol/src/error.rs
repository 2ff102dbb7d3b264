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
}
