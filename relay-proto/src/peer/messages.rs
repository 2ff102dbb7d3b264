//! Emit, request and reply: the peer's messaging API, and what the remote's
//! messages on the signalling channel become.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::debug;

use super::Peer;
use crate::error::Error;
use crate::event::{Event, InboundRequest, InboundRequestId, RequestError, RequestId};
use crate::signalling::Inbound;
use crate::wire::{Extension, TRACK_EVENT};

impl Peer {
    /// Sends a fire-and-forget message. Queued until Ready when called
    /// before it. The message goes out when the outputs are next polled.
    pub fn emit(&mut self, now: Instant, event: &str, payload: Option<Bytes>) -> Result<(), Error> {
        self.check_open()?;
        self.advance(now);
        let limit = self.remote_max_message_size();
        self.signalling
            .enqueue_message(event, payload, limit, &mut self.stats)?;
        self.stats.emits_sent += 1;
        Ok(())
    }

    /// Sends a request; its outcome arrives later as [`Event::Reply`] or
    /// [`Event::RequestFailed`] under the returned id. `timeout` defaults to
    /// [`Config::request_timeout`](crate::Config::request_timeout). Queued
    /// until Ready when called before it (the timeout runs from now). The
    /// message goes out when the outputs are next polled.
    pub fn request(
        &mut self,
        now: Instant,
        event: &str,
        payload: Option<Bytes>,
        timeout: Option<Duration>,
    ) -> Result<RequestId, Error> {
        self.check_open()?;
        self.advance(now);
        let timeout = timeout.unwrap_or(self.config.request_timeout);
        let limit = self.remote_max_message_size();
        let id = self.signalling.request(
            self.last_now,
            event,
            payload,
            timeout,
            limit,
            &mut self.stats,
        )?;
        Ok(RequestId(id))
    }

    /// Withdraws a pending request: [`Event::RequestFailed`] with
    /// [`RequestError::Cancelled`] follows, and a late reply is dropped.
    /// Returns `false` when the request is no longer pending.
    pub fn cancel_request(&mut self, now: Instant, id: RequestId) -> bool {
        self.advance(now);
        if self.signalling.complete(id.0) {
            self.request_failed(id.0, RequestError::Cancelled);
            self.drain();
            true
        } else {
            false
        }
    }

    /// Answers an inbound request ([`Event::Request`]) once. The reply goes
    /// out when the outputs are next polled.
    pub fn reply(
        &mut self,
        now: Instant,
        id: InboundRequestId,
        payload: Option<Bytes>,
    ) -> Result<(), Error> {
        self.check_open()?;
        self.advance(now);
        let limit = self.remote_max_message_size();
        self.signalling
            .reply(id.0, payload, limit, &mut self.stats)?;
        Ok(())
    }

    /// Testing only: queues raw bytes as one signalling-channel message,
    /// bypassing the envelope codec, so tests and fuzzers can show how the
    /// remote copes with what a broken or hostile peer sends.
    #[doc(hidden)]
    pub fn send_raw_signal_message_for_testing(&mut self, now: Instant, data: Vec<u8>) {
        self.advance(now);
        self.signalling.enqueue_raw(data);
    }

    /// Reports a request that ended without a reply, to the track it was
    /// for or to the application.
    pub(super) fn request_failed(&mut self, id: u64, reason: RequestError) {
        match reason {
            RequestError::TimedOut => self.stats.requests_timed_out += 1,
            _ => self.stats.requests_failed += 1,
        }
        if let Some(track) = self.tracks.local.take_request(id) {
            if let Some((_, op)) = self.tracks.local.remove(&mut self.tracks.ids, track) {
                self.ops.push_back(op);
            }
            self.events.push_back(Event::TrackFailed { track, reason });
        } else {
            self.events.push_back(Event::RequestFailed {
                id: RequestId(id),
                reason,
            });
        }
    }

    /// One message on the signalling channel (the peer is Ready).
    pub(super) fn on_signal_message(&mut self, msg: &[u8]) {
        let fragments = self.remote_speaks_extensions();
        match self
            .signalling
            .handle_message(msg, fragments, &mut self.stats)
        {
            Inbound::Nothing => {}
            Inbound::Reply { id, payload } => match self.tracks.local.take_request(id) {
                Some(track) => {
                    self.tracks.local.accepted(track);
                    self.events.push_back(Event::TrackAdded(track));
                }
                None => self.events.push_back(Event::Reply {
                    id: RequestId(id),
                    payload,
                }),
            },
            Inbound::Message(env) if env.event == TRACK_EVENT => self.on_track_signal(env),
            Inbound::Message(env) => {
                if self.remote_speaks_extensions()
                    && let Some(ext) = Extension::decode(&env.event, env.payload.as_deref())
                {
                    match ext {
                        Ok(ext) => self.on_extension(ext),
                        Err(e) => {
                            debug!("bad {} message: {e}", env.event);
                            self.stats.drops.bad_extension_messages += 1;
                        }
                    }
                    return;
                }
                self.signalling
                    .remember_unanswered(env.id, env.event.clone(), &mut self.stats);
                self.events.push_back(Event::Request(InboundRequest {
                    id: InboundRequestId(env.id),
                    event: env.event,
                    payload: env.payload,
                }));
            }
        }
    }
}
