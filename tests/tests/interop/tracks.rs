//! Media both ways: Go adds a VP8 and an Opus track through
//! `ion_relay_request` and we get each Track event with its meta, then its
//! RTP; we add tracks and Go receives the RTP on the signalled SSRC and
//! payload type; a PLI from the receiver reaches the sender each way.
//!
//! Tracks are added one side at a time: a Go peer holds its lock for the
//! whole `ion_relay_request` round trip, so simultaneous adds from both
//! sides fail after 2 s on the Go side (ion-sfu behaviour, see the README).

use std::time::{Duration, Instant};

use bytes::Bytes;
use relay_proto::{Event, KeyframeKind, RtpOut, TrackCodec, TrackId, TrackMeta};
use serde_json::{Value, json};

use crate::harness::{Offerer, Session, WAIT};

const PACKETS: u64 = 50;
const INTERVAL_MS: u64 = 10;
const LATE_PLI_AFTER_S: u64 = 3;

struct GoTrack {
    kind: &'static str,
    stream: &'static str,
    id: &'static str,
    mime: &'static str,
    pt: u8,
    clock: u32,
    channels: u16,
}

const GO_TRACKS: [GoTrack; 2] = [
    GoTrack {
        kind: "video",
        stream: "go-stream",
        id: "go-video",
        mime: "video/VP8",
        pt: 96,
        clock: 90_000,
        channels: 0,
    },
    GoTrack {
        kind: "audio",
        stream: "go-stream",
        id: "go-audio",
        mime: "audio/opus",
        pt: 111,
        clock: 48_000,
        channels: 2,
    },
];

fn go_tracks_reach_us(offerer: Offerer, name: &str) {
    let (mut s, _, _) = Session::connect(name, offerer, |c| c.track_inactive_after = None);
    let mut received = Vec::new();
    for t in &GO_TRACKS {
        // ssrc 0: the RTPSender's own SSRC, which is what ion-sfu signals.
        s.go.cmd(
            json!({"cmd": "add_track", "kind": t.kind, "ssrc": 0, "streamId": t.stream,
                        "trackId": t.id, "packets": PACKETS, "intervalMs": INTERVAL_MS}),
        );
        let added = s.wait_go("Go's track_added", WAIT, "track_added", |v| {
            v["trackId"] == t.id
        });
        let ssrc = added["ssrc"].as_u64().unwrap() as u32;
        let (track, meta, codec, our_ssrc) = s.wait_ours("our Track event", WAIT, |e| match e {
            Event::Track {
                track,
                meta,
                codec,
                ssrc,
                ..
            } if meta.track_id == t.id => Some((*track, meta.clone(), codec.clone(), *ssrc)),
            _ => None,
        });
        s.check(
            meta == TrackMeta::new(t.stream, t.id)
                && codec.mime_type.eq_ignore_ascii_case(t.mime)
                && codec.payload_type == t.pt
                && codec.clock_rate == t.clock
                && codec.channels == t.channels
                && our_ssrc == ssrc,
            || {
                format!(
                    "track {} arrived as {meta:?} {codec:?} ssrc {our_ssrc}, Go says {added}",
                    t.id
                )
            },
        );
        received.push((track, ssrc, t));
    }
    s.until("every RTP packet of both tracks", WAIT, |s| {
        received
            .iter()
            .all(|(track, _, _)| rtp_count(s, *track) == PACKETS as usize)
            .then_some(())
    });
    for (track, ssrc, t) in &received {
        // The Track event comes before the track's first packet.
        let track_at = s
            .ours
            .log
            .iter()
            .position(|(_, e)| matches!(e, Event::Track { track: x, .. } if x == track));
        let first_rtp = s
            .ours
            .log
            .iter()
            .position(|(_, e)| matches!(e, Event::Rtp(p) if p.track == *track));
        s.check(track_at < first_rtp, || {
            format!("{}: Track event after its RTP", t.id)
        });
        let seqs: Vec<u16> = s
            .ours
            .events()
            .filter_map(|e| match e {
                Event::Rtp(p) if p.track == *track => {
                    assert_eq!(p.ssrc, *ssrc);
                    assert_eq!(p.payload_type, t.pt);
                    assert_eq!(p.payload.len(), 200, "Go's dummy payload");
                    Some(p.sequence_number)
                }
                _ => None,
            })
            .collect();
        let consecutive = seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1));
        s.check(consecutive, || {
            format!("{}: sequence numbers {seqs:?}", t.id)
        });
    }

    // A PLI from us reaches Go's sender of the video track.
    let (video, video_ssrc, _) = received[0];
    s.ours
        .peer
        .request_keyframe(Instant::now(), video, KeyframeKind::Pli)
        .expect("request_keyframe");
    s.ours.take_events();
    let pli = s.until("our PLI at Go", Duration::from_secs(5), |s| {
        s.go.find("pli", |v| v["ssrc"] == video_ssrc)
    });
    // Again after str0m has had time to send its periodic RTCP reports
    // (a report naming an SSRC pion does not know would stall Go's RTCP).
    s.run_for(Duration::from_secs(LATE_PLI_AFTER_S));
    s.ours
        .peer
        .request_keyframe(Instant::now(), video, KeyframeKind::Pli)
        .expect("request_keyframe");
    s.ours.take_events();
    s.until("our second PLI at Go", Duration::from_secs(5), |s| {
        (s.go.count("pli", |v| v["ssrc"] == video_ssrc) == 2).then_some(())
    });
    let go_rtp_sent: Vec<String> =
        s.go.all("rtp_sent")
            .map(|v| format!("ssrc {} count {}", v["ssrc"], v["count"]))
            .collect();
    println!(
        "interop[{name}]: Go->ours: 2 Track events (VP8 pt 96, Opus pt 111, meta and SSRC as signalled), \
         RTP VP8 {}/{PACKETS}, Opus {}/{PACKETS} (Go sent: {go_rtp_sent:?}); ours->Go: PLI 2 ({pli}); \
         our SRTCP (first type, sender SSRC): {:?}, in order {:?}",
        rtp_count(&s, received[0].0),
        rtp_count(&s, received[1].0),
        s.ours.sniffed.rtcp,
        s.ours.sniffed.rtcp_order,
    );
    s.finish();
}

