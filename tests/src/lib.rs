//! A simulated network for relay peers: a virtual clock read once, seeded
//! latency, jitter (and so reordering), loss and duplication, and a bounded
//! drive loop that fails on livelock.
//!
//! The real state machines run unchanged; only time and the wire are fake.
//! DTLS and SCTP draw randomness str0m does not let us seed, so tests assert
//! on events and timings, never on bytes.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use relay_proto::{Config, Event, Peer, PeerMeta};

/// Conditions of the simulated link (both directions alike).
#[derive(Debug, Clone, Copy)]
pub struct NetConfig {
    /// One-way base latency.
    pub latency: Duration,
    /// Extra one-way delay, uniform in `0..=jitter`; packets overtake each
    /// other when it exceeds their spacing.
    pub jitter: Duration,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Probability that a datagram arrives twice.
    pub duplicate: f64,
}

impl NetConfig {
    /// A perfect link with no delay.
    pub fn ideal() -> Self {
        NetConfig {
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
        }
    }

    /// A clean link with the given round-trip time.
    pub fn rtt(rtt: Duration) -> Self {
        NetConfig {
            latency: rtt / 2,
            ..NetConfig::ideal()
        }
    }
}

/// Which side of a [`Pair`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The offerer.
    A,
    /// The answerer.
    B,
}

impl Side {
    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// One peer in the simulation with what it reported.
pub struct Node {
    /// The peer under test.
    pub peer: Peer,
    /// Its address on the simulated network.
    pub addr: SocketAddr,
    /// Events not yet taken by the test, with the simulated time they came.
    pub events: VecDeque<(Duration, Event)>,
    /// Every event ever reported (for invariants), with its time.
    pub log: Vec<(Duration, Event)>,
    /// Reply to every inbound request with its own payload.
    pub auto_echo: bool,
    /// Datagrams this node sent.
    pub sent: u64,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: Instant,
    seq: u64,
    to: usize,
    from: SocketAddr,
    dest: SocketAddr,
    data: Vec<u8>,
}

/// Two peers on one simulated link: A offers, B answers.
pub struct Pair {
    /// Offerer (index 0) and answerer (index 1).
    pub nodes: [Node; 2],
    /// Link conditions; may be changed between steps.
    pub net: NetConfig,
    /// The clock's origin (read once).
    pub start: Instant,
    /// Current simulated time.
    pub now: Instant,
    rng: fastrand::Rng,
    wire: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    /// Datagrams the link dropped.
    pub lost: u64,
    /// Cut the link entirely (both directions) while `true`.
    pub partitioned: bool,
    /// A NAT in front of each side: `Some(addr)` makes the side's datagrams
    /// reach the other from `addr`, and only datagrams sent to `addr` reach
    /// it. Changing it mid-run is a NAT rebinding.
    pub nat: [Option<SocketAddr>; 2],
    steps: u64,
}

/// Address of side A on the simulated network.
pub const ADDR_A: &str = "127.0.0.1:10001";
/// Address of side B on the simulated network.
pub const ADDR_B: &str = "127.0.0.1:10002";

/// A shared certificate keeps each test's setup cheap.
pub fn shared_cert() -> relay_proto::Certificate {
    use std::sync::OnceLock;
    static CERT: OnceLock<relay_proto::Certificate> = OnceLock::new();
    CERT.get_or_init(|| relay_proto::Certificate::generate().expect("certificate"))
        .clone()
}

/// The default config of a simulated side.
pub fn config_for(side: Side) -> Config {
    let addr = match side {
        Side::A => ADDR_A,
        Side::B => ADDR_B,
    };
    let mut c = Config::new(vec![addr.parse().expect("address")]);
    c.dtls_cert = Some(shared_cert());
    c.seed = match side {
        Side::A => 1,
        Side::B => 2,
    };
    c
}

impl Pair {
    /// Two peers with the given configs (see [`config_for`]); not yet
    /// signalled.
    pub fn new(seed: u64, net: NetConfig, a: Config, b: Config) -> Pair {
        let start = Instant::now();
        let node = |config: Config, name: &str| {
            let addr = config.local_addrs[0];
            Node {
                peer: Peer::new(PeerMeta::new(name, "sim"), config, start).expect("peer"),
                addr,
                events: VecDeque::new(),
                log: Vec::new(),
                auto_echo: false,
                sent: 0,
            }
        };
        Pair {
            nodes: [node(a, "a"), node(b, "b")],
            net,
            start,
            now: start,
            rng: fastrand::Rng::with_seed(seed),
            wire: BinaryHeap::new(),
            seq: 0,
            lost: 0,
            partitioned: false,
            nat: [None, None],
            steps: 0,
        }
    }

    /// A pair with default configs.
    pub fn with_net(seed: u64, net: NetConfig) -> Pair {
        Pair::new(seed, net, config_for(Side::A), config_for(Side::B))
    }

    /// The node of one side.
    pub fn node(&mut self, side: Side) -> &mut Node {
        &mut self.nodes[side as usize]
    }

    /// The peer of one side.
    pub fn peer(&mut self, side: Side) -> &mut Peer {
        &mut self.nodes[side as usize].peer
    }

    /// Simulated time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// The one out-of-band round trip: A's offer to B, B's answer to A. The
    /// signal itself takes no simulated time.
    pub fn signal(&mut self) {
        let now = self.now;
        let offer = self.nodes[0].peer.create_offer(now).expect("offer");
        let answer = self.nodes[1]
            .peer
            .accept_offer(now, &offer)
            .expect("answer");
        self.nodes[0]
            .peer
            .accept_answer(now, &answer)
            .expect("accept answer");
        self.collect();
    }

