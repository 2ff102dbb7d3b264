//! Where a peer is in its life, as one enum: the connection phase and what
//! each phase waits for.

use std::net::SocketAddr;
use std::time::Instant;

use crate::event::CloseReason;
use crate::stats::PeerState;

/// Datagrams kept from before the answer, at most.
const MAX_EARLY: usize = 16;

/// A datagram that reached the offerer before the answer.
#[derive(Debug)]
pub(crate) struct Early {
    pub(crate) source: SocketAddr,
    pub(crate) destination: SocketAddr,
    pub(crate) data: Vec<u8>,
}

/// What a connecting peer has seen so far.
#[derive(Debug)]
pub(crate) struct Connecting {
    /// When the peer gives up.
    deadline: Instant,
    /// str0m reported ICE and DTLS up.
    dtls_up: bool,
    /// str0m reported the signalling channel open (with fast setup that
    /// can come before DTLS).
    channel_open: bool,
    /// The remote sent a DTLS ClientHello although we are the DTLS client:
    /// it is a client too, and nothing can connect.
    role_clash: bool,
}

#[derive(Debug)]
pub(crate) enum Phase {
    /// Created; no offer made or taken.
    New,
    /// Our offer is out; the answer has not come.
    Offered {
        deadline: Instant,
        /// The answerer's first connectivity checks usually beat its
        /// answer. When the `Rtc` is rebuilt for the answer they are fed to
        /// the new one; else the answerer retransmits (250 ms).
        early: Vec<Early>,
    },
    /// Both signals applied; ICE, DTLS, SCTP and the signalling channel are
    /// coming up.
    Connecting(Connecting),
    /// The signalling channel is open: messages flow.
    Ready,
    /// Closed (str0m may still drain its goodbyes).
    Closed,
}

impl Phase {
    pub(crate) fn state(&self) -> PeerState {
        match self {
            Phase::New => PeerState::New,
            Phase::Offered { .. } | Phase::Connecting(_) => PeerState::Connecting,
            Phase::Ready => PeerState::Ready,
            Phase::Closed => PeerState::Closed,
        }
    }

    pub(crate) fn is_ready(&self) -> bool {
        matches!(self, Phase::Ready)
    }

    pub(crate) fn is_closed(&self) -> bool {
        matches!(self, Phase::Closed)
    }

    /// The offer was made: the answer must come, and the peer connect,
    /// by `deadline`.
    pub(crate) fn offered(&mut self, deadline: Instant) {
        *self = Phase::Offered {
            deadline,
            early: Vec::new(),
        };
    }

    /// The signals were exchanged. The offerer keeps its deadline; the
    /// answerer starts its own. Returns the early datagrams.
    pub(crate) fn connecting(&mut self, deadline: Instant) -> Vec<Early> {
        let (deadline, early) = match std::mem::replace(self, Phase::New) {
            Phase::Offered { deadline, early } => (deadline, early),
            _ => (deadline, Vec::new()),
        };
        *self = Phase::Connecting(Connecting {
            deadline,
            dtls_up: false,
            channel_open: false,
            role_clash: false,
        });
        early
    }

    /// Keeps a datagram that came before the answer.
    pub(crate) fn keep_early(&mut self, source: SocketAddr, destination: SocketAddr, data: &[u8]) {
        if let Phase::Offered { early, .. } = self
            && early.len() < MAX_EARLY
        {
            early.push(Early {
                source,
                destination,
                data: data.to_vec(),
            });
        }
    }

    /// DTLS is up; `true` when that makes the peer ready.
    pub(crate) fn dtls_connected(&mut self) -> bool {
        match self {
            Phase::Connecting(c) => {
                c.dtls_up = true;
                c.channel_open
            }
            _ => false,
        }
    }

    /// The signalling channel opened; `true` when that makes the peer ready.
    pub(crate) fn channel_opened(&mut self) -> bool {
        match self {
            Phase::Connecting(c) => {
                c.channel_open = true;
                c.dtls_up
            }
            _ => false,
        }
    }

    /// The remote sent a ClientHello to us, the DTLS client.
    pub(crate) fn role_clash(&mut self) {
        if let Phase::Connecting(c) = self
            && !c.dtls_up
        {
            c.role_clash = true;
        }
    }

    /// `true` while DTLS is not up yet (a ClientHello then means a clash).
    pub(crate) fn awaits_dtls(&self) -> bool {
        matches!(self, Phase::Connecting(c) if !c.dtls_up)
    }

    /// `true` before the answer came (early datagrams are kept then).
    pub(crate) fn awaits_answer(&self) -> bool {
        matches!(self, Phase::Offered { .. })
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Phase::Offered { deadline, .. } => Some(*deadline),
            Phase::Connecting(c) => Some(c.deadline),
            _ => None,
        }
    }

    /// Why the peer must close now, if it must: it did not connect in time.
    pub(crate) fn handle_timeout(&self, now: Instant) -> Option<CloseReason> {
        match self {
            Phase::Offered { deadline, .. } if *deadline <= now => {
                Some(CloseReason::ConnectTimeout)
            }
            Phase::Connecting(c) if c.deadline <= now => Some(if c.role_clash {
                CloseReason::Dtls(
                    "role mismatch: the remote acts as DTLS client too (the offerer must be the DTLS server)"
                        .into(),
                )
            } else {
                CloseReason::ConnectTimeout
            }),
            _ => None,
        }
    }
}
