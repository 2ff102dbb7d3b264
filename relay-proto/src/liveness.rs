//! Is the remote still there? A connected peer closes with
//! [`CloseReason::Unreachable`](crate::CloseReason::Unreachable) once it has
//! heard nothing for the grace period, or ICE has stayed disconnected that
//! long.
//!
//! Both ends' ICE agents keep the path alive with a binding request every
//! second or two (ours: every second, see `ICE_CHECK_INTERVAL`; pion: 2 s), so a live remote is
//! never silent for a whole grace period of 5 s; a dead one is noticed
//! within the grace of its last datagram.
//!
//! Before that, the path is reported interrupted when a connectivity check
//! we sent has had no answer, and nothing else was heard, for `quiet` (on
//! a live path a check is answered within a round trip, and str0m resends
//! an unanswered one within a second), or when ICE reports it
//! disconnected; and restored when the remote is heard again, or ICE
//! reconnects. Only checks count: much else we send (a check's response,
//! RTP one way) draws no answer.

use std::time::{Duration, Instant};

use crate::time::{earliest, later};

#[derive(Debug)]
pub(crate) struct Liveness {
    grace: Duration,
    quiet: Duration,
    last_heard: Option<Instant>,
    /// The first check we sent since we last heard the remote.
    owed_since: Option<Instant>,
    ice_disconnected_since: Option<Instant>,
    /// Reported interrupted and not restored yet.
    interrupted: bool,
}

/// The path's state changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathChange {
    Interrupted,
    Restored,
}

impl Liveness {
    pub(crate) fn new(grace: Duration, quiet: Duration) -> Liveness {
        Liveness {
            grace,
            quiet,
            last_heard: None,
            owed_since: None,
            ice_disconnected_since: None,
            interrupted: false,
        }
    }

    /// A datagram from the remote reached the connection.
    pub(crate) fn heard(&mut self, now: Instant) -> Option<PathChange> {
        self.last_heard = Some(now);
        self.owed_since = None;
        self.restore()
    }

    /// We sent a datagram.
    pub(crate) fn sent(&mut self, now: Instant, data: &[u8]) {
        // A STUN binding request (RFC 8489: type 0x0001).
        let check = data.len() >= 20 && data[0] == 0 && data[1] == 1;
        if check && self.owed_since.is_none() && self.last_heard.is_some() {
            self.owed_since = Some(now);
        }
    }

    /// str0m's ICE agent reported the state; `connected` is false for
    /// disconnected. Returns the path's change, if this is one.
    pub(crate) fn ice(&mut self, now: Instant, connected: bool) -> Option<PathChange> {
        if connected {
            self.ice_disconnected_since = None;
            self.restore()
        } else {
            self.ice_disconnected_since.get_or_insert(now);
            self.interrupt()
        }
    }

    fn restore(&mut self) -> Option<PathChange> {
        std::mem::take(&mut self.interrupted).then_some(PathChange::Restored)
    }

    fn interrupt(&mut self) -> Option<PathChange> {
        (!std::mem::replace(&mut self.interrupted, true)).then_some(PathChange::Interrupted)
    }

    /// The next moment something changes unless the remote is heard first.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let quiet = (!self.interrupted)
            .then(|| self.owed_since.map(|t| later(t, self.quiet)))
            .flatten();
        earliest(
            quiet,
            earliest(
                self.last_heard.map(|t| later(t, self.grace)),
                self.ice_disconnected_since.map(|t| later(t, self.grace)),
            ),
        )
    }

    /// `Err(())` when the remote is gone; else the path's change, if any.
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Result<Option<PathChange>, ()> {
        let gone = earliest(
            self.last_heard.map(|t| later(t, self.grace)),
            self.ice_disconnected_since.map(|t| later(t, self.grace)),
        );
        if gone.is_some_and(|t| t <= now) {
            return Err(());
        }
        if self.owed_since.is_some_and(|t| later(t, self.quiet) <= now) {
            return Ok(self.interrupt());
        }
        Ok(None)
    }
}
