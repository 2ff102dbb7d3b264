//! `relay offer --soak SECS`: a sustained mixed load against `relay answer
//! --echo`, for the fault soak (tests/soak/run.sh runs it across a lossy,
//! delayed, reordering link). Everything it checks is counted here, but for
//! the video: the answering side prints how many packets it received when
//! the track ends ("... ended after N packets"), and the soak script
//! compares that with the count printed here.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use relay_tokio::relay_proto::{TrackCodec, TrackMeta};
use relay_tokio::{ChannelOptions, Error, Peer, RtpOut};

use crate::CliError;
use crate::report::Spread;

/// Requests over the whole soak.
const REQUESTS: usize = 10_000;
/// Requests awaiting a reply at once, at most (under the core's 4,096).
const IN_FLIGHT: usize = 2_048;
/// How long a request waits for its reply. Longer than the default 5 s: at
/// 5 % loss the signalling channel's SCTP backs off (its retransmission
/// timer starts at 1 s and doubles, and str0m 0.25 does not let us lower
/// it), so a reply can take several seconds and still be a reply.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Data-channel messages per second, and their size.
const MESSAGES_PER_S: u64 = 10;
const MESSAGE_BYTES: usize = 1_000;
/// Video: frames per second and packets per frame of this size.
const FPS: u64 = 30;
const PACKETS_PER_FRAME: u64 = 5;
const PACKET_BYTES: usize = 1_100;

/// What one soak saw.
pub struct Report {
    pub replies: usize,
    pub timed_out: usize,
    pub failed: usize,
    pub unanswered: usize,
    pub wrong_replies: usize,
    pub messages_sent: u64,
    pub messages_back: u64,
    pub messages_wrong: u64,
    pub video_sent: u64,
    /// Round trips of the requests that got a reply.
    pub rtt: Spread,
    /// From the first request to the last figure.
    pub took: Duration,
}

impl Report {
    /// Every request got exactly one outcome and every message came back
    /// whole and in order.
    pub fn passed(&self) -> bool {
        self.unanswered == 0
            && self.wrong_replies == 0
            && self.messages_wrong == 0
            && self.messages_back == self.messages_sent
    }
}

/// Message `i`: its number, then bytes that depend on it (so a message cut
/// short, or another's bytes, is seen).
fn message(i: u64) -> Vec<u8> {
    let mut m = i.to_be_bytes().to_vec();
    m.extend((0..MESSAGE_BYTES - 8).map(|k| (i as usize * 31 + k) as u8));
    m
}

