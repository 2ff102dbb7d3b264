//! Requests and emits both ways with replies, the largest envelope a Go peer
//! reads (65,535 bytes) both ways, and a larger one refused on our side with
//! a clear error while the channel stays usable.

use std::time::{Duration, Instant};

use bytes::Bytes;
use relay_proto::{Error, Event, RequestError, RequestId};
use serde_json::json;

use crate::harness::{Offerer, Session, WAIT, b64, pattern, unb64};

/// What a Go peer reads in one message (pion's read buffer).
const GO_LIMIT: usize = 65_535;

fn messaging(offerer: Offerer, name: &str) {
    const N: usize = 20;
    const EMITS: usize = 5;
    let (mut s, _, _) = Session::connect(name, offerer, |_| {});
    let now = Instant::now;

    // Ours -> Go: N echo requests (Go answers "echo*"), emits (Go never
    // answers them), one request nobody answers.
    let mut sent = Vec::new();
    for i in 0..N {
        let payload = Bytes::from(format!("rust request {i}"));
        let id = s
            .ours
            .peer
            .request(now(), &format!("echo-{i}"), Some(payload.clone()), None)
            .expect("request");
        sent.push((id, payload));
    }
    for i in 0..EMITS {
        let payload = (i > 0).then(|| Bytes::from(format!("rust emit {i}")));
        s.ours
            .peer
            .emit(Instant::now(), "note", payload)
            .expect("emit");
    }
    let unanswered = s
        .ours
        .peer
        .request(
            now(),
            "nobody-answers",
            None,
            Some(Duration::from_millis(300)),
        )
        .expect("request");
    s.ours.take_events();

    // Go -> ours: N echo requests (our test application answers "echo*"),
    // emits, one request we leave unanswered.
    for i in 0..N {
        s.go.cmd(json!({"cmd": "request", "event": format!("echo-{i}"),
                        "payload": b64(format!("go request {i}").as_bytes())}));
    }
    for i in 0..EMITS {
        let payload = if i == 0 {
            json!(null)
        } else {
            json!(b64(format!("go emit {i}").as_bytes()))
        };
        s.go.cmd(json!({"cmd": "emit", "event": "note", "payload": payload}));
    }
    s.go.cmd(
        json!({"cmd": "request", "event": "nobody-answers", "payload": null, "timeoutMs": 300}),
    );

    s.until("every reply, emit and timeout both ways", WAIT, |s| {
        let our_replies = s.ours.count(|e| matches!(e, Event::Reply { .. }));
        let our_notes = s
            .ours
            .count(|e| matches!(e, Event::Request(r) if r.event == "note"));
        let our_timeout = s
            .ours
            .count(|e| matches!(e, Event::RequestFailed { id, .. } if *id == unanswered));
        let go_replies = s.go.count("reply", |_| true);
        let go_notes = s.go.count("request", |v| v["event"] == "note");
        let go_timeout =
            s.go.count("request_failed", |v| v["event"] == "nobody-answers");
        (our_replies == N
            && our_notes == EMITS
            && our_timeout == 1
            && go_replies == N
            && go_notes == EMITS
            && go_timeout == 1)
            .then_some(())
    });
    // Let any stray reply to an emit show up before counting.
    s.run_for(Duration::from_millis(200));

    // Every reply matches its request, by id and payload.
    for (id, payload) in &sent {
        let got = s.ours.events().find_map(|e| match e {
            Event::Reply { id: r, payload } if r == id => Some(payload.clone()),
            _ => None,
        });
        s.check(got.as_ref() == Some(&Some(payload.clone())), || {
            format!("reply to {id:?}: {got:?}, expected {payload:?}")
        });
    }
    for i in 0..N {
        let ev = format!("echo-{i}");
        let sent =
            s.go.find("request_sent", |v| v["event"] == ev.as_str())
                .unwrap();
        let reply = s.go.find("reply", |v| v["event"] == ev.as_str()).unwrap();
        s.check(
            reply["id"] == sent["id"]
                && unb64(&reply["payload"]) == Some(format!("go request {i}").into_bytes()),
            || format!("Go's reply {reply} does not match {sent}"),
        );
    }
    // Emits arrive as requests with their payload (null stays None).
    let our_notes: Vec<Option<Bytes>> = s
        .ours
        .events()
        .filter_map(|e| match e {
            Event::Request(r) if r.event == "note" => Some(r.payload.clone()),
            _ => None,
        })
        .collect();
    s.check(our_notes[0].is_none(), || {
        "a null payload arrives as None".into()
    });
    let go_notes: Vec<_> =
        s.go.all("request")
            .filter(|v| v["event"] == "note")
            .cloned()
            .collect();
    s.check(go_notes[0]["payload"].is_null(), || {
        "our None arrives as null".into()
    });
    s.check(
        matches!(
            s.ours
                .events()
                .find(|e| matches!(e, Event::RequestFailed { id, .. } if *id == unanswered)),
            Some(Event::RequestFailed {
                reason: RequestError::TimedOut,
                ..
            })
        ),
        || "our unanswered request times out".into(),
    );
    let stats = s.ours.peer.stats().clone();
    s.check(
        stats.drops.unknown_replies == 0 && stats.drops.bad_envelopes == 0,
        || format!("nothing dropped: {:?}", stats.drops),
    );
    let go_errors = s.go.count("error", |_| true) + s.go.count("dc_error", |_| true);
    s.check(go_errors == 0, || "Go reported no error".into());
    println!(
        "interop[{name}]: crossed ours->Go: {} requests, {} replies back, {} emits, 1 timed out; \
         Go->ours: {} requests, {} replies back, {} emits, 1 timed out \
         (our stats: {} messages out, {} in, {} replies sent)",
        N,
        s.ours.count(|e| matches!(e, Event::Reply { .. })),
        go_notes.len(),
        s.ours
            .count(|e| matches!(e, Event::Request(r) if r.event.starts_with("echo"))),
        s.go.count("reply", |_| true),
        our_notes.len(),
        stats.messages_out,
        stats.messages_in,
        stats.replies_sent,
    );
    s.finish();
}

