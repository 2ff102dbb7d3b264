//! The signalling channel's traffic: the send queue and its framing, our
//! requests awaiting replies, and the remote's awaiting ours. A sub-machine
//! the peer drives; it never touches str0m: the peer writes what
//! [`Signalling::poll_message`] gives it, one message per mutation.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::error::Error;
use crate::framing::{self, Joined, Joiner};
use crate::requests::{Outbound, Unanswered};
use crate::stats::Stats;
use crate::time::later;
use crate::wire::Envelope;

/// What one message from the remote amounts to.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// Nothing to report (a fragment, or something dropped and counted).
    Nothing,
    /// The reply to one of our requests (the request is no longer pending).
    Reply {
        /// The request's envelope id.
        id: u64,
        /// Its payload.
        payload: Option<Bytes>,
    },
    /// A message that is not a reply: an emit, a request, a track signal or
    /// an extension message. Requests are remembered as unanswered.
    Message(Envelope),
}

/// Limits of the signalling traffic (from [`Config`](crate::Config)).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_pending_requests: usize,
    pub(crate) max_send_queue_bytes: usize,
    /// Our own largest envelope (what we announce and accept).
    pub(crate) max_message_size: usize,
}

#[derive(Debug)]
pub(crate) struct Signalling {
    limits: Limits,
    /// Encoded messages (whole envelopes or fragments) waiting for SCTP.
    queue: VecDeque<Vec<u8>>,
    /// Envelope bytes in `queue` (fragment tags not counted).
    queue_bytes: usize,
    joiner: Joiner,
    outbound: Outbound,
    unanswered: Unanswered,
}

impl Signalling {
    pub(crate) fn new(limits: Limits, seed: u64, max_unanswered: usize) -> Signalling {
        Signalling {
            limits,
            queue: VecDeque::new(),
            queue_bytes: 0,
            joiner: Joiner::default(),
            outbound: Outbound::new(seed),
            unanswered: Unanswered::new(max_unanswered),
        }
    }

    // ----------------------------------------------------------- sending

    /// Queues an emit (or a request's envelope) under a fresh id; `limit` is
    /// the remote's largest envelope.
    pub(crate) fn enqueue_message(
        &mut self,
        event: &str,
        payload: Option<Bytes>,
        limit: usize,
        stats: &mut Stats,
    ) -> Result<u64, Error> {
        let id = self.outbound.next_id();
        self.enqueue(
            &Envelope {
                id,
                reply: false,
                event: event.to_string(),
                payload,
            },
            limit,
            stats,
        )?;
        Ok(id)
    }

    /// Queues a request; its deadline is `timeout` after `now`.
    pub(crate) fn request(
        &mut self,
        now: Instant,
        event: &str,
        payload: Option<Bytes>,
        timeout: Duration,
        limit: usize,
        stats: &mut Stats,
    ) -> Result<u64, Error> {
        if self.outbound.len() >= self.limits.max_pending_requests {
            return Err(Error::TooManyRequests(self.limits.max_pending_requests));
        }
        let id = self.enqueue_message(event, payload, limit, stats)?;
        self.outbound.insert(id, later(now, timeout));
        stats.requests_sent += 1;
        Ok(id)
    }

    /// Queues the reply to an unanswered inbound request.
    pub(crate) fn reply(
        &mut self,
        id: u64,
        payload: Option<Bytes>,
        limit: usize,
        stats: &mut Stats,
    ) -> Result<(), Error> {
        let Some(event) = self.unanswered.take(id) else {
            return Err(Error::UnknownRequest(id));
        };
        let envelope = Envelope {
            id,
            reply: true,
            event,
            payload,
        };
        if let Err(e) = self.enqueue(&envelope, limit, stats) {
            // Keep it answerable (with a smaller payload, say).
            stats.drops.unanswered_evicted += self.unanswered.insert(id, envelope.event);
            return Err(e);
        }
        stats.replies_sent += 1;
        Ok(())
    }

