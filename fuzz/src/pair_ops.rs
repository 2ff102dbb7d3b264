//! Operation sequences on a connected pair of peers on the simulated network
//! (`relay_tests::Pair`): emit, request, reply, cancel, tracks (add, write
//! RTP, keyframe requests, remove), data channels, raw and forged
//! signalling messages, close, time, and packet loss, duplication and
//! partitions, each chosen by the input.
//!
//! Both peers run the real ICE, DTLS and SCTP stacks with one shared
//! certificate (`relay_tests::shared_cert`); DTLS and SCTP draw randomness
//! str0m does not let us seed, so bytes differ between runs but events and
//! their timing do not depend on it.
//!
//! Checked after every operation and every simulation step:
//! - every request ends in at most one outcome ([`Event::Reply`] or
//!   [`Event::RequestFailed`]), only for ids the side issued, and
//!   [`Peer::cancel_request`](relay_proto::Peer::cancel_request) succeeds exactly for requests without one;
//!   at the end, once both sides closed, every request has exactly one;
//! - every track added ends in at most one of [`Event::TrackAdded`] and
//!   [`Event::TrackFailed`], and in exactly one once both sides closed
//!   (unless it was removed first); RTP, sender reports and activity come
//!   only for remote tracks announced by [`Event::Track`] and not removed;
//!   keyframe requests only for tracks we added;
//! - no deadline is ever before the simulated `now` (the simulation fires
//!   every deadline on time), except right after a call that takes no
//!   `now`, until the next step; and time always moves on (no livelock);
//! - [`Event::Ready`] fires at most once, and nothing inbound comes before it;
//! - [`Event::Closed`] fires at most once, and no event follows it; a closed
//!   peer refuses emits, requests and replies;
//! - the request counters in [`relay_proto::Stats`] add up once closed.

use std::collections::HashSet;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use relay_proto::wire::Envelope;
use relay_proto::{
    ChannelId, ChannelOptions, Error, Event, InboundRequestId, KeyframeKind, Reliability,
    RequestId, RtpOut, TrackCodec, TrackId, TrackMeta, TrackOptions,
};
use relay_tests::{NetConfig, Pair, Side, config_for};

/// Operations per execution, at most.
const MAX_OPS: usize = 64;
/// Simulation steps per execution, at most; past it the run stops early.
const MAX_STEPS: u64 = 30_000;
/// Steps at one instant that count as a livelock.
const MAX_STEPS_AT_ONE_INSTANT: u32 = 20_000;
/// Simulated time after connecting, at most.
const MAX_TIME: Duration = Duration::from_secs(120);

