//! Requests: an inbound one with its way to reply, and the cancel-on-drop
//! guard of an outbound one.

use std::sync::Arc;

use crate::queue::{TrySendError, Tx};
use bytes::Bytes;
use relay_proto::InboundRequestId;
use tracing::debug;

use crate::driver::{Command, Control};
use crate::error::Error;
use crate::peer::{Shared, call};

/// An emit or a request from the remote (the wire does not tell them
/// apart), with the means to reply.
///
/// Reply with [`Request::reply`], or say no reply is coming with
/// [`Request::ignore`] (for emits). Dropping it without either is counted in
/// [`Stats::requests_unanswered`](crate::Stats::requests_unanswered) and
/// logged at debug level; the remote's request then times out on its side
/// (the protocol has no error reply).
#[must_use = "reply to the request, or ignore() it"]
pub struct Request {
    id: InboundRequestId,
    event: String,
    payload: Option<Bytes>,
    commands: Tx<Command>,
    shared: Arc<Shared>,
    settled: bool,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("id", &self.id)
            .field("event", &self.event)
            .field("payload", &self.payload)
            .finish_non_exhaustive()
    }
}

impl Request {
    pub(crate) fn new(
        inbound: relay_proto::InboundRequest,
        commands: Tx<Command>,
        shared: Arc<Shared>,
    ) -> Self {
        Request {
            id: inbound.id,
            event: inbound.event,
            payload: inbound.payload,
            commands,
            shared,
            settled: false,
        }
    }

    /// The remote's id of the request (its envelope id on the wire).
    pub fn id(&self) -> InboundRequestId {
        self.id
    }

    /// The event name.
    pub fn event(&self) -> &str {
        &self.event
    }

    /// The payload; `None` when the wire carried `null`.
    pub fn payload(&self) -> Option<&Bytes> {
        self.payload.as_ref()
    }

    /// Takes the payload out (to reuse it in the reply, say).
    pub fn take_payload(&mut self) -> Option<Bytes> {
        self.payload.take()
    }

    /// Replies once. Fails when the core refuses (the reply is too large,
    /// the send queue is full, the request was forgotten) or the peer is
    /// closed.
    pub async fn reply(mut self, payload: Option<Bytes>) -> Result<(), Error> {
        self.settled = true;
        let id = self.id;
        call(&self.commands, &self.shared, |done| Command::Reply {
            id,
            payload,
            done,
        })
        .await
    }

    /// Replies without waiting, for callbacks that cannot await (such as
    /// [`Peer::on_request`](crate::Peer::on_request)'s): the reply is queued
    /// for the peer's task, which sends it on its next turn. Saves the task
    /// a spawned `reply` would need. Fails with [`Error::QueueFull`] when the
    /// command queue is full, or [`Error::Closed`] when the peer is gone;
    /// the request then counts as unanswered. A reply the core refuses (too
    /// large, say) is logged at warn level, as the caller is not waiting.
    pub fn try_reply(mut self, payload: Option<Bytes>) -> Result<(), Error> {
        let (done, _) = async_channel::bounded(1);
        let reply = Command::Reply {
            id: self.id,
            payload,
            done,
        };
        match self.commands.try_send(reply) {
            Ok(()) => {
                self.settled = true;
                Ok(())
            }
            Err(TrySendError::Full(_)) => Err(Error::QueueFull),
            Err(TrySendError::Closed(_)) => Err(self.shared.closed_error()),
        }
    }

    /// No reply will come (an emit, say); not counted as unanswered.
    pub fn ignore(mut self) {
        self.settled = true;
    }

    /// Dropped by the adapter itself (the event queue was full): counted
    /// there, not here.
    pub(crate) fn settle(mut self) {
        self.settled = true;
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if !self.settled {
            debug!(id = self.id.0, event = %self.event, "inbound request dropped unanswered");
            self.shared.count_unanswered();
        }
    }
}

/// Withdraws an outbound request from the core when its future is dropped
/// before the outcome arrived.
pub(crate) struct CancelOnDrop {
    pub(crate) control: Tx<Control>,
    pub(crate) token: u64,
    pub(crate) armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            // Unbounded: at most one per pending request, which the core bounds.
            let _ = self.control.try_send(Control::Cancel(self.token));
        }
    }
}