#[test]
#[ignore = "needs the Go interop peer: bash tests/interop/build.sh"]
fn requests_and_emits_both_ways_we_offer() {
    messaging(Offerer::Us, "requests_and_emits_both_ways_we_offer");
}

#[test]
#[ignore = "needs the Go interop peer: bash tests/interop/build.sh"]
fn requests_and_emits_both_ways_go_offers() {
    messaging(Offerer::Go, "requests_and_emits_both_ways_go_offers");
}

/// Length of an envelope as both stacks encode it.
fn envelope_len(id_digits: usize, reply: bool, event: &str, payload: usize) -> usize {
    let id = "9".repeat(id_digits);
    let b64_len = payload.div_ceil(3) * 4;
    format!(r#"{{"id":{id},"reply":{reply},"event":"{event}","payload":""}}"#).len() + b64_len
}

/// An event name for which the largest payload makes an envelope of exactly
/// 65,535 bytes with a 20-digit id (most u64 ids have 20 digits), and that
/// payload's size.
fn max_event_and_payload() -> (String, usize) {
    for pad in 0..4 {
        let event = format!("echo-max{}", "x".repeat(pad));
        let overhead = envelope_len(20, false, &event, 0);
        if (GO_LIMIT - overhead).is_multiple_of(4) {
            return (event, (GO_LIMIT - overhead) / 4 * 3);
        }
    }
    unreachable!("one of four consecutive lengths is right");
}

#[test]
#[ignore = "needs the Go interop peer: bash tests/interop/build.sh"]
fn largest_envelope_crosses_larger_is_refused() {
    let name = "largest_envelope_crosses_larger_is_refused";
    let (mut s, _, _) = Session::connect(name, Offerer::Us, |_| {});
    let (event, max) = max_event_and_payload();
    assert_eq!(envelope_len(20, false, &event, max), GO_LIMIT);
    let now = Instant::now;

    // Ours -> Go: the largest payload crosses and Go echoes it unchanged.
    let big = pattern(max, 1);
    let id = s
        .ours
        .peer
        .request(now(), &event, Some(Bytes::from(big.clone())), None)
        .expect("the largest payload is accepted");
    let echoed = s.wait_ours("the echo of the largest payload", WAIT, |e| match e {
        Event::Reply { id: r, payload } if *r == id => Some(payload.clone()),
        _ => None,
    });
    s.check(echoed.as_deref() == Some(&big[..]), || {
        "echo differs".into()
    });
    let at_go =
        s.go.find("request", |v| v["event"] == event.as_str())
            .unwrap();
    let go_len = unb64(&at_go["payload"]).map_or(0, |p| p.len());
    let sent_env = envelope_len(id.0.to_string().len(), false, &event, max);
    s.check(go_len == max, || {
        format!("Go got {go_len} bytes, not {max}")
    });

    // One byte more is refused here with a clear error, for every kind of
    // message. (Ids with fewer than 17 digits, 1 in 2,000, make room for
    // it: draw again.)
    let mut refused = None;
    for _ in 0..5 {
        match s
            .ours
            .peer
            .request(now(), &event, Some(Bytes::from(pattern(max + 1, 2))), None)
        {
            Err(e) => {
                refused = Some(e);
                break;
            }
            Ok(_) => s.ours.take_events(),
        }
    }
    let refused = refused.expect("a request one byte over is refused");
    s.check(
        matches!(refused, Error::MessageTooLarge { len, limit: GO_LIMIT } if len > GO_LIMIT && len <= GO_LIMIT + 4),
        || format!("unexpected refusal: {refused:?}"),
    );
    let emit_refused = s.ours.peer.emit(
        Instant::now(),
        &event,
        Some(Bytes::from(pattern(max + 3, 3))),
    );
    s.check(
        matches!(
            emit_refused,
            Err(Error::MessageTooLarge {
                limit: GO_LIMIT,
                ..
            })
        ),
        || format!("emit one quantum over: {emit_refused:?}"),
    );
    // A reply over the limit is refused too and the request stays
    // answerable.
    s.go.cmd(json!({"cmd": "request", "event": "want-reply", "payload": null, "timeoutMs": 5000}));
    let req = s.wait_ours("Go's request", WAIT, |e| match e {
        Event::Request(r) if r.event == "want-reply" => Some(r.id),
        _ => None,
    });
    let reply_refused =
        s.ours
            .peer
            .reply(Instant::now(), req, Some(Bytes::from(pattern(max + 3, 4))));
    s.check(
        matches!(
            reply_refused,
            Err(Error::MessageTooLarge {
                limit: GO_LIMIT,
                ..
            })
        ),
        || format!("reply over the limit: {reply_refused:?}"),
    );
    s.ours
        .peer
        .reply(Instant::now(), req, Some(Bytes::from_static(b"small")))
        .expect("the request is still answerable");
    s.ours.take_events();
    let reply = s.wait_go("our small reply", WAIT, "reply", |v| {
        v["event"] == "want-reply"
    });
    s.check(
        unb64(&reply["payload"]).as_deref() == Some(&b"small"[..]),
        || format!("reply {reply}"),
    );

    // Go -> ours: the largest payload Go can send (its id may be shorter,
    // which only makes the envelope smaller) crosses and comes back.
    let big_go = pattern(max, 5);
    s.go.cmd(json!({"cmd": "request", "event": event, "payload": b64(&big_go), "timeoutMs": 5000}));
    let back = s.wait_go("our echo of Go's largest payload", WAIT, "reply", |v| {
        v["event"] == event.as_str()
    });
    s.check(
        unb64(&back["payload"]).as_deref() == Some(&big_go[..]),
        || "Go's largest payload came back changed".into(),
    );
    let go_id_digits = back["id"].as_str().unwrap().len();

    // The channel stays usable both ways.
    let after = s
        .ours
        .peer
        .request(now(), "echo-after", Some("still here".into()), None)
        .expect("request after a refusal");
    s.wait_ours("an echo after the refusals", WAIT, |e| {
        matches!(e, Event::Reply { id, .. } if *id == after).then_some(())
    });
    s.go.cmd(json!({"cmd": "request", "event": "echo-after", "payload": b64(b"still here")}));
    s.wait_go("Go's echo after the refusals", WAIT, "reply", |v| {
        v["event"] == "echo-after"
    });
    let dead = s.go.count("dc_closed", |_| true) + s.go.count("dc_error", |_| true);
    s.check(dead == 0, || "Go's signalling channel stayed up".into());
    let replies: Vec<RequestId> = s
        .ours
        .events()
        .filter_map(|e| match e {
            Event::Reply { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    println!(
        "interop[{name}]: largest payload {max} bytes: ours->Go envelope {sent_env} bytes \
         (limit {GO_LIMIT}) crossed and came back; Go->ours envelope {} bytes crossed and came back; \
         refused one byte over: {refused}; emit and reply over refused too; \
         after that {} replies in total on our side, Go saw {} replies; stats out {} bytes, in {} bytes",
        envelope_len(go_id_digits, false, &event, max),
        replies.len(),
        s.go.count("reply", |_| true),
        s.ours.peer.stats().bytes_out,
        s.ours.peer.stats().bytes_in,
    );
    s.finish();
}