fn rtp_count(s: &Session, track: TrackId) -> usize {
    s.ours
        .count(|e| matches!(e, Event::Rtp(p) if p.track == track))
}

#[test]
#[ignore = "needs the Go interop peer: bash tests/interop/build.sh"]
fn go_tracks_reach_us_go_offers() {
    go_tracks_reach_us(Offerer::Go, "go_tracks_reach_us_go_offers");
}

#[test]
#[ignore = "needs the Go interop peer: bash tests/interop/build.sh"]
fn go_tracks_reach_us_we_offer() {
    go_tracks_reach_us(Offerer::Us, "go_tracks_reach_us_we_offer");
}

/// Adds a track of ours and waits until both sides agree it exists.
fn add_our_track(s: &mut Session, meta: TrackMeta, codec: TrackCodec) -> (TrackId, u32, Value) {
    let track = s
        .ours
        .peer
        .add_track(Instant::now(), meta.clone(), codec.clone())
        .expect("add_track");
    s.ours.take_events();
    s.wait_ours("TrackAdded", WAIT, |e| {
        (*e == Event::TrackAdded(track)).then_some(())
    });
    let ssrc = s.ours.peer.track_ssrc(track).expect("our track's SSRC");
    let at_go = s.wait_go("Go's track event", WAIT, "track", |v| {
        v["trackId"] == meta.track_id.as_str()
    });
    s.check(
        at_go["ssrc"] == ssrc
            && at_go["payloadType"] == codec.payload_type
            && at_go["streamId"] == meta.stream_id.as_str()
            && at_go["mimeType"] == codec.mime_type.as_str(),
        || format!("Go got {at_go}, we signalled ssrc {ssrc} {codec:?}"),
    );
    (track, ssrc, at_go)
}

/// Writes `PACKETS` packets at `INTERVAL_MS`, stepping in between.
fn send_rtp(s: &mut Session, track: TrackId, pt: u8, clock: u32, marker: bool) {
    let seq0: u16 = fastrand::u16(..);
    let ts0: u32 = fastrand::u32(..);
    let step = clock / 1000 * INTERVAL_MS as u32;
    for i in 0..PACKETS {
        let mut payload = vec![0u8; 200];
        payload[0] = 0x10;
        s.ours
            .peer
            .write_rtp(
                Instant::now(),
                track,
                RtpOut::new(
                    pt,
                    seq0.wrapping_add(i as u16),
                    ts0.wrapping_add(step * i as u32),
                    marker,
                    Bytes::from(payload),
                ),
            )
            .expect("write_rtp");
        s.ours.take_events();
        s.run_for(Duration::from_millis(INTERVAL_MS));
    }
}

