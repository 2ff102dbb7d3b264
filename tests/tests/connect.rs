//! Connecting two peers on the simulated network, and the signal exchange.

use std::time::Duration;

use relay_proto::wire::Signal;
use relay_proto::{CloseReason, Config, Error, Event, Peer, PeerMeta, PeerState};
use relay_tests::{NetConfig, Pair, Side, config_for};
use serde_json::Value;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/fixtures/ion-sfu-wire/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Key names and JSON kinds of a tree, for shape comparison.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().take(1).map(shape).collect()),
        Value::String(_) => Value::String("string".into()),
        Value::Number(_) => Value::String("number".into()),
        Value::Bool(_) => Value::String("bool".into()),
        Value::Null => Value::Null,
    }
}

#[test]
fn both_sides_ready_at_zero_rtt() {
    let mut pair = Pair::with_net(1, NetConfig::ideal());
    let (a, b) = pair.connect();
    println!("0 ms RTT: A ready after {a:?}, B ready after {b:?}");
    assert!(a <= Duration::from_millis(20), "A took {a:?}");
    assert!(b <= Duration::from_millis(20), "B took {b:?}");
    assert_eq!(pair.peer(Side::A).state(), PeerState::Ready);
    assert!(pair.peer(Side::A).remote_speaks_extensions());
}

#[test]
fn both_sides_ready_at_50ms_rtt() {
    let mut pair = Pair::with_net(2, NetConfig::rtt(Duration::from_millis(50)));
    let (a, b) = pair.connect();
    println!("50 ms RTT: A ready after {a:?}, B ready after {b:?}");
    // With fast setup: ICE (1 RTT) and DTLS 1.2 (2 RTT); no SCTP handshake,
    // no DCEP round trip.
    assert!(
        pair.peer(Side::A)
            .feature_enabled(relay_proto::wire::FEATURE_FAST_SETUP)
    );
    assert!(
        pair.peer(Side::B)
            .feature_enabled(relay_proto::wire::FEATURE_FAST_SETUP)
    );
    assert!(a <= Duration::from_millis(200), "A took {a:?}");
    assert!(b <= Duration::from_millis(200), "B took {b:?}");
}

#[test]
fn toward_a_base_peer_setup_takes_the_full_handshakes() {
    let mut b = config_for(Side::B);
    b.announce_extensions = false;
    let mut pair = Pair::new(
        21,
        NetConfig::rtt(Duration::from_millis(50)),
        config_for(Side::A),
        b,
    );
    let (a, b) = pair.connect();
    println!("50 ms RTT, base answerer: A ready after {a:?}, B ready after {b:?}");
    // ICE, DTLS, the SCTP handshake (2 RTT) and DCEP.
    assert!(
        a > Duration::from_millis(200) && a <= Duration::from_millis(400),
        "A took {a:?}"
    );
    assert!(b <= Duration::from_millis(400), "B took {b:?}");
    assert!(
        !pair
            .peer(Side::A)
            .feature_enabled(relay_proto::wire::FEATURE_FAST_SETUP)
    );
}

#[test]
fn ready_under_loss_and_reordering() {
    let net = NetConfig {
        latency: Duration::from_millis(10),
        jitter: Duration::from_millis(10),
        loss: 0.1,
        duplicate: 0.05,
    };
    let mut pair = Pair::with_net(3, net);
    let (a, b) = pair.connect();
    println!("10% loss: A ready after {a:?}, B ready after {b:?}");
    assert!(a < Duration::from_secs(10) && b < Duration::from_secs(10));
}

#[test]
fn a_go_shaped_offer_is_answered_in_kind() {
    let mut peer = Peer::new(
        PeerMeta::new("rust", "s"),
        config_for(Side::B),
        std::time::Instant::now(),
    )
    .unwrap();
    let offer = fixture("offer.json");
    let answer = peer
        .accept_offer(std::time::Instant::now(), &offer)
        .unwrap();
    let ours: Value = serde_json::from_slice(&answer).unwrap();
    let theirs: Value = serde_json::from_slice(&fixture("answer.json")).unwrap();
    // A base offer gets a base answer: no extension key, same shape as Go's.
    assert_eq!(shape(&ours), shape(&theirs), "answer: {ours}");
    assert!(ours.get("relay").is_none());
}