    /// Queues the reply to a track signal, which the application never sees
    /// as a request.
    pub(crate) fn reply_to_track(
        &mut self,
        id: u64,
        event: String,
        limit: usize,
        stats: &mut Stats,
    ) -> Result<(), Error> {
        self.enqueue(
            &Envelope {
                id,
                reply: true,
                event,
                payload: None,
            },
            limit,
            stats,
        )
    }

    fn enqueue(
        &mut self,
        envelope: &Envelope,
        limit: usize,
        stats: &mut Stats,
    ) -> Result<(), Error> {
        let len = envelope.encoded_len();
        if len > limit {
            return Err(Error::MessageTooLarge { len, limit });
        }
        if self.queue_bytes + len > self.limits.max_send_queue_bytes {
            return Err(Error::SendQueueFull);
        }
        let bytes = envelope.encode();
        stats.messages_out += 1;
        stats.bytes_out += bytes.len() as u64;
        self.queue_bytes += bytes.len();
        self.queue.extend(framing::split(bytes));
        Ok(())
    }

    /// Testing only: raw bytes as one message.
    pub(crate) fn enqueue_raw(&mut self, data: Vec<u8>) {
        self.queue_bytes += data.len();
        self.queue.push_back(data);
    }

    /// The next message to hand to SCTP, if any.
    pub(crate) fn poll_message(&self) -> Option<&[u8]> {
        self.queue.front().map(Vec::as_slice)
    }

    /// SCTP took the message [`Signalling::poll_message`] gave.
    pub(crate) fn message_written(&mut self) {
        if let Some(msg) = self.queue.pop_front() {
            // Fragments carry one tag byte each on top of the envelope.
            let body = match msg.first() {
                Some(&framing::TAG_MORE) | Some(&framing::TAG_LAST) => msg.len() - 1,
                _ => msg.len(),
            };
            self.queue_bytes = self.queue_bytes.saturating_sub(body);
        }
    }

    // --------------------------------------------------------- receiving

    /// One message from the remote. `fragments` is whether the remote speaks
    /// our extensions (and so may fragment).
    pub(crate) fn handle_message(
        &mut self,
        msg: &[u8],
        fragments: bool,
        stats: &mut Stats,
    ) -> Inbound {
        let joined = self
            .joiner
            .push(msg, fragments, self.limits.max_message_size);
        stats.drops.oversized_messages += std::mem::take(&mut self.joiner.broken_runs);
        let bytes = match joined {
            Joined::Envelope(b) => b,
            Joined::Pending => return Inbound::Nothing,
            Joined::Dropped => {
                stats.drops.oversized_messages += 1;
                return Inbound::Nothing;
            }
        };
        stats.messages_in += 1;
        stats.bytes_in += bytes.len() as u64;
        let env = match Envelope::decode(&bytes) {
            Ok(env) => env,
            Err(e) => {
                tracing::debug!("bad envelope: {e}");
                stats.drops.bad_envelopes += 1;
                return Inbound::Nothing;
            }
        };
        if env.reply {
            if self.outbound.complete(env.id) {
                stats.requests_answered += 1;
                return Inbound::Reply {
                    id: env.id,
                    payload: env.payload,
                };
            }
            stats.drops.unknown_replies += 1;
            return Inbound::Nothing;
        }
        Inbound::Message(env)
    }

    /// Remembers an inbound request the application will see, so that it
    /// can be answered.
    pub(crate) fn remember_unanswered(&mut self, id: u64, event: String, stats: &mut Stats) {
        stats.requests_received += 1;
        stats.drops.unanswered_evicted += self.unanswered.insert(id, event);
    }

    // ------------------------------------------------------ our requests

    /// Ends a pending request without a reply; `false` when it is not
    /// pending.
    pub(crate) fn complete(&mut self, id: u64) -> bool {
        self.outbound.complete(id)
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.outbound.poll_timeout()
    }

    /// Requests whose deadline passed; they are no longer pending.
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Vec<u64> {
        self.outbound.handle_timeout(now)
    }

    /// The peer closed: every pending request, and nothing more to send.
    pub(crate) fn close(&mut self) -> Vec<u64> {
        self.queue.clear();
        self.queue_bytes = 0;
        self.outbound.drain()
    }
}
