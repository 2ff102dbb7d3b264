//! A close on one side is noticed by the other within the documented bound.
//!
//! - We close: str0m sends DTLS close_notify. A Go relay (ion-sfu) does not
//!   close on it: its data channels end at once (`dc_closed`), the relay
//!   itself when pion's ICE reports disconnected, about 5 s after our last
//!   packet. Bound asserted: channels within 1 s, the relay within
//!   `GO_NOTICES_WITHIN` (9 s; measured 5 to 6.5 s).
//! - Go closes: pion stops SCTP, then DTLS (close_notify), then ICE; str0m
//!   sees the signalling channel or DTLS end and we report
//!   `Closed(Remote)`. Bound asserted: within `WE_NOTICE_WITHIN` (1 s) of
//!   the close command (measured: a few milliseconds). Without that, five
//!   seconds of silence (`Config::disconnect_grace`) would be the bound.

use std::time::{Duration, Instant};

use relay_proto::{CloseReason, Event};
use serde_json::json;

use crate::harness::{Offerer, Session};

const GO_NOTICES_WITHIN: Duration = Duration::from_secs(9);
const GO_CHANNELS_END_WITHIN: Duration = Duration::from_secs(1);
const WE_NOTICE_WITHIN: Duration = Duration::from_secs(1);

fn we_close(offerer: Offerer, name: &str) {
    let (mut s, _, _) = Session::connect(name, offerer, |_| {});
    let closed_at = Instant::now();
    s.ours.peer.close(closed_at);
    s.ours.take_events();
    s.check(s.ours.closed() == Some(&CloseReason::Local), || {
        "closed here".into()
    });
    let go_closed = s.wait_go(
        "Go's relay closing",
        GO_NOTICES_WITHIN + Duration::from_secs(2),
        "closed",
        |_| true,
    );
    let channel_end =
        s.go.time_of("dc_closed")
            .map(|t| t.saturating_duration_since(closed_at));
    let relay_end =
        s.go.time_of("closed")
            .unwrap()
            .saturating_duration_since(closed_at);
    let reason = go_closed["reason"].as_str().unwrap_or_default().to_string();
    s.check(reason.starts_with("ice "), || {
        format!("Go closed for {reason:?}")
    });
    s.check(
        channel_end.is_some_and(|d| d <= GO_CHANNELS_END_WITHIN),
        || format!("Go's signalling channel should end at once on close_notify: {channel_end:?}"),
    );
    s.check(relay_end <= GO_NOTICES_WITHIN, || {
        format!("Go noticed after {relay_end:?}")
    });
    let exit = s.go.finish(Duration::from_secs(3));
    s.check(exit.is_some_and(|e| e.success()), || {
        format!("Go exit status {exit:?}")
    });
    println!(
        "interop[{name}]: we closed; Go's signalling channel closed after {channel_end:?} \
         (bound {GO_CHANNELS_END_WITHIN:?}), Go's relay closed after {relay_end:?} ({reason:?}, \
         bound {GO_NOTICES_WITHIN:?})"
    );
}

#[test]
#[ignore = "needs the Go interop peer: bash tests/interop/build.sh"]
fn we_close_go_notices_we_offer() {
    we_close(Offerer::Us, "we_close_go_notices_we_offer");
}

fn go_closes(offerer: Offerer, name: &str) {
    let (mut s, _, _) = Session::connect(name, offerer, |_| {});
    // Something in flight both ways first, so the close is not on an idle
    // link.
    s.go.cmd(json!({"cmd": "emit", "event": "bye-soon", "payload": null}));
    s.wait_ours("Go's emit", Duration::from_secs(5), |e| {
        matches!(e, Event::Request(r) if r.event == "bye-soon").then_some(())
    });
    s.go.cmd(json!({"cmd": "close"}));
    let close_sent = Instant::now();
    let go_closed = s.wait_go("Go's closed line", Duration::from_secs(5), "closed", |_| {
        true
    });
    let go_closed_at = s.go.time_of("closed").unwrap();
    let reason = s.until(
        "our Closed event",
        WE_NOTICE_WITHIN + Duration::from_secs(10),
        |s| s.ours.closed().cloned(),
    );
    let noticed = s
        .ours
        .time_of(|e| matches!(e, Event::Closed(_)))
        .unwrap()
        .saturating_duration_since(close_sent);
    let go_took = go_closed_at.saturating_duration_since(close_sent);
    s.check(reason == CloseReason::Remote, || {
        format!("closed for {reason:?}")
    });
    s.check(noticed <= WE_NOTICE_WITHIN, || {
        format!("noticed after {noticed:?}")
    });
    println!(
        "interop[{name}]: Go closed ({}); its closed line {go_took:?} after the command); \
         we reported Closed({reason:?}) {noticed:?} after the command (bound {WE_NOTICE_WITHIN:?})",
        go_closed["reason"]
    );
}

#[test]
#[ignore = "needs the Go interop peer: bash tests/interop/build.sh"]
fn go_closes_we_notice_we_offer() {
    go_closes(Offerer::Us, "go_closes_we_notice_we_offer");
}

#[test]
#[ignore = "needs the Go interop peer: bash tests/interop/build.sh"]
fn go_closes_we_notice_go_offers() {
    go_closes(Offerer::Go, "go_closes_we_notice_go_offers");
}