fn our_tracks_reach_go(offerer: Offerer, name: &str) {
    let (mut s, _, _) = Session::connect(name, offerer, |_| {});
    let (video, video_ssrc, _) = add_our_track(
        &mut s,
        TrackMeta::new("rs-stream", "rs-video"),
        TrackCodec::vp8(96),
    );
    send_rtp(&mut s, video, 96, 90_000, true);
    let (audio, audio_ssrc, _) = add_our_track(
        &mut s,
        TrackMeta::new("rs-stream", "rs-audio"),
        TrackCodec::opus(111),
    );
    send_rtp(&mut s, audio, 111, 48_000, false);

    let go_count = |s: &Session, ssrc: u32| {
        s.go.all("rtp")
            .filter(|v| v["ssrc"] == ssrc)
            .filter_map(|v| v["count"].as_u64())
            .max()
            .unwrap_or(0)
    };
    // Go prints its counts once a second.
    let counted = s.until("Go counting every packet", Duration::from_secs(5), |s| {
        let (v, a) = (go_count(s, video_ssrc), go_count(s, audio_ssrc));
        (v == PACKETS && a == PACKETS).then_some((v, a))
    });

    // A PLI from Go reaches us as a keyframe request on our video track.
    s.go.cmd(json!({"cmd": "pli", "ssrc": video_ssrc}));
    s.wait_ours("Go's PLI", Duration::from_secs(5), |e| {
        matches!(e, Event::KeyframeRequest { track, kind: KeyframeKind::Pli, .. } if *track == video)
            .then_some(())
    });
    let stats = s.ours.peer.track_stats(video).unwrap();
    let go_errors: Vec<String> = s.go.all("error").map(|v| v.to_string()).collect();
    s.check(go_errors.is_empty(), || format!("Go errors: {go_errors:?}"));
    println!(
        "interop[{name}]: ours->Go: 2 tracks (VP8 ssrc {video_ssrc} pt 96, Opus ssrc {audio_ssrc} pt 111), \
         RTP counted by Go: VP8 {}/{PACKETS}, Opus {}/{PACKETS}; Go->ours: PLI 1 \
         (our video track stats: {} packets sent, {} keyframe requests); \
         our RTP (SSRC, PT): {:?}; our SRTCP (first type, sender SSRC): {:?}",
        counted.0,
        counted.1,
        stats.packets,
        stats.keyframe_requests,
        s.ours.sniffed.rtp,
        s.ours.sniffed.rtcp,
    );
    let _ = audio;
    s.finish();
}

#[test]
#[ignore = "needs the Go interop peer: bash tests/interop/build.sh"]
fn our_tracks_reach_go_we_offer() {
    our_tracks_reach_go(Offerer::Us, "our_tracks_reach_go_we_offer");
}

#[test]
#[ignore = "needs the Go interop peer: bash tests/interop/build.sh"]
fn our_tracks_reach_go_go_offers() {
    our_tracks_reach_go(Offerer::Go, "our_tracks_reach_go_go_offers");
}

/// The size limit toward a Go peer (pion reads SRTP into 1,460 bytes): a
/// 1,440-byte source packet (12-byte header, 1,428 bytes of payload)
/// crosses, a 1,472-byte one (ffmpeg's default) is refused here with the
/// reason and counted, never sent to be dropped there.
#[test]
#[ignore = "needs the Go interop peer: bash tests/interop/build.sh"]
fn the_largest_packet_that_fits_crosses_and_a_larger_one_is_refused() {
    let name = "the_largest_packet_that_fits_crosses_and_a_larger_one_is_refused";
    let (mut s, _, _) = Session::connect(name, Offerer::Us, |_| {});
    let (video, ssrc, _) = add_our_track(
        &mut s,
        TrackMeta::new("rs-stream", "rs-big"),
        TrackCodec::vp8(96),
    );
    assert_eq!(s.ours.peer.track_payload_limit(video), Some(1428));
    const FITTING: u64 = 20;
    let mut refused = None;
    for i in 0..=FITTING {
        // The last one is 1,472 bytes with its header.
        let len = if i == FITTING { 1460 } else { 1428 };
        let mut payload = vec![0u8; len];
        payload[0] = 0x10;
        let packet = RtpOut::new(96, i as u16, (i * 3000) as u32, true, Bytes::from(payload));
        match s.ours.peer.write_rtp(Instant::now(), video, packet) {
            Ok(()) => assert!(i < FITTING, "a 1,472-byte packet was sent"),
            Err(e) => {
                assert!(i == FITTING, "packet {i} refused: {e}");
                refused = Some(e.to_string());
            }
        }
        s.ours.take_events();
        s.run_for(Duration::from_millis(INTERVAL_MS));
    }
    let refused = refused.expect("the large packet was refused");
    s.check(refused.contains("-pkt_size"), || refused.clone());
    let counted = s.until(
        "Go counting the fitting packets",
        Duration::from_secs(5),
        |s| {
            s.go.all("rtp")
                .filter(|v| v["ssrc"] == ssrc)
                .filter_map(|v| v["count"].as_u64())
                .max()
                .filter(|c| *c == FITTING)
        },
    );
    let stats = s.ours.peer.track_stats(video).unwrap();
    s.check(
        stats.refused_too_large == 1 && s.ours.peer.stats().rtp_refused_too_large == 1,
        || format!("{stats:?}"),
    );
    let go_errors: Vec<String> = s.go.all("error").map(|v| v.to_string()).collect();
    s.check(go_errors.is_empty(), || format!("Go errors: {go_errors:?}"));
    println!(
        "interop[{name}]: {counted}/{FITTING} packets of 1,440 bytes (1,460 on the wire) counted by Go; \
         the 1,472-byte one refused here: {refused}"
    );
    s.finish();
}