#[derive(Debug, Arbitrary)]
struct Setup {
    seed: u64,
    latency_ms: u8,
    jitter_ms: u8,
    a_announces: bool,
    b_announces: bool,
    /// Small queues and limits, to reach the refusals.
    tight: bool,
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Who {
    A,
    B,
}

impl Who {
    fn side(self) -> Side {
        match self {
            Who::A => Side::A,
            Who::B => Side::B,
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Size {
    Empty,
    Null,
    Small(u8),
    Medium(u16),
    /// Around the 65,535-byte envelope limit and the fragment size.
    Edge(i8),
    /// Well past one SCTP message (fragmented between our peers).
    Large(u8),
}

impl Size {
    fn payload(&self) -> Option<Bytes> {
        let len = match *self {
            Size::Null => return None,
            Size::Empty => 0,
            Size::Small(n) => usize::from(n),
            Size::Medium(n) => usize::from(n),
            // Base64 grows 4/3: payloads near 49,098 bytes give envelopes
            // near 65,535 bytes.
            Size::Edge(d) => (49_098 + isize::from(d)) as usize,
            Size::Large(n) => 65_536 + usize::from(n) * 4_096,
        };
        Some(Bytes::from(vec![b'p'; len]))
    }
}

#[derive(Debug, Arbitrary)]
enum Timeout {
    Default,
    Millis(u16),
    Secs(u32),
    /// "Never": saturates inside the peer.
    Max,
}

#[derive(Debug, Arbitrary)]
enum Raw {
    /// Arbitrary bytes as one signalling message.
    Bytes(Vec<u8>),
    /// A reply (well-formed envelope) to one of the other side's requests,
    /// pending or not.
    ForgedReply { which: u8, size: Size },
    /// A request reusing the id of one the other side already received.
    ReusedRequestId { which: u8 },
    /// A fragment of a larger envelope.
    Fragment { last: bool, data: Vec<u8> },
}

#[derive(Debug, Arbitrary)]
enum Op {
    Emit {
        who: Who,
        event: u8,
        size: Size,
    },
    Request {
        who: Who,
        timeout: Timeout,
        size: Size,
    },
    Reply {
        who: Who,
        which: u8,
        size: Size,
    },
    /// A reply to an id that was never received.
    ReplyUnknown {
        who: Who,
        id: u64,
    },
    Cancel {
        who: Who,
        which: u8,
    },
    CreateChannel {
        who: Who,
        label: u8,
        ordered: bool,
        reliability: u8,
        limit: u16,
    },
    ChannelWrite {
        who: Who,
        which: u8,
        binary: bool,
        size: Size,
    },
    CloseChannel {
        who: Who,
        which: u8,
    },
    Close {
        who: Who,
    },
    /// Runs this many simulation steps.
    Step {
        steps: u8,
    },
    /// Runs the simulation for this long.
    Advance {
        millis: u16,
    },
    /// The datagrams sent during the next step are lost.
    DropNext,
    /// The datagrams sent during the next step arrive twice.
    DuplicateNext,
    /// Cuts or heals the link.
    Partition {
        cut: bool,
    },
    /// A raw signalling message from this side.
    Raw {
        who: Who,
        raw: Raw,
    },
    /// Adds a track: VP8, Opus, H.264 or an unknown codec, on a payload
    /// type of the input's choice.
    AddTrack {
        who: Who,
        codec: u8,
        payload_type: u8,
        simulcast: bool,
    },
    /// Writes one RTP packet on one of the side's tracks.
    WriteRtp {
        who: Who,
        which: u8,
        seq: u16,
        timestamp: u32,
        marker: bool,
        len: u8,
        other_pt: Option<u8>,
        layer: u8,
    },
    /// Asks for a keyframe on one of the remote's tracks.
    RequestKeyframe {
        who: Who,
        which: u8,
        fir: bool,
    },
    /// Stops relaying one of the side's tracks.
    RemoveTrack {
        who: Who,
        which: u8,
    },
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
    let mut run = Run::connect(&setup);
    for _ in 0..MAX_OPS {
        if u.is_empty() || run.out_of_budget() {
            break;
        }
        let Ok(op) = Op::arbitrary(&mut u) else {
            break;
        };
        if crate::tracing() {
            eprintln!("{:?} {op:?}", run.pair.elapsed());
        }
        run.apply(op);
    }
    run.finish();
}

/// What the checker knows about one side.
#[derive(Default)]
struct Book {
    /// Events of the node's log already checked.
    seen: usize,
    requests: Vec<RequestId>,
    issued: HashSet<RequestId>,
    ended: HashSet<RequestId>,
    /// Ids of inbound requests, in arrival order.
    inbound: Vec<u64>,
    channels: Vec<ChannelId>,
    /// Tracks this side added, with their payload type.
    tracks: Vec<(TrackId, u8)>,
    track_outcomes: HashSet<TrackId>,
    removed: HashSet<TrackId>,
    /// Remote tracks announced and not removed.
    remote_tracks: HashSet<TrackId>,
    remote_track_list: Vec<TrackId>,
    ready: bool,
    closed: bool,
}

struct Run {
    pair: Pair,
    books: [Book; 2],
    stuck: u32,
    connected_at: std::time::Instant,
}

impl Run {
    fn connect(setup: &Setup) -> Run {
        let net = NetConfig {
            latency: Duration::from_millis(u64::from(setup.latency_ms % 51)),
            jitter: Duration::from_millis(u64::from(setup.jitter_ms % 21)),
            loss: 0.0,
            duplicate: 0.0,
        };
        let mut a = config_for(Side::A);
        let mut b = config_for(Side::B);
        a.announce_extensions = setup.a_announces;
        b.announce_extensions = setup.b_announces;
        if setup.tight {
            for c in [&mut a, &mut b] {
                c.max_pending_requests = 4;
                c.max_unanswered_requests = 4;
                c.max_send_queue_bytes = 100_000;
                c.max_message_size = 70_000;
            }
        }
        let mut pair = Pair::new(setup.seed, net, a, b);
        pair.connect();
        let connected_at = pair.now;
        let mut run = Run {
            pair,
            books: [Book::default(), Book::default()],
            stuck: 0,
            connected_at,
        };
        run.check();
        assert!(run.books[0].ready && run.books[1].ready, "both sides Ready");
        run
    }

    fn out_of_budget(&self) -> bool {
        self.pair.steps() >= MAX_STEPS || self.pair.now - self.connected_at > MAX_TIME
    }

    fn apply(&mut self, op: Op) {
        let now = self.pair.now;
        match op {
            Op::Emit { who, event, size } => {
                let closed = self.book(who).closed;
                let event = "e".repeat(usize::from(event % 16));
                let result = self.pair.peer(who.side()).emit(now, &event, size.payload());
                assert!(
                    !(closed && result.is_ok()),
                    "a closed peer accepted an emit"
                );
            }
            Op::Request { who, timeout, size } => {
                let timeout = match timeout {
                    Timeout::Default => None,
                    Timeout::Millis(m) => Some(Duration::from_millis(u64::from(m))),
                    Timeout::Secs(s) => Some(Duration::from_secs(u64::from(s))),
                    Timeout::Max => Some(Duration::MAX),
                };
                let closed = self.book(who).closed;
                let result = self
                    .pair
                    .peer(who.side())
                    .request(now, "r", size.payload(), timeout);
                if let Ok(id) = result {
                    assert!(!closed, "a closed peer accepted a request");
                    let book = self.book_mut(who);
                    assert!(book.issued.insert(id), "request id {id:?} reused");
                    book.requests.push(id);
                }
            }
            Op::Reply { who, which, size } => {
                let book = self.book(who);
                let Some(&id) = pick(&book.inbound, which) else {
                    return;
                };
                let closed = book.closed;
                let result =
                    self.pair
                        .peer(who.side())
                        .reply(now, InboundRequestId(id), size.payload());
                assert!(
                    !(closed && result.is_ok()),
                    "a closed peer accepted a reply"
                );
            }
            Op::ReplyUnknown { who, id } => {
                if self.book(who).inbound.contains(&id) {
                    return;
                }
                let result = self
                    .pair
                    .peer(who.side())
                    .reply(now, InboundRequestId(id), None);
                assert!(
                    matches!(result, Err(Error::UnknownRequest(_) | Error::Closed)),
                    "a reply to an id never received: {result:?}"
                );
            }
            Op::Cancel { who, which } => {
                let book = self.book(who);
                let Some(&id) = pick(&book.requests, which) else {
                    return;
                };
                let pending = !book.ended.contains(&id);
                let cancelled = self.pair.peer(who.side()).cancel_request(now, id);
                assert_eq!(
                    cancelled, pending,
                    "cancel_request disagrees with the outcomes reported for {id:?}"
                );
            }
            Op::CreateChannel {
                who,
                label,
                ordered,
                reliability,
                limit,
            } => {
                let reliability = match reliability % 3 {
                    0 => Reliability::Reliable,
                    1 => Reliability::MaxRetransmits(limit),
                    _ => Reliability::MaxLifetime(Duration::from_millis(u64::from(limit))),
                };
                let options = if ordered {
                    ChannelOptions::default()
                } else {
                    ChannelOptions::unordered(reliability)
                };
                let label = format!("c{}", label % 8);
                if let Ok(id) = self
                    .pair
                    .peer(who.side())
                    .create_data_channel(now, &label, options)
                {
                    self.book_mut(who).channels.push(id);
                }
            }
            Op::ChannelWrite {
                who,
                which,
                binary,
                size,
            } => {
                let Some(&id) = pick(&self.book(who).channels, which) else {
                    return;
                };
                let data = size.payload().unwrap_or_default();
                let _ = self
                    .pair
                    .peer(who.side())
                    .channel_write(now, id, binary, &data);
            }
            Op::CloseChannel { who, which } => {
                let Some(&id) = pick(&self.book(who).channels, which) else {
                    return;
                };
                let _ = self.pair.peer(who.side()).close_data_channel(now, id);
            }
            Op::Close { who } => self.pair.peer(who.side()).close(now),
            Op::Step { steps } => {
                for _ in 0..steps {
                    if !self.step() {
                        break;
                    }
                }
            }
            Op::Advance { millis } => self.advance(Duration::from_millis(u64::from(millis))),
            Op::DropNext => {
                self.pair.net.loss = 1.0;
                self.step();
                self.pair.net.loss = 0.0;
            }
            Op::DuplicateNext => {
                self.pair.net.duplicate = 1.0;
                self.step();
                self.pair.net.duplicate = 0.0;
            }
            Op::Partition { cut } => self.pair.partitioned = cut,
            Op::AddTrack {
                who,
                codec,
                payload_type,
                simulcast,
            } => {
                let codec = match codec % 4 {
                    0 => TrackCodec::vp8(payload_type),
                    1 => TrackCodec::opus(payload_type),
                    2 => TrackCodec::h264(payload_type),
                    _ => TrackCodec::new("text/plain", 90_000, 0, payload_type),
                };
                let closed = self.book(who).closed;
                let meta =
                    TrackMeta::new("stream", format!("track{}", self.book(who).tracks.len()));
                let mut options = TrackOptions::default();
                if simulcast {
                    options.simulcast = vec!["q".into(), "h".into()];
                }
                let added = self
                    .pair
                    .peer(who.side())
                    .add_track_with(now, meta, codec, options);
                if let Ok(id) = added {
                    assert!(!closed, "a closed peer accepted a track");
                    let book = self.book_mut(who);
                    assert!(
                        book.tracks.iter().all(|(t, _)| *t != id),
                        "track id {id:?} reused"
                    );
                    book.tracks.push((id, payload_type));
                }
            }
            Op::WriteRtp {
                who,
                which,
                seq,
                timestamp,
                marker,
                len,
                other_pt,
                layer,
            } => {
                let Some(&(track, pt)) = pick(&self.book(who).tracks, which) else {
                    return;
                };
                let packet = RtpOut::new(
                    other_pt.unwrap_or(pt),
                    seq,
                    timestamp,
                    marker,
                    Bytes::from(vec![0x5a; usize::from(len)]),
                )
                .with_layer(layer % 3);
                let _ = self.pair.peer(who.side()).write_rtp(now, track, packet);
            }
            Op::RequestKeyframe { who, which, fir } => {
                let Some(&track) = pick(&self.book(who).remote_track_list, which) else {
                    return;
                };
                let kind = if fir {
                    KeyframeKind::Fir
                } else {
                    KeyframeKind::Pli
                };
                let _ = self
                    .pair
                    .peer(who.side())
                    .request_keyframe(now, track, kind);
            }
            Op::RemoveTrack { who, which } => {
                let Some(&(track, _)) = pick(&self.book(who).tracks, which) else {
                    return;
                };
                if self.pair.peer(who.side()).remove_track(now, track).is_ok() {
                    // A pending one ends with TrackFailed (cancelled).
                    self.book_mut(who).removed.insert(track);
                }
            }
            Op::Raw { who, raw } => {
                let other = self.book(match who {
                    Who::A => Who::B,
                    Who::B => Who::A,
                });
                let bytes = match raw {
                    Raw::Bytes(b) => b,
                    Raw::ForgedReply { which, size } => {
                        let Some(&id) = pick(&other.requests, which) else {
                            return;
                        };
                        Envelope {
                            id: id.0,
                            reply: true,
                            event: "r".into(),
                            payload: size.payload(),
                        }
                        .encode()
                    }
                    Raw::ReusedRequestId { which } => {
                        let Some(&id) = pick(&self.book(who).inbound, which) else {
                            return;
                        };
                        Envelope {
                            id,
                            reply: false,
                            event: "again".into(),
                            payload: None,
                        }
                        .encode()
                    }
                    Raw::Fragment { last, mut data } => {
                        data.insert(0, if last { 0x02 } else { 0x01 });
                        data
                    }
                };
                self.pair
                    .peer(who.side())
                    .send_raw_signal_message_for_testing(now, bytes);
            }
        }
        self.pair.collect();
        self.check();
    }

    fn book(&self, who: Who) -> &Book {
        &self.books[who.side() as usize]
    }

    fn book_mut(&mut self, who: Who) -> &mut Book {
        &mut self.books[who.side() as usize]
    }

    /// One simulation step, checked; `false` when nothing is scheduled or
    /// the budget is spent.
    fn step(&mut self) -> bool {
        if self.out_of_budget() {
            return false;
        }
        let before = self.pair.now;
        if !self.pair.step() {
            return false;
        }
        if self.pair.now == before {
            self.stuck += 1;
            assert!(
                self.stuck < MAX_STEPS_AT_ONE_INSTANT,
                "livelock: {} steps without time moving at {:?}",
                self.stuck,
                self.pair.elapsed()
            );
        } else {
            self.stuck = 0;
        }
        self.check();
        true
    }

    /// Runs the simulation until `span` has passed (or the budget is spent).
    fn advance(&mut self, span: Duration) {
        let until = self.pair.now + span;
        while self.pair.now < until {
            if !self.step() {
                if !self.out_of_budget() {
                    // Nothing scheduled: the clock may jump.
                    self.pair.now = until;
                }
                break;
            }
        }
    }

    /// Checks the invariants on everything reported since the last check.
    fn check(&mut self) {
        let now = self.pair.now;
        for side in [Side::A, Side::B] {
            let i = side as usize;
            let node = &self.pair.nodes[i];
            let book = &mut self.books[i];
            for (at, event) in &node.log[book.seen..] {
                assert!(
                    !book.closed,
                    "{side:?}: event after Closed at {at:?}: {event:?}"
                );
                match event {
                    Event::Ready => {
                        assert!(!book.ready, "{side:?}: Ready fired twice");
                        book.ready = true;
                    }
                    Event::Reply { id, .. } | Event::RequestFailed { id, .. } => {
                        assert!(
                            book.issued.contains(id),
                            "{side:?}: outcome for unknown {id:?}"
                        );
                        assert!(
                            book.ended.insert(*id),
                            "{side:?}: second outcome for {id:?}"
                        );
                    }
                    Event::Request(r) => {
                        assert!(book.ready, "{side:?}: request before Ready");
                        book.inbound.push(r.id.0);
                    }
                    Event::ChannelOpen { id, remote, .. } => {
                        assert!(book.ready, "{side:?}: channel open before Ready");
                        if *remote {
                            book.channels.push(*id);
                        }
                    }
                    Event::ChannelData { .. } => {
                        assert!(book.ready, "{side:?}: channel data before Ready")
                    }
                    Event::TrackAdded(track) | Event::TrackFailed { track, .. } => {
                        assert!(
                            book.tracks.iter().any(|(t, _)| t == track),
                            "{side:?}: outcome for unknown track {track:?}"
                        );
                        assert!(
                            book.track_outcomes.insert(*track),
                            "{side:?}: second outcome for track {track:?}: {event:?}"
                        );
                    }
                    Event::Track { track, .. } => {
                        assert!(book.ready, "{side:?}: remote track before Ready");
                        assert!(
                            book.remote_tracks.insert(*track),
                            "{side:?}: remote track {track:?} announced twice"
                        );
                        book.remote_track_list.push(*track);
                    }
                    Event::Rtp(rtp) => assert!(
                        book.remote_tracks.contains(&rtp.track),
                        "{side:?}: RTP on {:?}, not an announced remote track",
                        rtp.track
                    ),
                    Event::SenderReport { track, .. }
                    | Event::TrackInactive(track)
                    | Event::TrackActive(track) => assert!(
                        book.remote_tracks.contains(track),
                        "{side:?}: {event:?} for a track not announced"
                    ),
                    Event::TrackRemoved(track) => assert!(
                        book.remote_tracks.remove(track),
                        "{side:?}: removal of a track not announced: {track:?}"
                    ),
                    Event::KeyframeRequest { track, .. } => assert!(
                        book.tracks.iter().any(|(t, _)| t == track),
                        "{side:?}: keyframe request for a track we did not add"
                    ),
                    Event::Closed(_) => book.closed = true,
                    _ => {}
                }
            }
            book.seen = node.log.len();
            // The log is the checker's; the test-facing queue is not read.
            self.pair.nodes[i].events.clear();
            // Every call takes the time: the deadline is never in the past.
            if let Some(t) = self.pair.nodes[i].peer.poll_timeout() {
                assert!(
                    t >= now,
                    "{side:?}: deadline {:?} is before now {:?}",
                    t - self.pair.start,
                    now - self.pair.start
                );
            }
            let stats = self.pair.nodes[i].peer.stats();
            let ended = stats.requests_answered + stats.requests_timed_out + stats.requests_failed;
            let book = &self.books[i];
            if book.closed {
                assert_eq!(
                    stats.requests_sent, ended,
                    "{side:?}: request counters do not add up once closed: {stats:?}"
                );
            } else {
                assert!(
                    stats.requests_sent >= ended,
                    "{side:?}: more requests ended than sent: {stats:?}"
                );
            }
        }
    }

    fn finish(mut self) {
        self.pair.partitioned = false;
        // Let what is in flight land, then close both sides and let the
        // goodbyes cross.
        self.advance(Duration::from_millis(200));
        let now = self.pair.now;
        for side in [Side::A, Side::B] {
            self.pair.peer(side).close(now);
        }
        self.pair.collect();
        self.check();
        self.advance(Duration::from_millis(500));
        for (i, book) in self.books.iter().enumerate() {
            assert!(book.closed, "side {i}: close() did not report Closed");
            for id in &book.issued {
                assert!(book.ended.contains(id), "side {i}: {id:?} never ended");
            }
            for (track, _) in &book.tracks {
                assert!(
                    book.track_outcomes.contains(track) || book.removed.contains(track),
                    "side {i}: track {track:?} was never accepted or failed"
                );
            }
        }
        for side in [Side::A, Side::B] {
            let peer = self.pair.peer(side);
            assert!(matches!(peer.emit(now, "x", None), Err(Error::Closed)));
            assert!(matches!(
                peer.request(now, "x", None, None),
                Err(Error::Closed)
            ));
        }
    }
}

fn pick<T>(items: &[T], which: u8) -> Option<&T> {
    if items.is_empty() {
        None
    } else {
        items.get(usize::from(which) % items.len())
    }
}
