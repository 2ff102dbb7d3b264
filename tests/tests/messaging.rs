//! Emit, request and reply over the signalling channel.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use relay_proto::{Error, Event, RequestError, RequestId};
use relay_tests::{NetConfig, Pair, Side, config_for};

fn connected(seed: u64, net: NetConfig) -> Pair {
    let mut pair = Pair::with_net(seed, net);
    pair.connect();
    pair
}

fn replies(pair: &Pair, side: Side) -> HashMap<RequestId, Vec<Option<Bytes>>> {
    let mut out: HashMap<RequestId, Vec<Option<Bytes>>> = HashMap::new();
    for (_, e) in &pair.nodes[side as usize].log {
        if let Event::Reply { id, payload } = e {
            out.entry(*id).or_default().push(payload.clone());
        }
    }
    out
}

#[test]
fn request_and_reply_both_ways() {
    let mut pair = connected(1, NetConfig::rtt(Duration::from_millis(20)));
    for side in [Side::A, Side::B] {
        let now = pair.now;
        let id = pair
            .peer(side)
            .request(now, "ping", Some(Bytes::from_static(b"hello")), None)
            .unwrap();
        pair.collect();
        pair.drive_until(Duration::from_secs(2), |p| {
            p.nodes[side.other() as usize]
                .events
                .iter()
                .any(|(_, e)| matches!(e, Event::Request(_)))
        });
        let req = pair
            .take_events(side.other())
            .into_iter()
            .find_map(|e| match e {
                Event::Request(r) => Some(r),
                _ => None,
            })
            .unwrap();
        assert_eq!(req.event, "ping");
        assert_eq!(req.payload.as_deref(), Some(&b"hello"[..]));
        let now = pair.now;
        pair.peer(side.other())
            .reply(now, req.id, Some(Bytes::from_static(b"pong")))
            .unwrap();
        let now = pair.now;
        // A second reply to the same request is refused.
        assert!(matches!(
            pair.peer(side.other()).reply(now, req.id, None),
            Err(Error::UnknownRequest(_))
        ));
        pair.collect();
        pair.drive_until(Duration::from_secs(2), |p| {
            replies(p, side).contains_key(&id)
        });
        assert_eq!(
            replies(&pair, side)[&id],
            vec![Some(Bytes::from_static(b"pong"))]
        );
        let stats = pair.peer(side).stats().clone();
        assert_eq!(stats.requests_sent, 1);
        assert_eq!(stats.requests_answered, 1);
    }
}

#[test]
fn emits_cross_in_order_both_ways_with_null_payloads() {
    let mut pair = connected(2, NetConfig::rtt(Duration::from_millis(10)));
    for side in [Side::A, Side::B] {
        for i in 0..50u32 {
            let payload = (i % 5 != 0).then(|| Bytes::from(i.to_string()));
            let now = pair.now;
            pair.peer(side).emit(now, "tick", payload).unwrap();
        }
        pair.collect();
        pair.drive_for(Duration::from_millis(200));
        let got: Vec<_> = pair
            .take_events(side.other())
            .into_iter()
            .filter_map(|e| match e {
                Event::Request(r) => Some(r.payload),
                _ => None,
            })
            .collect();
        let want: Vec<_> = (0..50u32)
            .map(|i| (i % 5 != 0).then(|| Bytes::from(i.to_string())))
            .collect();
        assert_eq!(got, want);
    }
}

/// 1,000 requests in flight under 5 % loss with reordering and duplication:
/// each is answered exactly once, and emits arrive once, in order.
#[test]
fn a_thousand_requests_under_loss_each_answered_once() {
    let net = NetConfig {
        latency: Duration::from_millis(20),
        jitter: Duration::from_millis(15),
        loss: 0.05,
        duplicate: 0.02,
    };
    let mut pair = connected(3, net);
    pair.node(Side::B).auto_echo = true;
    let now = pair.now;
    let mut ids = HashMap::new();
    for i in 0..1000u32 {
        let id = pair
            .peer(Side::A)
            .request(
                now,
                "echo",
                Some(Bytes::from(format!("req-{i}"))),
                Some(Duration::from_secs(30)),
            )
            .unwrap();
        ids.insert(id, i);
        let now = pair.now;
        pair.peer(Side::A)
            .emit(now, "seq", Some(Bytes::from(i.to_string())))
            .unwrap();
    }
    pair.collect();
    pair.drive_until(Duration::from_secs(60), |p| {
        replies(p, Side::A).len() == 1000
            || p.nodes[0]
                .log
                .iter()
                .any(|(_, e)| matches!(e, Event::RequestFailed { .. }))
    });
    let got = replies(&pair, Side::A);
    let failed = pair.nodes[0]
        .log
        .iter()
        .filter(|(_, e)| matches!(e, Event::RequestFailed { .. }))
        .count();
    assert_eq!(
        failed, 0,
        "a request failed (timeouts count as failures here)"
    );
    assert_eq!(got.len(), 1000);
    for (id, i) in &ids {
        let r = &got[id];
        assert_eq!(r.len(), 1, "request {i} answered {} times", r.len());
        assert_eq!(r[0].as_deref(), Some(format!("req-{i}").as_bytes()));
    }
    // Let late duplicates settle, then check nothing was answered twice.
    pair.drive_for(Duration::from_secs(2));
    assert!(replies(&pair, Side::A).values().all(|r| r.len() == 1));
    let seq: Vec<u32> = pair.nodes[1]
        .log
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Request(r) if r.event == "seq" => Some(
                std::str::from_utf8(r.payload.as_ref().unwrap())
                    .unwrap()
                    .parse()
                    .unwrap(),
            ),
            _ => None,
        })
        .collect();
    assert_eq!(seq, (0..1000).collect::<Vec<_>>());
    println!(
        "1,000 requests answered after {:?} of simulated time; {} datagrams lost",
        pair.elapsed(),
        pair.lost
    );
}