    /// Signals, then drives until both sides are Ready; returns each side's
    /// time to Ready.
    pub fn connect(&mut self) -> (Duration, Duration) {
        self.signal();
        self.drive_until(Duration::from_secs(30), |p| {
            p.ready_at(Side::A).is_some() && p.ready_at(Side::B).is_some()
        });
        (
            self.ready_at(Side::A).expect("A ready"),
            self.ready_at(Side::B).expect("B ready"),
        )
    }

    /// When a side reported Ready.
    pub fn ready_at(&self, side: Side) -> Option<Duration> {
        self.nodes[side as usize]
            .log
            .iter()
            .find(|(_, e)| *e == Event::Ready)
            .map(|(t, _)| *t)
    }

    /// Takes the events a side reported so far.
    pub fn take_events(&mut self, side: Side) -> Vec<Event> {
        self.nodes[side as usize]
            .events
            .drain(..)
            .map(|(_, e)| e)
            .collect()
    }

    /// Moves transmits onto the wire and events into the nodes, for both
    /// sides, until neither has output left (auto-echo replies make more).
    pub fn collect(&mut self) {
        loop {
            let mut any = false;
            for i in 0..2 {
                while let Some(t) = self.nodes[i].peer.poll_transmit() {
                    any = true;
                    self.nodes[i].sent += 1;
                    self.send(i, t.source, t.destination, t.contents);
                }
                while let Some(e) = self.nodes[i].peer.poll_event() {
                    any = true;
                    let at = self.now - self.start;
                    if self.nodes[i].auto_echo
                        && let Event::Request(r) = &e
                    {
                        let _ = self.nodes[i].peer.reply(self.now, r.id, r.payload.clone());
                    }
                    self.nodes[i].log.push((at, e.clone()));
                    self.nodes[i].events.push_back((at, e));
                }
            }
            if !any {
                break;
            }
        }
    }

    fn send(&mut self, from: usize, source: SocketAddr, dest: SocketAddr, data: Vec<u8>) {
        let to = 1 - from;
        if dest != self.nat[to].unwrap_or(self.nodes[to].addr) {
            self.lost += 1;
            return;
        }
        // What the receiver sees: the sender's NAT address, its own address.
        let source = self.nat[from].unwrap_or(source);
        let dest = self.nodes[to].addr;
        if self.partitioned || self.rng.f64() < self.net.loss {
            self.lost += 1;
            return;
        }
        let copies = if self.rng.f64() < self.net.duplicate {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter_ns = self.net.jitter.as_nanos() as u64;
            let extra = if jitter_ns > 0 {
                Duration::from_nanos(self.rng.u64(0..=jitter_ns))
            } else {
                Duration::ZERO
            };
            self.seq += 1;
            self.wire.push(Reverse(InFlight {
                at: self.now + self.net.latency + extra,
                seq: self.seq,
                to,
                from: source,
                dest,
                data: data.clone(),
            }));
        }
    }

    /// Advances to the next thing that happens (a delivery or a deadline),
    /// applies it and collects outputs. Returns `false` when nothing is
    /// scheduled at all.
    pub fn step(&mut self) -> bool {
        self.steps += 1;
        let deliver_at = self.wire.peek().map(|Reverse(p)| p.at);
        let deadlines = [
            self.nodes[0].peer.poll_timeout(),
            self.nodes[1].peer.poll_timeout(),
        ];
        let next_deadline = deadlines.iter().flatten().min().copied();
        let next = match (deliver_at, next_deadline) {
            (Some(d), Some(t)) => d.min(t),
            (Some(d), None) => d,
            (None, Some(t)) => t,
            (None, None) => return false,
        };
        if next > self.now {
            self.now = next;
        }
        if deliver_at.is_some_and(|d| d <= self.now) {
            let Reverse(p) = self.wire.pop().expect("peeked");
            self.nodes[p.to]
                .peer
                .handle_datagram(self.now, p.from, p.dest, &p.data);
        } else {
            for (i, t) in deadlines.iter().enumerate() {
                if t.is_some_and(|t| t <= self.now) {
                    self.nodes[i].peer.handle_timeout(self.now);
                }
            }
        }
        self.collect();
        true
    }

    /// Drives until `done` holds, failing the test when `limit` of simulated
    /// time passes first or the loop stops advancing time (livelock).
    pub fn drive_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Pair) -> bool) {
        let deadline = self.now + limit;
        let mut last_now = self.now;
        let mut stuck = 0u32;
        while !done(self) {
            assert!(
                self.now <= deadline,
                "condition not reached within {limit:?} of simulated time (at {:?})",
                self.elapsed()
            );
            if !self.step() {
                panic!("nothing scheduled and the condition does not hold");
            }
            if self.now == last_now {
                stuck += 1;
                assert!(stuck < 1_000_000, "livelock: time does not advance");
            } else {
                stuck = 0;
                last_now = self.now;
            }
        }
    }

    /// Drives for a span of simulated time.
    pub fn drive_for(&mut self, span: Duration) {
        let until = self.now + span;
        loop {
            let next = self.next_time();
            match next {
                Some(t) if t <= until => {
                    self.step();
                }
                _ => break,
            }
        }
        if self.now < until {
            self.now = until;
        }
    }

    fn next_time(&mut self) -> Option<Instant> {
        let deliver_at = self.wire.peek().map(|Reverse(p)| p.at);
        [
            deliver_at,
            self.nodes[0].peer.poll_timeout(),
            self.nodes[1].peer.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Steps taken so far (for livelock diagnostics).
    pub fn steps(&self) -> u64 {
        self.steps
    }
}