#[test]
fn our_offer_has_every_key_the_fixtures_have() {
    let mut pair = Pair::with_net(4, NetConfig::ideal());
    let now = pair.now;
    let offer = pair.peer(Side::A).create_offer(now).unwrap();
    let mut ours: Value = serde_json::from_slice(&offer).unwrap();
    let relay = ours.as_object_mut().unwrap().remove("relay");
    let theirs: Value = serde_json::from_slice(&fixture("offer.json")).unwrap();
    assert_eq!(shape(&ours), shape(&theirs));
    let relay = relay.expect("our offer announces the extensions");
    assert_eq!(relay["version"], 1);
    assert_eq!(relay["maxMessageSize"], 1024 * 1024);
    // Lower-case hex fingerprint, as Go sends it.
    let fp = ours["dtlsParameters"]["fingerprints"][0]["value"]
        .as_str()
        .unwrap();
    assert_eq!(fp, fp.to_lowercase());
    assert_eq!(ours["dtlsParameters"]["role"], 1);
}

#[test]
fn extensions_only_when_both_announce() {
    for (a_on, b_on) in [(false, true), (true, false), (false, false)] {
        let mut a = config_for(Side::A);
        a.announce_extensions = a_on;
        let mut b = config_for(Side::B);
        b.announce_extensions = b_on;
        let mut pair = Pair::new(5, NetConfig::rtt(Duration::from_millis(10)), a, b);
        let now = pair.now;
        let offer = pair.peer(Side::A).create_offer(now).unwrap();
        let answer = pair.peer(Side::B).accept_offer(now, &offer).unwrap();
        let answer_json: Value = serde_json::from_slice(&answer).unwrap();
        assert!(
            answer_json.get("relay").is_none(),
            "answer announces though one side does not ({a_on}, {b_on})"
        );
        pair.peer(Side::A).accept_answer(now, &answer).unwrap();
        pair.collect();
        pair.drive_until(Duration::from_secs(5), |p| {
            p.ready_at(Side::A).is_some() && p.ready_at(Side::B).is_some()
        });
        assert!(!pair.peer(Side::A).remote_speaks_extensions());
        assert!(!pair.peer(Side::B).remote_speaks_extensions());
        assert_eq!(pair.peer(Side::A).remote_max_message_size(), 65_535);
    }
}

#[test]
fn signal_out_of_order_is_an_error() {
    let mut pair = Pair::with_net(6, NetConfig::ideal());
    let now = pair.now;
    // An answer before any offer.
    assert!(matches!(
        pair.peer(Side::A).accept_answer(now, b"{}"),
        Err(Error::SignalState(_))
    ));
    let offer = pair.peer(Side::A).create_offer(now).unwrap();
    assert!(matches!(
        pair.peer(Side::A).create_offer(now),
        Err(Error::SignalState(_))
    ));
    assert!(matches!(
        pair.peer(Side::A).accept_offer(now, &offer),
        Err(Error::SignalState(_))
    ));
    let answer = pair.peer(Side::B).accept_offer(now, &offer).unwrap();
    assert!(matches!(
        pair.peer(Side::B).accept_offer(now, &offer),
        Err(Error::SignalState(_))
    ));
    assert!(matches!(
        pair.peer(Side::B).accept_answer(now, &answer),
        Err(Error::SignalState(_))
    ));
    pair.peer(Side::A).accept_answer(now, &answer).unwrap();
    assert!(matches!(
        pair.peer(Side::A).accept_answer(now, &answer),
        Err(Error::SignalState(_))
    ));
}

