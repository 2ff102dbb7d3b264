//! Closing, unreachable remotes, and user data channels.

use std::time::Duration;

use relay_proto::{
    ChannelError, ChannelId, ChannelOptions, CloseReason, Error, Event, Reliability, RequestError,
};
use relay_tests::{NetConfig, Pair, Side, config_for};

fn closes(pair: &Pair, side: Side) -> Vec<(Duration, CloseReason)> {
    pair.nodes[side as usize]
        .log
        .iter()
        .filter_map(|(t, e)| match e {
            Event::Closed(r) => Some((*t, r.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_local_close_reaches_the_remote_at_once_and_fails_pending_requests() {
    let mut pair = Pair::with_net(1, NetConfig::rtt(Duration::from_millis(20)));
    pair.connect();
    let now = pair.now;
    let a_req = pair
        .peer(Side::A)
        .request(now, "never", None, None)
        .unwrap();
    let b_req = pair
        .peer(Side::B)
        .request(now, "never", None, None)
        .unwrap();
    pair.collect();
    pair.drive_for(Duration::from_millis(50));
    let now = pair.now;
    let closed_at = pair.elapsed();
    pair.peer(Side::A).close(now);
    pair.peer(Side::A).close(now); // idempotent
    pair.collect();
    pair.drive_until(Duration::from_secs(2), |p| !closes(p, Side::B).is_empty());
    pair.drive_for(Duration::from_secs(1));

    let a = closes(&pair, Side::A);
    let b = closes(&pair, Side::B);
    assert_eq!(a.len(), 1, "Closed fires once: {a:?}");
    assert_eq!(b.len(), 1, "Closed fires once: {b:?}");
    assert_eq!(a[0].1, CloseReason::Local);
    assert_eq!(b[0].1, CloseReason::Remote);
    assert_eq!(b[0].1.to_string(), "closed by remote");
    let noticed = b[0].0 - closed_at;
    println!("remote noticed the close after {noticed:?} (one-way latency 10 ms)");
    assert!(noticed <= Duration::from_millis(15), "{noticed:?}");

    for (side, id) in [(Side::A, a_req), (Side::B, b_req)] {
        let log = &pair.nodes[side as usize].log;
        let failed = log
            .iter()
            .position(|(_, e)| {
                *e == Event::RequestFailed {
                    id,
                    reason: RequestError::Closed,
                }
            })
            .expect("pending request failed with Closed");
        let closed = log
            .iter()
            .position(|(_, e)| matches!(e, Event::Closed(_)))
            .unwrap();
        assert!(failed < closed, "request outcomes come before Closed");
        assert_eq!(closed, log.len() - 1, "nothing after Closed");
    }
    let now = pair.now;
    assert!(matches!(
        pair.peer(Side::A).emit(now, "x", None),
        Err(Error::Closed)
    ));
    let now = pair.now;
    assert!(matches!(
        pair.peer(Side::B).request(now, "x", None, None),
        Err(Error::Closed)
    ));
    assert_eq!(pair.peer(Side::A).poll_timeout(), None);
}

#[test]
fn a_vanished_remote_is_reported_unreachable_after_the_grace() {
    let mut pair = Pair::with_net(2, NetConfig::rtt(Duration::from_millis(10)));
    pair.connect();
    let now = pair.now;
    let id = pair
        .peer(Side::A)
        .request(now, "x", None, Some(Duration::from_secs(120)))
        .unwrap();
    pair.collect();
    pair.partitioned = true;
    let cut = pair.elapsed();
    pair.drive_until(Duration::from_secs(120), |p| {
        !closes(p, Side::A).is_empty() && !closes(p, Side::B).is_empty()
    });
    for side in [Side::A, Side::B] {
        let c = closes(&pair, side);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].1, CloseReason::Unreachable);
        println!(
            "{side:?} reported unreachable {:?} after the link was cut",
            c[0].0 - cut
        );
        // The grace (5 s) plus one check interval, at most.
        assert!(c[0].0 - cut <= Duration::from_secs(7));
    }
    assert!(pair.nodes[0].log.iter().any(|(_, e)| *e
        == Event::RequestFailed {
            id,
            reason: RequestError::Closed
        }));
}

/// The grace is the application's: a shorter one is noticed sooner.
#[test]
fn the_grace_is_configurable() {
    let mut a = config_for(Side::A);
    a.disconnect_grace = Duration::from_secs(2);
    let mut b = config_for(Side::B);
    b.disconnect_grace = Duration::from_secs(2);
    let mut pair = Pair::new(21, NetConfig::rtt(Duration::from_millis(10)), a, b);
    pair.connect();
    pair.partitioned = true;
    let cut = pair.elapsed();
    pair.drive_until(Duration::from_secs(30), |p| !closes(p, Side::A).is_empty());
    let at = closes(&pair, Side::A)[0].0 - cut;
    println!("unreachable {at:?} after the cut with a 2 s grace");
    assert!(at <= Duration::from_secs(4), "{at:?}");
}

/// A live pair with nothing to say keeps its connection: the ICE agents'
/// checks keep the link from looking silent, even with loss.
#[test]
fn an_idle_pair_stays_connected_for_minutes() {
    let net = NetConfig {
        loss: 0.05,
        ..NetConfig::rtt(Duration::from_millis(30))
    };
    let mut pair = Pair::with_net(22, net);
    pair.connect();
    pair.drive_for(Duration::from_secs(180));
    for side in [Side::A, Side::B] {
        let interruptions = pair.peer(side).stats().path_interruptions;
        println!("{side:?}: {interruptions} path interruptions in 180 s idle at 5 % loss");
        assert_eq!(
            interruptions, 0,
            "{side:?}: a live idle path reported interrupted"
        );
    }
    assert!(
        closes(&pair, Side::A).is_empty(),
        "{:?}",
        closes(&pair, Side::A)
    );
    assert!(
        closes(&pair, Side::B).is_empty(),
        "{:?}",
        closes(&pair, Side::B)
    );
}

#[test]
fn a_short_outage_within_the_grace_is_survived() {
    let mut pair = Pair::with_net(3, NetConfig::rtt(Duration::from_millis(10)));
    pair.connect();
    pair.partitioned = true;
    pair.drive_for(Duration::from_secs(2));
    pair.partitioned = false;
    pair.node(Side::B).auto_echo = true;
    let now = pair.now;
    let id = pair
        .peer(Side::A)
        .request(now, "echo", None, Some(Duration::from_secs(20)))
        .unwrap();
    pair.collect();
    pair.drive_until(Duration::from_secs(20), |p| {
        p.nodes[0]
            .log
            .iter()
            .any(|(_, e)| matches!(e, Event::Reply { id: r, .. } if *r == id))
    });
    assert!(closes(&pair, Side::A).is_empty());
}

fn open_channel(pair: &mut Pair, side: Side, label: &str) -> (ChannelId, ChannelId) {
    let now = pair.now;
    let id = pair
        .peer(side)
        .create_data_channel(now, label, ChannelOptions::default())
        .unwrap();
    pair.collect();
    let find_open = |p: &Pair, s: Side| {
        p.nodes[s as usize].log.iter().find_map(|(_, e)| match e {
            Event::ChannelOpen {
                id,
                label: l,
                remote,
            } if l == label => Some((*id, *remote)),
            _ => None,
        })
    };
    pair.drive_until(Duration::from_secs(2), |p| {
        find_open(p, side).is_some() && find_open(p, side.other()).is_some()
    });
    let (local_id, local_remote) = find_open(pair, side).unwrap();
    let (remote_id, remote_remote) = find_open(pair, side.other()).unwrap();
    assert_eq!(local_id, id);
    assert!(!local_remote && remote_remote);
    (id, remote_id)
}

fn data_on(pair: &Pair, side: Side, id: ChannelId) -> Vec<Vec<u8>> {
    pair.nodes[side as usize]
        .log
        .iter()
        .filter_map(|(_, e)| match e {
            Event::ChannelData { id: c, data, .. } if *c == id => Some(data.to_vec()),
            _ => None,
        })
        .collect()
}

#[test]
fn user_data_channels_both_ways() {
    let mut pair = Pair::with_net(4, NetConfig::rtt(Duration::from_millis(10)));
    pair.connect();
    let (a_out, b_in) = open_channel(&mut pair, Side::A, "from-a");
    let (b_out, a_in) = open_channel(&mut pair, Side::B, "from-b");
    assert_eq!(pair.peer(Side::B).channel_label(b_in), Some("from-a"));
    for i in 0..20u8 {
        let now = pair.now;
        pair.peer(Side::A)
            .channel_write(now, a_out, true, &[i; 100])
            .unwrap();
        let now = pair.now;
        pair.peer(Side::B)
            .channel_write(now, b_out, false, format!("b{i}").as_bytes())
            .unwrap();
    }
    let now = pair.now;
    // Either end may write on a channel, whoever opened it.
    pair.peer(Side::B)
        .channel_write(now, b_in, true, b"back")
        .unwrap();
    pair.collect();
    pair.drive_for(Duration::from_millis(200));
    let got_b = data_on(&pair, Side::B, b_in);
    assert_eq!(got_b, (0..20u8).map(|i| vec![i; 100]).collect::<Vec<_>>());
    let got_a = data_on(&pair, Side::A, a_in);
    assert_eq!(
        got_a,
        (0..20u8)
            .map(|i| format!("b{i}").into_bytes())
            .collect::<Vec<_>>()
    );
    assert_eq!(data_on(&pair, Side::A, a_out), vec![b"back".to_vec()]);

    let now = pair.now;
    pair.peer(Side::A).close_data_channel(now, a_out).unwrap();
    pair.collect();
    pair.drive_for(Duration::from_millis(200));
    for (side, id) in [(Side::A, a_out), (Side::B, b_in)] {
        assert!(
            pair.nodes[side as usize]
                .log
                .iter()
                .any(|(_, e)| *e == Event::ChannelClosed(id)),
            "{side:?} saw no close"
        );
    }
    // The signalling channel is untouched.
    pair.node(Side::B).auto_echo = true;
    let now = pair.now;
    let id = pair.peer(Side::A).request(now, "echo", None, None).unwrap();
    pair.collect();
    pair.drive_until(Duration::from_secs(1), |p| {
        p.nodes[0]
            .log
            .iter()
            .any(|(_, e)| matches!(e, Event::Reply { id: r, .. } if *r == id))
    });
}

#[test]
fn channels_created_before_ready_open_after_the_signalling_channel() {
    let mut pair = Pair::with_net(5, NetConfig::rtt(Duration::from_millis(10)));
    let now = pair.now;
    let early_a = pair
        .peer(Side::A)
        .create_data_channel(
            now,
            "early-a",
            ChannelOptions::unordered(Reliability::MaxRetransmits(0)),
        )
        .unwrap();
    let now = pair.now;
    let early_b = pair
        .peer(Side::B)
        .create_data_channel(now, "early-b", ChannelOptions::default())
        .unwrap();
    let now = pair.now;
    assert!(matches!(
        pair.peer(Side::A).channel_write(now, early_a, true, b"x"),
        Err(Error::Channel(ChannelError::NotOpen))
    ));
    pair.connect();
    pair.drive_for(Duration::from_millis(200));
    for (side, id) in [(Side::A, early_a), (Side::B, early_b)] {
        let log = &pair.nodes[side as usize].log;
        let ready = log.iter().position(|(_, e)| *e == Event::Ready).unwrap();
        let open = log
            .iter()
            .position(|(_, e)| matches!(e, Event::ChannelOpen { id: c, .. } if *c == id))
            .expect("channel opened");
        assert!(ready < open);
    }
    let labels: Vec<_> = pair.nodes[0]
        .log
        .iter()
        .filter_map(|(_, e)| match e {
            Event::ChannelOpen {
                label,
                remote: true,
                ..
            } => Some(label.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(labels, vec!["early-b".to_string()]);
}

#[test]
fn a_full_channel_is_reported_and_then_writable_again() {
    let mut pair = Pair::with_net(6, NetConfig::rtt(Duration::from_millis(40)));
    pair.connect();
    let (id, remote_id) = open_channel(&mut pair, Side::A, "bulk");
    let chunk = vec![1u8; 16 * 1024];
    let mut written = 0;
    let err = loop {
        let now = pair.now;
        match pair.peer(Side::A).channel_write(now, id, true, &chunk) {
            Ok(()) => written += 1,
            Err(e) => break e,
        }
        assert!(written < 10_000, "the buffer never filled");
    };
    assert!(matches!(err, Error::Channel(ChannelError::Full)), "{err:?}");
    pair.collect();
    pair.drive_until(Duration::from_secs(10), |p| {
        p.nodes[0]
            .log
            .iter()
            .any(|(_, e)| *e == Event::ChannelWritable(id))
    });
    let now = pair.now;
    pair.peer(Side::A)
        .channel_write(now, id, true, &chunk)
        .unwrap();
    written += 1;
    pair.collect();
    pair.drive_until(Duration::from_secs(10), |p| {
        data_on(p, Side::B, remote_id).len() == written
    });
    println!(
        "{written} messages of 16 KiB crossed; the buffer filled after {}",
        written - 1
    );
    let now = pair.now;
    assert!(matches!(
        pair.peer(Side::A)
            .channel_write(now, id, true, &vec![0u8; 70_000]),
        Err(Error::Channel(ChannelError::TooLarge(70_000)))
    ));
}

#[test]
fn the_signalling_label_is_reserved() {
    let mut pair = Pair::with_net(7, NetConfig::ideal());
    pair.connect();
    let now = pair.now;
    assert!(matches!(
        pair.peer(Side::A).create_data_channel(
            now,
            relay_proto::wire::SIGNAL_LABEL,
            ChannelOptions::default()
        ),
        Err(Error::Channel(ChannelError::ReservedLabel(_)))
    ));
}

#[test]
fn a_channel_that_cannot_open_is_reported_not_left_pending() {
    let mut a = relay_tests::config_for(Side::A);
    a.channel_open_timeout = Duration::from_secs(2);
    a.disconnect_grace = Duration::from_secs(120);
    let mut b = relay_tests::config_for(Side::B);
    b.disconnect_grace = Duration::from_secs(120);
    let mut pair = Pair::new(8, NetConfig::rtt(Duration::from_millis(10)), a, b);
    pair.connect();
    pair.partitioned = true;
    let now = pair.now;
    let id = pair
        .peer(Side::A)
        .create_data_channel(now, "never", ChannelOptions::default())
        .unwrap();
    pair.collect();
    let at = pair.elapsed();
    pair.drive_until(Duration::from_secs(5), |p| {
        p.nodes[0]
            .log
            .iter()
            .any(|(_, e)| *e == Event::ChannelClosed(id))
    });
    let log = &pair.nodes[0].log;
    let err = log
        .iter()
        .position(|(_, e)| {
            *e == Event::ChannelError {
                id,
                error: ChannelError::OpenFailed,
            }
        })
        .expect("the failure is reported");
    let (when, _) = log[err];
    println!("gave up after {:?}", when - at);
    // Counted from the peer's last input, a little before `at`.
    assert!(when - at >= Duration::from_millis(1900) && when - at < Duration::from_millis(2100));
    let now = pair.now;
    assert!(matches!(
        pair.peer(Side::A).channel_write(now, id, true, b"x"),
        Err(Error::Channel(ChannelError::Unknown))
    ));
    assert!(
        closes(&pair, Side::A).is_empty(),
        "the peer itself stays up"
    );
}