#[test]
fn an_unanswered_request_times_out_and_its_late_reply_is_dropped() {
    let mut pair = connected(4, NetConfig::rtt(Duration::from_millis(10)));
    let now = pair.now;
    let id = pair
        .peer(Side::A)
        .request(now, "slow", None, Some(Duration::from_millis(500)))
        .unwrap();
    pair.collect();
    let sent_at = pair.elapsed();
    pair.drive_until(Duration::from_secs(2), |p| {
        p.nodes[0]
            .log
            .iter()
            .any(|(_, e)| matches!(e, Event::RequestFailed { .. }))
    });
    let (at, e) = pair.nodes[0]
        .log
        .iter()
        .find(|(_, e)| matches!(e, Event::RequestFailed { .. }))
        .unwrap()
        .clone();
    assert_eq!(
        e,
        Event::RequestFailed {
            id,
            reason: RequestError::TimedOut
        }
    );
    let waited = at - sent_at;
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_millis(510),
        "{waited:?}"
    );
    // The remote answers too late: dropped and counted, no event.
    let req = pair
        .take_events(Side::B)
        .into_iter()
        .find_map(|e| match e {
            Event::Request(r) => Some(r),
            _ => None,
        })
        .unwrap();
    let now = pair.now;
    pair.peer(Side::B)
        .reply(now, req.id, Some("late".into()))
        .unwrap();
    pair.collect();
    pair.drive_for(Duration::from_millis(100));
    assert!(replies(&pair, Side::A).is_empty());
    let stats = pair.peer(Side::A).stats();
    assert_eq!(stats.requests_timed_out, 1);
    assert_eq!(stats.drops.unknown_replies, 1);
}

#[test]
fn the_default_timeout_comes_from_the_config() {
    let mut a = config_for(Side::A);
    a.request_timeout = Duration::from_millis(250);
    let mut pair = Pair::new(5, NetConfig::ideal(), a, config_for(Side::B));
    pair.connect();
    let now = pair.now;
    let _id = pair.peer(Side::A).request(now, "x", None, None).unwrap();
    pair.collect();
    let start = pair.elapsed();
    pair.drive_until(Duration::from_secs(1), |p| {
        p.nodes[0]
            .log
            .iter()
            .any(|(_, e)| matches!(e, Event::RequestFailed { .. }))
    });
    let took = pair.elapsed() - start;
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(260),
        "{took:?}"
    );
}

#[test]
fn pending_requests_are_capped() {
    let mut a = config_for(Side::A);
    a.max_pending_requests = 10;
    let mut pair = Pair::new(6, NetConfig::ideal(), a, config_for(Side::B));
    pair.connect();
    let now = pair.now;
    for _ in 0..10 {
        let _ = pair.peer(Side::A).request(now, "x", None, None).unwrap();
    }
    assert!(matches!(
        pair.peer(Side::A).request(now, "x", None, None),
        Err(Error::TooManyRequests(10))
    ));
}