#[test]
fn bad_answers_are_clear_errors_and_leave_the_offer_waiting() {
    let mut pair = Pair::with_net(7, NetConfig::ideal());
    let now = pair.now;
    let offer = pair.peer(Side::A).create_offer(now).unwrap();
    let answer = pair.peer(Side::B).accept_offer(now, &offer).unwrap();
    let good: Value = serde_json::from_slice(&answer).unwrap();

    let mutate = |f: &dyn Fn(&mut Value)| {
        let mut v = good.clone();
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not json", b"hello".to_vec()),
        ("array", b"[1,2]".to_vec()),
        (
            "no fingerprint",
            mutate(&|v| v["dtlsParameters"]["fingerprints"] = Value::Null),
        ),
        (
            "unknown algorithm",
            mutate(&|v| v["dtlsParameters"]["fingerprints"][0]["algorithm"] = "md5".into()),
        ),
        (
            "short fingerprint",
            mutate(&|v| v["dtlsParameters"]["fingerprints"][0]["value"] = "ab:cd".into()),
        ),
        (
            "no ufrag",
            mutate(&|v| v["iceParameters"]["usernameFragment"] = "".into()),
        ),
        (
            "no candidates",
            mutate(&|v| v["iceCandidates"] = Value::Array(vec![])),
        ),
        (
            "mdns only",
            mutate(&|v| v["iceCandidates"][0]["address"] = "abc.local".into()),
        ),
    ];
    for (what, bytes) in cases {
        let err = pair.peer(Side::A).accept_answer(now, &bytes).unwrap_err();
        println!("{what}: {err}");
        assert!(
            matches!(err, Error::BadSignal(_) | Error::UnusableSignal(_)),
            "{what}: {err:?}"
        );
    }
    // The good answer still works afterwards.
    pair.peer(Side::A).accept_answer(now, &answer).unwrap();
    pair.collect();
    pair.drive_until(Duration::from_secs(2), |p| {
        p.ready_at(Side::A).is_some() && p.ready_at(Side::B).is_some()
    });
}

#[test]
fn a_wrong_fingerprint_never_connects_and_both_sides_say_why() {
    let mut pair = Pair::with_net(8, NetConfig::rtt(Duration::from_millis(10)));
    let now = pair.now;
    let offer = pair.peer(Side::A).create_offer(now).unwrap();
    let answer = pair.peer(Side::B).accept_offer(now, &offer).unwrap();
    let mut signal = Signal::decode(&answer).unwrap();
    let fp = &mut signal.dtls_parameters.fingerprints.as_mut().unwrap()[0];
    let flipped = if fp.value.starts_with('0') { "1" } else { "0" };
    fp.value.replace_range(0..1, flipped);
    pair.peer(Side::A)
        .accept_answer(now, &signal.encode())
        .unwrap();
    pair.collect();
    let closed = |p: &Pair, side: Side| {
        p.nodes[side as usize]
            .log
            .iter()
            .find_map(|(_, e)| match e {
                Event::Closed(r) => Some(r.clone()),
                _ => None,
            })
    };
    pair.drive_until(Duration::from_secs(60), |p| {
        closed(p, Side::A).is_some() && closed(p, Side::B).is_some()
    });
    let a = closed(&pair, Side::A).unwrap();
    let b = closed(&pair, Side::B).unwrap();
    println!("A: {a}; B: {b} (after {:?})", pair.elapsed());
    assert_eq!(a, CloseReason::FingerprintMismatch);
    assert!(
        matches!(
            b,
            CloseReason::Unreachable | CloseReason::ConnectTimeout | CloseReason::Remote
        ),
        "{b:?}"
    );
    assert!(pair.ready_at(Side::A).is_none() && pair.ready_at(Side::B).is_none());
}

#[test]
fn an_answer_that_never_comes_ends_in_connect_timeout() {
    let mut a = config_for(Side::A);
    a.connect_timeout = Duration::from_secs(3);
    let mut pair = Pair::new(9, NetConfig::ideal(), a, config_for(Side::B));
    let now = pair.now;
    let _offer = pair.peer(Side::A).create_offer(now).unwrap();
    pair.collect();
    pair.drive_until(Duration::from_secs(10), |p| {
        p.nodes[0]
            .log
            .iter()
            .any(|(_, e)| matches!(e, Event::Closed(_)))
    });
    let (at, e) = pair.nodes[0].log.last().unwrap().clone();
    assert_eq!(e, Event::Closed(CloseReason::ConnectTimeout));
    assert!(
        at >= Duration::from_secs(3) && at < Duration::from_secs(4),
        "{at:?}"
    );
    assert_eq!(
        pair.peer(Side::A).poll_timeout(),
        None,
        "a closed peer schedules nothing"
    );
}

