//! `relay demo`: two relay peers on loopback in one process.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use relay_tokio::relay_proto::{TrackCodec, TrackMeta};
use relay_tokio::{ChannelOptions, Config, Error, Peer, PeerMeta};
use tokio::sync::Semaphore;

use crate::CliError;
use crate::media::{self, Received};
use crate::report::{Spread, human};

/// Arguments of `relay demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Requests to send (echoed by the answering peer).
    #[arg(long, default_value_t = 1000)]
    pub requests: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    pub in_flight: usize,
    /// Emits to send.
    #[arg(long, default_value_t = 200)]
    pub emits: usize,
    /// Data-channel messages to send (echoed back).
    #[arg(long, default_value_t = 200)]
    pub messages: usize,
    /// Seconds of synthetic video (VP8, 30 fps) and audio (Opus) to relay.
    #[arg(long, default_value_t = 3)]
    pub seconds: u64,
}

fn config() -> Config {
    Config::bind(vec!["127.0.0.1:0".parse().expect("a literal address")])
}

/// Runs the demo; fails unless everything crossed.
pub async fn run(args: DemoArgs) -> Result<(), CliError> {
    println!("relay demo: two peers on 127.0.0.1, one offering to the other in process");

    // The answering side is made inside the signal function, as a remote
    // server would on receiving the offer; keep its handle.
    let (answerer_tx, answerer_rx) = tokio::sync::oneshot::channel();
    let signal = move |meta: PeerMeta, offer: Vec<u8>| async move {
        println!(
            "  offer from {} ({} bytes) -> answering",
            meta.peer_id,
            offer.len()
        );
        let (answerer, answer) = Peer::answer(
            PeerMeta::new("demo-answerer", meta.session_id),
            config(),
            &offer,
        )
        .await?;
        let _ = answerer_tx.send(answerer);
        Ok::<_, Error>(answer)
    };

    let offerer = Peer::new(PeerMeta::new("demo-offerer", "demo"), config()).await?;
    // From the offer to Ready: the answerer's own setup (its socket and
    // certificate) is inside, as it is for a remote server.
    let started = Instant::now();
    offerer.offer(signal).await?;
    let offerer_ready = started.elapsed();
    let answerer: Peer = answerer_rx.await?;
    answerer.ready().await?;
    let answerer_ready = started.elapsed();
    println!(
        "  ready: offerer after {}, answerer after {}",
        human(offerer_ready),
        human(answerer_ready)
    );

    // The answering side echoes requests, counts emits, echoes channel data.
    let emits_seen = Arc::new(AtomicU64::new(0));
    let seen = emits_seen.clone();
    answerer.on_request(move |req| {
        if req.event() == "tick" {
            seen.fetch_add(1, Ordering::Relaxed);
            req.ignore();
            return;
        }
        tokio::spawn(async move {
            let payload = req.payload().cloned();
            let _ = req.reply(payload).await;
        });
    });
    answerer.on_data_channel(|channel| {
        tokio::spawn(async move {
            while let Some(msg) = channel.recv().await {
                if channel.send(msg.data).await.is_err() {
                    break;
                }
            }
        });
    });

    // Tracks: the answering side reads each to its end and asks for one
    // keyframe a second in.
    let (track_tx, mut track_rx) = tokio::sync::mpsc::unbounded_channel::<(String, Received)>();
    answerer.on_track(move |track| {
        let tx = track_tx.clone();
        tokio::spawn(async move {
            let name = track.meta().track_id.clone();
            let got = media::count(track, Some(Duration::from_secs(1))).await;
            let _ = tx.send((name, got));
        });
    });
    print!(
        "  tracks: {} s of VP8 video and Opus audio ... ",
        args.seconds
    );
    let video = offerer
        .add_track(TrackMeta::new("demo", "video"), TrackCodec::vp8(96))
        .await?;
    let audio = offerer
        .add_track(TrackMeta::new("demo", "audio"), TrackCodec::opus(111))
        .await?;
    let (sent_video, sent_audio) = tokio::try_join!(
        media::synthetic_video(&video, args.seconds),
        media::synthetic_audio(&audio, args.seconds)
    )?;
    // Removal travels on the signalling channel and can overtake the last
    // packets: let them land first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop((video, audio));
    let mut received = std::collections::HashMap::new();
    while received.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(5), track_rx.recv()).await {
            Ok(Some((name, got))) => {
                received.insert(name, got);
            }
            _ => break,
        }
    }
    println!("done");

    // Requests, `in_flight` at a time.
    print!(
        "  requests: {} with {} in flight ... ",
        args.requests, args.in_flight
    );
    let limit = Arc::new(Semaphore::new(args.in_flight.max(1)));
    let burst = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..args.requests {
        let permit = limit.clone().acquire_owned().await?;
        let peer = offerer.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let payload = Bytes::from(format!("request {i}"));
            let sent = Instant::now();
            let reply = peer.request("echo", Some(payload.clone())).await;
            (reply.map(|r| r == Some(payload)), sent.elapsed())
        });
    }
    let mut rtts = Vec::with_capacity(args.requests);
    let mut failed = 0usize;
    while let Some(done) = tasks.join_next().await {
        match done? {
            (Ok(true), rtt) => rtts.push(rtt),
            _ => failed += 1,
        }
    }
    let burst_time = burst.elapsed();
    let rate = rtts.len() as f64 / burst_time.as_secs_f64().max(1e-9);
    println!(
        "{} answered in {} ({rate:.0}/s)",
        rtts.len(),
        human(burst_time)
    );

    // Emits.
    for i in 0..args.emits {
        offerer
            .emit("tick", Some(Bytes::from(i.to_string())))
            .await?;
    }

    // A data channel, echoed back.
    let channel = offerer
        .create_data_channel("demo-chat", ChannelOptions::default())
        .await?;
    for i in 0..args.messages {
        channel.send(Bytes::from(format!("message {i}"))).await?;
    }
    let mut echoed = 0usize;
    let deadline = Instant::now() + Duration::from_secs(10);
    while echoed < args.messages {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, channel.recv()).await {
            Ok(Some(msg)) if msg.data.as_ref() == format!("message {echoed}").as_bytes() => {
                echoed += 1
            }
            Ok(Some(_)) | Ok(None) | Err(_) => break,
        }
    }
    // Let the last emits land before counting them.
    let deadline = Instant::now() + Duration::from_secs(5);
    while (emits_seen.load(Ordering::Relaxed) as usize) < args.emits && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let emits = emits_seen.load(Ordering::Relaxed) as usize;

    offerer.close().await;
    let reason = tokio::time::timeout(Duration::from_secs(5), answerer.closed()).await;

    println!();
    println!("summary");
    println!(
        "  time to ready          offerer {}, answerer {}",
        human(offerer_ready),
        human(answerer_ready)
    );
    match Spread::of(&rtts) {
        Some(s) => println!(
            "  requests               {}/{} answered, round trip {s}, {rate:.0} requests/s",
            rtts.len(),
            args.requests
        ),
        None => println!("  requests               none answered"),
    }
    let mut tracks_ok = true;
    for (name, sent) in [("video", sent_video), ("audio", sent_audio)] {
        let got = received.get(name).cloned().unwrap_or_default();
        let secs = args.seconds.max(1) as f64;
        let loss = sent.packets.saturating_sub(got.packets);
        println!(
            "  track {name:<16} {}/{} packets, {:.0} kbit/s, {loss} lost, keyframe requests {}",
            got.packets,
            sent.packets,
            got.bytes as f64 * 8.0 / secs / 1000.0,
            sent.keyframe_requests
        );
        tracks_ok &= got.packets == sent.packets;
        if name == "video" {
            tracks_ok &= sent.keyframe_requests >= 1;
        }
    }
    println!("  emits                  {emits}/{} received", args.emits);
    println!(
        "  data channel           {echoed}/{} messages echoed in order",
        args.messages
    );
    match &reason {
        Ok(r) => println!("  close                  answerer saw: {r}"),
        Err(_) => println!("  close                  answerer did not notice within 5 s"),
    }
    let ok = tracks_ok
        && failed == 0
        && rtts.len() == args.requests
        && emits == args.emits
        && echoed == args.messages
        && reason.is_ok();
    if ok {
        println!("everything crossed");
        Ok(())
    } else {
        Err("not everything crossed (see the summary)".into())
    }
}