pub async fn run(peer: &Peer, secs: u64) -> Result<Report, CliError> {
    let window = Duration::from_secs(secs.max(1));
    let started = Instant::now();

    // Requests: REQUESTS sent on a fixed schedule over the window, each in
    // its own task (a reply held up by a retransmission does not delay the
    // next), at most IN_FLIGHT awaiting at once; each ends in exactly one
    // outcome (reply or error).
    let outcomes: Arc<Vec<AtomicU64>> =
        Arc::new((0..REQUESTS).map(|_| AtomicU64::new(0)).collect());
    // Each reply's round trip, in microseconds (0: none).
    let rtts: Arc<Vec<AtomicU64>> = Arc::new((0..REQUESTS).map(|_| AtomicU64::new(0)).collect());
    let interval = window / REQUESTS as u32;
    let requesters = {
        let (peer, outcomes, rtts) = (peer.clone(), outcomes.clone(), rtts.clone());
        tokio::spawn(async move {
            let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
            let mut tasks = Vec::with_capacity(REQUESTS);
            for i in 0..REQUESTS {
                tokio::time::sleep_until((started + interval * i as u32).into()).await;
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    break;
                };
                let (peer, outcomes, rtts) = (peer.clone(), outcomes.clone(), rtts.clone());
                tasks.push(tokio::spawn(async move {
                    let _slot = slot;
                    let payload = Bytes::from(format!("soak-{i}"));
                    let sent = Instant::now();
                    // 1 reply, 2 wrong reply, 3 timed out, 4 failed otherwise.
                    let outcome = match peer
                        .request_with_timeout("echo", Some(payload.clone()), REQUEST_TIMEOUT)
                        .await
                    {
                        Ok(Some(p)) if p == payload => {
                            let us = sent.elapsed().as_micros().max(1) as u64;
                            rtts[i].store(us, Ordering::SeqCst);
                            1
                        }
                        Ok(_) => 2,
                        Err(Error::Request(relay_tokio::RequestError::TimedOut)) => 3,
                        Err(_) => 4,
                    };
                    // A second outcome for one request would be a bug: marked.
                    if outcomes[i].swap(outcome, Ordering::SeqCst) != 0 {
                        outcomes[i].store(u64::MAX, Ordering::SeqCst);
                    }
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        })
    };

    // Data channel: numbered messages, echoed; checked in order and whole.
    let channel = peer
        .create_data_channel("soak", ChannelOptions::default())
        .await?;
    let channel = Arc::new(channel);
    let (back, wrong) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let reader = {
        let (channel, back, wrong) = (channel.clone(), back.clone(), wrong.clone());
        tokio::spawn(async move {
            let mut expected = 0u64;
            while let Some(m) = channel.recv().await {
                if m.data[..] != message(expected)[..] {
                    wrong.fetch_add(1, Ordering::SeqCst);
                }
                expected += 1;
                back.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let total_messages = MESSAGES_PER_S * window.as_secs();
    let sender = {
        let channel = channel.clone();
        tokio::spawn(async move {
            let step = Duration::from_secs(1) / MESSAGES_PER_S as u32;
            for i in 0..total_messages {
                tokio::time::sleep_until((started + step * i as u32).into()).await;
                if channel.send(message(i)).await.is_err() {
                    return i;
                }
            }
            total_messages
        })
    };

    // Video with RTX: frames of a few packets, marker on each frame's last.
    let track = peer
        .add_track(TrackMeta::new("soak", "soak-video"), TrackCodec::vp8(96))
        .await?;
    let frames = FPS * window.as_secs();
    let mut video_sent = 0u64;
    let mut seq = 0u16;
    let payload = {
        let mut p = vec![0u8; PACKET_BYTES];
        p[0] = 0x10;
        Bytes::from(p)
    };
    // Frames are timed from when the track is ready, not from the start:
    // adding it waits for the remote's answer behind the requests, and
    // the frames due meanwhile would leave as one burst. The link's jitter
    // shuffles a burst, and str0m drops what arrives older than a stream's
    // first packet (its NACK window starts there), so a burst at the start
    // loses about half of itself (README "The fault soak").
    let video_started = Instant::now();
    for f in 0..frames {
        tokio::time::sleep_until(
            (video_started + Duration::from_secs(1) / FPS as u32 * f as u32).into(),
        )
        .await;
        for k in 0..PACKETS_PER_FRAME {
            let out = RtpOut::new(
                96,
                seq,
                (f * 3000) as u32,
                k + 1 == PACKETS_PER_FRAME,
                payload.clone(),
            );
            seq = seq.wrapping_add(1);
            if track.write_rtp(out).await.is_ok() {
                video_sent += 1;
            }
        }
    }
    let messages_sent = sender.await.unwrap_or(0);
    let _ = requesters.await;
    // Stragglers: retransmissions at 30 ms each way settle well within this.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Removing the track makes the answerer print what it received.
    let _ = track.remove().await;
    let _ = channel.close().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut report = Report {
        replies: 0,
        timed_out: 0,
        failed: 0,
        unanswered: 0,
        wrong_replies: 0,
        messages_sent,
        messages_back: back.load(Ordering::SeqCst),
        messages_wrong: wrong.load(Ordering::SeqCst),
        video_sent,
        rtt: Spread::of(
            &rtts
                .iter()
                .map(|r| r.load(Ordering::SeqCst))
                .filter(|&us| us > 0)
                .map(Duration::from_micros)
                .collect::<Vec<_>>(),
        )
        .unwrap_or(Spread {
            median: Duration::ZERO,
            p99: Duration::ZERO,
            max: Duration::ZERO,
        }),
        took: started.elapsed(),
    };
    for o in outcomes.iter() {
        match o.load(Ordering::SeqCst) {
            1 => report.replies += 1,
            2 => report.wrong_replies += 1,
            3 => report.timed_out += 1,
            4 => report.failed += 1,
            // None, or more than one.
            _ => report.unanswered += 1,
        }
    }
    Ok(report)
}
