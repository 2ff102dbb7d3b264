//! One peer, signalled against a fabricated remote, fed arbitrary datagrams
//! and timeouts with monotonic time (plus a few application calls).
//!
//! Nothing can answer for the remote here, so inputs reach what an attacker
//! on the path reaches: STUN, DTLS handshake messages and records, RTP/RTCP
//! demultiplexing, and the peer's own timers (connect timeout, request
//! timeouts before Ready). Datagrams may also be copies of what the peer
//! itself sent, mutated, so handshakes start from well-formed bytes.
//!
//! Checks after every input at time `now`:
//! - a handled timeout leaves no deadline at or before `now` (a driver that
//!   obeys [`Peer::poll_timeout`] can never spin);
//! - when the driver was on time, the deadline is never before `now`;
//! - [`Event::Closed`] fires at most once and nothing follows it;
//! - nothing inbound is reported before [`Event::Ready`];
//! - every request ends in at most one outcome, and each pending request
//!   ends in exactly one once the peer closes.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use relay_proto::wire::{
    CandidateProtocol, CandidateType, DtlsFingerprint, DtlsParameters, DtlsRole, IceParameters,
    SctpCapabilities, Signal, SignalCandidate,
};
use relay_proto::{Event, Peer, PeerMeta, RequestId};
use relay_tests::{ADDR_A, ADDR_B, Side, config_for};

/// Inputs per execution, at most.
const MAX_OPS: usize = 256;
/// Simulated time per execution, at most (past the connect timeout).
const MAX_TIME: Duration = Duration::from_secs(60);

#[derive(Debug, Arbitrary)]
struct Setup {
    /// Offer (DTLS server) or answer (DTLS client).
    offerer: bool,
    /// Whether the fabricated remote announces our extensions.
    remote_announces: bool,
    /// Whether this peer announces them.
    announce: bool,
}

#[derive(Debug, Arbitrary)]
enum Addr {
    /// The remote's signalled candidate.
    Remote,
    /// Any other address.
    Other(u16),
}

#[derive(Debug, Arbitrary)]
enum Op {
    /// A datagram of arbitrary bytes.
    Datagram {
        from: Addr,
        to_local: bool,
        data: Vec<u8>,
    },
    /// One of the peer's own transmits, mutated, sent back to it.
    Echo {
        which: u8,
        flip_at: u16,
        xor: u8,
        cut: Option<u16>,
    },
    /// Time passes; `punctual` drivers fire every deadline on the way.
    Wait { millis: u16, punctual: bool },
    /// A request (queued until Ready, so it can only time out or fail).
    Request { timeout_millis: Option<u16> },
    /// Cancels one of the requests.
    Cancel { which: u8 },
    /// An emit (queued until Ready).
    Emit { len: u8 },
    /// Closes the peer.
    Close,
}

/// The fuzz body.
pub fn body(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(setup) = Setup::arbitrary(&mut u) else {
        return;
    };
    if crate::tracing() {
        eprintln!("{setup:?}");
    }
    let mut run = Run::new(&setup);
    for _ in 0..MAX_OPS {
        if u.is_empty() || run.now - run.start > MAX_TIME {
            break;
        }
        let Ok(op) = Op::arbitrary(&mut u) else {
            break;
        };
        if crate::tracing() {
            eprintln!("{:?} {op:?}", run.now - run.start);
        }
        run.apply(op);
    }
    run.finish();
}

/// The fabricated remote's signal: a host candidate at [`ADDR_B`] and a
/// well-formed fingerprint that no certificate will match.
fn remote_signal(announce: bool) -> Vec<u8> {
    let addr: SocketAddr = ADDR_B.parse().expect("address");
    Signal {
        ice_candidates: vec![SignalCandidate {
            foundation: "1".into(),
            priority: 2_130_706_431,
            address: addr.ip().to_string(),
            protocol: CandidateProtocol::Udp,
            port: addr.port(),
            typ: CandidateType::Host,
            component: 1,
            related_address: String::new(),
            related_port: 0,
            tcp_type: String::new(),
        }],
        ice_parameters: IceParameters {
            username_fragment: "fuzzufrag".into(),
            password: "fuzzpasswordfuzzpassword".into(),
            ice_lite: false,
        },
        dtls_parameters: DtlsParameters {
            role: DtlsRole::Auto,
            fingerprints: Some(vec![DtlsFingerprint::from_bytes("sha-256", &[0xab; 32])]),
        },
        sctp_capabilities: SctpCapabilities::default(),
        relay: announce.then(|| relay_proto::wire::Announcement {
            version: 1,
            features: vec![],
            max_message_size: 1 << 20,
            sctp_init: None,
        }),
    }
    .encode()
}

struct Run {
    peer: Peer,
    start: Instant,
    now: Instant,
    local: SocketAddr,
    remote: SocketAddr,
    sent: Vec<Vec<u8>>,
    requests: Vec<RequestId>,
    ended: HashSet<RequestId>,
    ready: bool,
    closed: bool,
}