#[test]
fn configs_that_cannot_work_are_refused() {
    let now = std::time::Instant::now();
    let meta = PeerMeta::new("p", "s");
    for addrs in [
        vec![],
        vec!["0.0.0.0:5000".parse().unwrap()],
        vec!["127.0.0.1:0".parse().unwrap()],
    ] {
        let err = Peer::new(meta.clone(), Config::new(addrs.clone()), now).unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{addrs:?}: {err}");
    }
}

#[test]
fn garbage_datagrams_before_and_after_connecting_are_dropped_and_counted() {
    let mut pair = Pair::with_net(10, NetConfig::rtt(Duration::from_millis(2)));
    let mut rng = fastrand::Rng::with_seed(99);
    let from = pair.nodes[0].addr;
    let to = pair.nodes[1].addr;
    let feed = |pair: &mut Pair, rng: &mut fastrand::Rng| {
        for i in 0..500 {
            let len = rng.usize(0..1500);
            let mut data: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            // Make some look like STUN, DTLS and RTP to reach deeper parsers.
            if let Some(b) = data.first_mut() {
                *b = [0x00, 0x01, 0x16, 0x17, 0x80, 0x90, 0xff][i % 7];
            }
            let now = pair.now;
            pair.peer(Side::B).handle_datagram(now, from, to, &data);
        }
        pair.collect();
    };
    feed(&mut pair, &mut rng);
    pair.connect();
    feed(&mut pair, &mut rng);
    // Still fully working.
    let now = pair.now;
    pair.node(Side::B).auto_echo = true;
    let id = pair
        .peer(Side::A)
        .request(now, "echo", Some("still here".into()), None)
        .unwrap();
    pair.collect();
    pair.drive_until(Duration::from_secs(5), |p| {
        p.nodes[0]
            .log
            .iter()
            .any(|(_, e)| matches!(e, Event::Reply { id: r, .. } if *r == id))
    });
    let drops = &pair.peer(Side::B).stats().drops;
    println!("drops after 1,000 garbage datagrams: {drops:?}");
    assert!(drops.bad_datagrams > 0);
}

/// The answerer's first connectivity checks usually reach the offerer before
/// the answer does (the signal takes time); they must not be lost, or the
/// answerer waits for its STUN retransmission (250 ms).
#[test]
fn a_late_answer_costs_no_retransmission() {
    for announce in [true, false] {
        for delay in [3u64, 10, 40] {
            let mut b = config_for(Side::B);
            b.announce_extensions = announce;
            let net = NetConfig::rtt(Duration::from_micros(200));
            let mut pair = Pair::new(30 + delay, net, config_for(Side::A), b);
            let now = pair.now;
            let offer = pair.peer(Side::A).create_offer(now).unwrap();
            let answer = pair.peer(Side::B).accept_offer(now, &offer).unwrap();
            pair.collect();
            pair.drive_for(Duration::from_millis(delay));
            let now = pair.now;
            pair.peer(Side::A).accept_answer(now, &answer).unwrap();
            pair.collect();
            pair.drive_until(Duration::from_secs(5), |p| {
                p.ready_at(Side::A).is_some() && p.ready_at(Side::B).is_some()
            });
            let (a, b) = (
                pair.ready_at(Side::A).unwrap(),
                pair.ready_at(Side::B).unwrap(),
            );
            println!(
                "answer {delay} ms late (extensions {announce}): A ready {a:?}, B ready {b:?}"
            );
            let bound = Duration::from_millis(delay + 20);
            assert!(a <= bound && b <= bound, "A {a:?}, B {b:?}");
        }
    }
}