#[test]
fn requests_made_before_ready_are_sent_after_it_and_nothing_arrives_before_ready() {
    let mut pair = Pair::with_net(7, NetConfig::rtt(Duration::from_millis(20)));
    pair.node(Side::B).auto_echo = true;
    let now = pair.now;
    let _offer_made = pair.peer(Side::A).create_offer(now);
    // Not signalled yet: build a fresh pair properly instead.
    let mut pair = Pair::with_net(7, NetConfig::rtt(Duration::from_millis(20)));
    pair.node(Side::B).auto_echo = true;
    pair.signal();
    let now = pair.now;
    let id = pair
        .peer(Side::A)
        .request(now, "early", Some("x".into()), None)
        .unwrap();
    let now = pair.now;
    pair.peer(Side::A).emit(now, "early-emit", None).unwrap();
    pair.collect();
    pair.drive_until(Duration::from_secs(2), |p| {
        replies(p, Side::A).contains_key(&id)
    });
    for node in &pair.nodes {
        let first = node
            .log
            .iter()
            .position(|(_, e)| *e == Event::Ready)
            .unwrap();
        assert!(
            node.log[..first]
                .iter()
                .all(|(_, e)| !matches!(e, Event::Request(_) | Event::Reply { .. })),
            "a message was reported before Ready"
        );
    }
}

#[test]
fn toward_a_base_peer_envelopes_stop_at_65535_bytes() {
    let mut b = config_for(Side::B);
    b.announce_extensions = false;
    let mut pair = Pair::new(
        8,
        NetConfig::rtt(Duration::from_millis(4)),
        config_for(Side::A),
        b,
    );
    pair.connect();
    pair.node(Side::B).auto_echo = true;
    // Envelope overhead for event "big" and a large id: find the largest
    // payload that fits by the codec's own measure.
    let overhead = relay_proto::wire::Envelope {
        id: u64::MAX,
        reply: false,
        event: "big".into(),
        payload: Some(Bytes::new()),
    }
    .encoded_len();
    let max_payload = (65_535 - overhead) / 4 * 3;
    println!("largest payload toward a base peer: {max_payload} bytes");
    assert!(max_payload > 49_000);
    let now = pair.now;
    let id = pair
        .peer(Side::A)
        .request(now, "big", Some(Bytes::from(vec![7u8; max_payload])), None)
        .unwrap();
    let too_big = pair.peer(Side::A).request(
        now,
        "big",
        Some(Bytes::from(vec![7u8; max_payload + 30])),
        None,
    );
    assert!(
        matches!(too_big, Err(Error::MessageTooLarge { limit: 65_535, .. })),
        "{too_big:?}"
    );
    pair.collect();
    pair.drive_until(Duration::from_secs(5), |p| {
        replies(p, Side::A).contains_key(&id)
    });
    assert_eq!(
        replies(&pair, Side::A)[&id][0].as_ref().unwrap().len(),
        max_payload
    );
    // The channel stays usable after the refusal.
    let now = pair.now;
    let id2 = pair
        .peer(Side::A)
        .request(now, "small", None, None)
        .unwrap();
    pair.collect();
    pair.drive_until(Duration::from_secs(2), |p| {
        replies(p, Side::A).contains_key(&id2)
    });
}

#[test]
fn between_our_peers_a_megabyte_crosses_and_more_is_refused() {
    let mut pair = connected(9, NetConfig::rtt(Duration::from_millis(10)));
    pair.node(Side::B).auto_echo = true;
    let overhead = relay_proto::wire::Envelope {
        id: u64::MAX,
        reply: true,
        event: "big".into(),
        payload: Some(Bytes::new()),
    }
    .encoded_len();
    let max_payload = (1024 * 1024 - overhead) / 4 * 3;
    let payload: Bytes = (0..max_payload)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    let now = pair.now;
    let id = pair
        .peer(Side::A)
        .request(now, "big", Some(payload.clone()), None)
        .unwrap();
    assert!(matches!(
        pair.peer(Side::A).request(
            now,
            "big",
            Some(Bytes::from(vec![0u8; max_payload + 30])),
            None
        ),
        Err(Error::MessageTooLarge {
            limit: 1_048_576,
            ..
        })
    ));
    pair.collect();
    pair.drive_until(Duration::from_secs(10), |p| {
        replies(p, Side::A).contains_key(&id)
    });
    assert_eq!(replies(&pair, Side::A)[&id][0].as_ref(), Some(&payload));
    println!("1 MiB request and reply crossed in {:?}", pair.elapsed());
}

