//! Is the remote still there? A connected peer closes with
//! [`CloseReason::Unreachable`](crate::CloseReason::Unreachable) once it has
//! heard nothing for the grace period, or ICE has stayed disconnected that
//! long.
//!
//! Both ends' ICE agents keep the path alive with a binding request every
//! few seconds (str0m: at most 3 s apart; pion: 2 s), so a live remote is
//! never silent for a whole grace period of 5 s; a dead one is noticed
//! within the grace of its last datagram.

use std::time::{Duration, Instant};

use crate::time::{earliest, later};

#[derive(Debug)]
pub(crate) struct Liveness {
    grace: Duration,
    last_heard: Option<Instant>,
    ice_disconnected_since: Option<Instant>,
}

impl Liveness {
    pub(crate) fn new(grace: Duration) -> Liveness {
        Liveness {
            grace,
            last_heard: None,
            ice_disconnected_since: None,
        }
    }

    /// A datagram from the remote reached the connection.
    pub(crate) fn heard(&mut self, now: Instant) {
        self.last_heard = Some(now);
    }

    /// str0m's ICE agent reported the state; `connected` is false for
    /// disconnected.
    pub(crate) fn ice(&mut self, now: Instant, connected: bool) {
        if connected {
            self.ice_disconnected_since = None;
        } else if self.ice_disconnected_since.is_none() {
            self.ice_disconnected_since = Some(now);
        }
    }

    /// When the remote is declared gone unless it is heard before.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        earliest(
            self.last_heard.map(|t| later(t, self.grace)),
            self.ice_disconnected_since.map(|t| later(t, self.grace)),
        )
    }

    /// `true` when the remote is gone.
    pub(crate) fn handle_timeout(&self, now: Instant) -> bool {
        self.poll_timeout().is_some_and(|t| t <= now)
    }
}