impl Run {
    fn new(setup: &Setup) -> Run {
        let start = Instant::now();
        let mut config = config_for(Side::A);
        config.announce_extensions = setup.announce;
        let mut peer = Peer::new(PeerMeta::new("fuzz", "fuzz"), config, start).expect("peer");
        let remote = remote_signal(setup.remote_announces);
        if setup.offerer {
            let _offer = peer.create_offer(start).expect("offer");
            peer.accept_answer(start, &remote).expect("answer accepted");
        } else {
            let _answer = peer.accept_offer(start, &remote).expect("offer accepted");
        }
        let mut run = Run {
            peer,
            start,
            now: start,
            local: ADDR_A.parse().expect("address"),
            remote: ADDR_B.parse().expect("address"),
            sent: Vec::new(),
            requests: Vec::new(),
            ended: HashSet::new(),
            ready: false,
            closed: false,
        };
        run.check(true);
        run
    }

    fn apply(&mut self, op: Op) {
        let mut on_time = true;
        match op {
            Op::Datagram {
                from,
                to_local,
                data,
            } => {
                let source = match from {
                    Addr::Remote => self.remote,
                    Addr::Other(port) => SocketAddr::from(([10, 0, 0, 1], port)),
                };
                let dest = if to_local {
                    self.local
                } else {
                    SocketAddr::from(([127, 0, 0, 1], 9))
                };
                self.peer.handle_datagram(self.now, source, dest, &data);
            }
            Op::Echo {
                which,
                flip_at,
                xor,
                cut,
            } => {
                if self.sent.is_empty() {
                    return;
                }
                let mut data = self.sent[usize::from(which) % self.sent.len()].clone();
                if !data.is_empty() {
                    let at = usize::from(flip_at) % data.len();
                    data[at] ^= xor;
                }
                if let Some(cut) = cut {
                    data.truncate(usize::from(cut));
                }
                self.peer
                    .handle_datagram(self.now, self.remote, self.local, &data);
            }
            Op::Wait { millis, punctual } => {
                let target = self.now + Duration::from_millis(u64::from(millis));
                if punctual {
                    // Fire each deadline on the way, bounded.
                    for _ in 0..10_000 {
                        match self.peer.poll_timeout() {
                            Some(t) if t <= target => {
                                self.now = self.now.max(t);
                                self.peer.handle_timeout(self.now);
                                self.check(true);
                                self.assert_timeout_handled();
                            }
                            _ => break,
                        }
                    }
                } else {
                    on_time = self.peer.poll_timeout().is_none_or(|t| t >= target);
                }
                self.now = target;
                self.peer.handle_timeout(self.now);
                self.check(on_time);
                self.assert_timeout_handled();
                return;
            }
            Op::Request { timeout_millis } => {
                let timeout = timeout_millis.map(|m| Duration::from_millis(u64::from(m)));
                if let Ok(id) = self.peer.request(self.now, "fuzz", None, timeout) {
                    assert!(!self.closed, "a closed peer accepted a request");
                    assert!(!self.requests.contains(&id), "request id {id:?} reused");
                    self.requests.push(id);
                }
            }
            Op::Cancel { which } => {
                if self.requests.is_empty() {
                    return;
                }
                let id = self.requests[usize::from(which) % self.requests.len()];
                let cancelled = self.peer.cancel_request(self.now, id);
                assert_eq!(
                    cancelled,
                    !self.ended.contains(&id),
                    "cancel_request disagrees with the outcomes reported for {id:?}"
                );
            }
            Op::Emit { len } => {
                let payload = bytes::Bytes::from(vec![b'x'; usize::from(len)]);
                let result = self.peer.emit(self.now, "fuzz", Some(payload));
                assert!(
                    !(self.closed && result.is_ok()),
                    "a closed peer accepted an emit"
                );
            }
            Op::Close => self.peer.close(self.now),
        }
        self.check(on_time);
    }

    /// After `handle_timeout(now)`, nothing may be due at or before `now`.
    fn assert_timeout_handled(&mut self) {
        if let Some(t) = self.peer.poll_timeout() {
            assert!(
                t > self.now,
                "deadline {:?} after a timeout handled at {:?}",
                t - self.start,
                self.now - self.start
            );
        }
    }

    /// Drains outputs and checks the invariants. `on_time`: the driver has
    /// fired every deadline up to `now`.
    fn check(&mut self, on_time: bool) {
        while let Some(t) = self.peer.poll_transmit() {
            assert!(!t.contents.is_empty(), "an empty datagram was queued");
            if self.sent.len() < 64 {
                self.sent.push(t.contents);
            }
        }
        while let Some(event) = self.peer.poll_event() {
            assert!(!self.closed, "event after Closed: {event:?}");
            match event {
                Event::Ready => {
                    assert!(!self.ready, "Ready fired twice");
                    self.ready = true;
                }
                Event::Reply { id, .. } | Event::RequestFailed { id, .. } => {
                    assert!(self.requests.contains(&id), "outcome for unknown {id:?}");
                    assert!(self.ended.insert(id), "second outcome for {id:?}");
                }
                Event::Closed(_) => self.closed = true,
                other => assert!(self.ready, "{other:?} before Ready"),
            }
        }
        // A late driver may find the deadline passed; an on-time one never.
        if let Some(t) = self.peer.poll_timeout() {
            assert!(
                !on_time || t >= self.now,
                "deadline {:?} is before now {:?}",
                t - self.start,
                self.now - self.start
            );
        }
    }

    fn finish(mut self) {
        self.peer.close(self.now);
        self.check(true);
        assert!(self.closed, "close() did not report Closed");
        for id in &self.requests {
            assert!(self.ended.contains(id), "{id:?} never ended");
        }
    }
}