#[test]
fn malformed_and_oversized_messages_are_dropped_and_the_channel_survives() {
    let mut b = config_for(Side::B);
    b.max_message_size = 100_000;
    let mut pair = Pair::new(
        10,
        NetConfig::rtt(Duration::from_millis(4)),
        config_for(Side::A),
        b,
    );
    pair.connect();
    pair.node(Side::B).auto_echo = true;
    for junk in [
        &b"not json"[..],
        b"{\"id\":\"x\"}",
        b"[]",
        b"{\"id\":1,\"payload\":\"***\"}",
    ] {
        let now = pair.now;
        pair.peer(Side::A)
            .send_raw_signal_message_for_testing(now, junk.to_vec());
    }
    // A fragment run over B's limit (A thinks B allows 100,000 bytes; we
    // bypass A's check to play a broken sender).
    let mut big = vec![b'{'];
    big.extend(std::iter::repeat_n(b'a', 200_000));
    for chunk in big
        .chunks(60_000)
        .collect::<Vec<_>>()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut m = vec![if i == 3 { 2u8 } else { 1u8 }];
            m.extend_from_slice(c);
            m
        })
    {
        let now = pair.now;
        pair.peer(Side::A)
            .send_raw_signal_message_for_testing(now, chunk);
    }
    pair.collect();
    let now = pair.now;
    let id = pair
        .peer(Side::A)
        .request(now, "after", None, None)
        .unwrap();
    pair.collect();
    pair.drive_until(Duration::from_secs(5), |p| {
        replies(p, Side::A).contains_key(&id)
    });
    let drops = pair.peer(Side::B).stats().drops.clone();
    println!("{drops:?}");
    assert_eq!(drops.bad_envelopes, 4);
    assert_eq!(drops.oversized_messages, 1);
}

#[test]
fn a_request_flood_the_application_ignores_stays_bounded() {
    let mut b = config_for(Side::B);
    b.max_unanswered_requests = 100;
    let mut pair = Pair::new(11, NetConfig::ideal(), config_for(Side::A), b);
    pair.connect();
    for i in 0..1000u32 {
        let now = pair.now;
        pair.peer(Side::A)
            .emit(now, "flood", Some(Bytes::from(i.to_string())))
            .unwrap();
    }
    pair.collect();
    pair.drive_for(Duration::from_millis(500));
    let reqs: Vec<_> = pair
        .take_events(Side::B)
        .into_iter()
        .filter_map(|e| match e {
            Event::Request(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(reqs.len(), 1000, "every message is still surfaced");
    assert_eq!(pair.peer(Side::B).stats().drops.unanswered_evicted, 900);
    let now = pair.now;
    // The newest are still answerable, the oldest are forgotten.
    assert!(pair.peer(Side::B).reply(now, reqs[999].id, None).is_ok());
    let now = pair.now;
    assert!(matches!(
        pair.peer(Side::B).reply(now, reqs[0].id, None),
        Err(Error::UnknownRequest(_))
    ));
    let ids: HashSet<u64> = reqs.iter().map(|r| r.id.0).collect();
    assert_eq!(ids.len(), 1000, "emit ids are distinct");
}

#[test]
fn a_cancelled_request_reports_once_and_ignores_its_reply() {
    let mut pair = connected(12, NetConfig::rtt(Duration::from_millis(10)));
    pair.node(Side::B).auto_echo = true;
    let now = pair.now;
    let id = pair.peer(Side::A).request(now, "echo", None, None).unwrap();
    let now = pair.now;
    assert!(pair.peer(Side::A).cancel_request(now, id));
    let now = pair.now;
    assert!(!pair.peer(Side::A).cancel_request(now, id));
    pair.collect();
    pair.drive_for(Duration::from_millis(100));
    let evs: Vec<_> = pair.take_events(Side::A);
    assert_eq!(
        evs.iter()
            .filter(|e| matches!(
                e,
                Event::RequestFailed {
                    reason: RequestError::Cancelled,
                    ..
                }
            ))
            .count(),
        1
    );
    assert!(!evs.iter().any(|e| matches!(e, Event::Reply { .. })));
    assert_eq!(pair.peer(Side::A).stats().drops.unknown_replies, 1);
}

/// `Duration::MAX` is a natural way to say "never": it must not overflow.
#[test]
fn never_ending_timeouts_do_not_overflow() {
    let never = Duration::MAX;
    let mut a = config_for(Side::A);
    a.connect_timeout = never;
    a.disconnect_grace = never;
    a.request_timeout = never;
    a.channel_open_timeout = never;
    a.keyframe_request_interval = never;
    a.track_inactive_after = Some(never);
    let mut pair = Pair::new(13, NetConfig::ideal(), a, config_for(Side::B));
    pair.connect();
    let now = pair.now;
    let id = pair
        .peer(Side::A)
        .request(now, "x", None, Some(never))
        .unwrap();
    let _default = pair.peer(Side::A).request(now, "y", None, None).unwrap();
    pair.collect();
    pair.drive_for(Duration::from_secs(2));
    assert!(
        !pair.nodes[0]
            .log
            .iter()
            .any(|(_, e)| matches!(e, Event::RequestFailed { id: r, .. } if *r == id))
    );
    assert!(pair.peer(Side::A).poll_timeout().is_some());
}
