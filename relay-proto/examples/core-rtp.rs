//! The core alone, no sockets and no runtime: two peers connected in
//! memory, one track, and the time each side's `Peer` (relay-proto and
//! str0m) spends per RTP packet. What the adapters add comes on top.
//!
//! Run: `cargo run --release -p relay-proto --example core-rtp [PACKETS]`

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use relay_proto::{
    Certificate, Config, Event, Peer, PeerMeta, RtpOut, TrackCodec, TrackMeta, Transmit,
};

/// Moves every datagram queued on either side to the other, with the
/// events, until both are quiet; returns the events of `b`.
fn shuttle(a: &mut Peer, b: &mut Peer, now: Instant) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        let mut moved = false;
        let from_a: Vec<Transmit> = std::iter::from_fn(|| a.poll_transmit()).collect();
        for t in from_a {
            moved = true;
            b.handle_datagram(now, t.source, t.destination, &t.contents);
        }
        let from_b: Vec<Transmit> = std::iter::from_fn(|| b.poll_transmit()).collect();
        for t in from_b {
            moved = true;
            a.handle_datagram(now, t.source, t.destination, &t.contents);
        }
        while a.poll_event().is_some() {}
        while let Some(e) = b.poll_event() {
            events.push(e);
        }
        if !moved {
            return events;
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let packets: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000);
    let cert = Certificate::generate()?;
    let config = |port: u16| {
        let mut c = Config::new(vec![format!("127.0.0.1:{port}").parse().unwrap()]);
        c.dtls_cert = Some(cert.clone());
        c
    };
    let mut now = Instant::now();
    let mut a = Peer::new(PeerMeta::new("a", "s"), config(4000), now)?;
    let mut b = Peer::new(PeerMeta::new("b", "s"), config(4001), now)?;
    let offer = a.create_offer(now)?;
    let answer = b.accept_offer(now, &offer)?;
    a.accept_answer(now, &answer)?;
    let mut ready = false;
    let mut track = None;
    for _ in 0..2_000 {
        now += Duration::from_millis(1);
        a.handle_timeout(now);
        b.handle_timeout(now);
        let _ = shuttle(&mut a, &mut b, now);
        if !ready && a.state() == relay_proto::PeerState::Ready {
            ready = true;
            track = Some(a.add_track(now, TrackMeta::new("s", "v"), TrackCodec::vp8(96))?);
        }
        if let Some(t) = track
            && a.track_stats(t).is_some()
            && a.write_rtp(
                now,
                t,
                RtpOut::new(96, 0, 0, true, Bytes::from_static(b"\x10x")),
            )
            .is_ok()
        {
            break;
        }
    }
    let track = track.ok_or("never ready")?;
    let payload = Bytes::from(vec![0x10u8; 1200]);
    let mut send = Duration::ZERO;
    let mut receive = Duration::ZERO;
    let mut received = 0usize;
    let mut wire: VecDeque<Transmit> = VecDeque::new();
    for i in 1..=packets {
        if i % 100 == 0 {
            now += Duration::from_millis(2);
            a.handle_timeout(now);
            b.handle_timeout(now);
        }
        let t0 = Instant::now();
        a.write_rtp(
            now,
            track,
            RtpOut::new(96, i as u16, (i * 3000) as u32, false, payload.clone()),
        )?;
        wire.extend(std::iter::from_fn(|| a.poll_transmit()));
        let t1 = Instant::now();
        for t in wire.drain(..) {
            b.handle_datagram(now, t.source, t.destination, &t.contents);
        }
        while let Some(e) = b.poll_event() {
            if matches!(e, Event::Rtp(_)) {
                received += 1;
            }
        }
        let t2 = Instant::now();
        send += t1 - t0;
        receive += t2 - t1;
        // What b sends back (RTCP) goes to a untimed.
        while let Some(t) = b.poll_transmit() {
            a.handle_datagram(now, t.source, t.destination, &t.contents);
        }
        while a.poll_event().is_some() {}
    }
    println!("| side | µs per packet |");
    println!("|---|---|");
    println!(
        "| write_rtp + poll_transmit (sender) | {:.2} |",
        send.as_secs_f64() * 1e6 / packets as f64
    );
    println!(
        "| handle_datagram + poll_event (receiver) | {:.2} |",
        receive.as_secs_f64() * 1e6 / packets as f64
    );
    println!("{packets} packets of 1,200 bytes written, {received} received");
    Ok(())
}
