//! Two relay peers on loopback over smol: the answerer echoes requests and
//! data-channel messages and reads tracks; the offerer sends a few requests,
//! opens a data channel, relays a video track, and closes.
//!
//! Run: `cargo run -p relay-smol --example smol-echo`

use std::time::{Duration, Instant};

use bytes::Bytes;
use relay_smol::{ChannelOptions, Config, Error, Peer, PeerMeta, RtpOut, TrackCodec, TrackMeta};

fn main() -> Result<(), Error> {
    smol::block_on(run())
}

async fn run() -> Result<(), Error> {
    let localhost = vec!["127.0.0.1:0".parse().unwrap()];

    // The signal function: here the answerer lives in the same process.
    let answerer_config = Config::bind(localhost.clone());
    let signal = |meta: PeerMeta, offer: Vec<u8>| async move {
        println!(
            "[answer] offer from {} ({} bytes)",
            meta.peer_id,
            offer.len()
        );
        let (answerer, answer) = Peer::answer(
            PeerMeta::new("answerer", meta.session_id),
            answerer_config,
            &offer,
        )
        .await?;
        answerer.on_request(|req| {
            smol::spawn(async move {
                let payload = req.payload().cloned();
                let _ = req.reply(payload).await;
            })
            .detach();
        });
        answerer.on_data_channel(|channel| {
            smol::spawn(async move {
                while let Some(m) = channel.recv().await {
                    let _ = channel.send(m.data).await;
                }
            })
            .detach();
        });
        answerer.on_track(|track| {
            smol::spawn(async move {
                let mut packets = 0;
                let mut bytes = 0;
                while let Some(p) = track.read_rtp().await {
                    packets += 1;
                    bytes += p.payload.len();
                }
                println!(
                    "[answer] track {:?} ({}) ended: {packets} packets, {bytes} bytes",
                    track.meta().track_id,
                    track.codec().mime_type
                );
            })
            .detach();
        });
        smol::spawn(async move {
            println!("[answer] closed: {}", answerer.closed().await);
        })
        .detach();
        Ok::<_, Error>(answer)
    };

    let started = Instant::now();
    let peer = Peer::new(PeerMeta::new("offerer", "demo"), Config::bind(localhost)).await?;
    peer.offer(signal).await?;
    println!("[offer] ready after {:?}", started.elapsed());

    for i in 0..5 {
        let t = Instant::now();
        let reply = peer
            .request("echo", Some(Bytes::from(format!("ping-{i}"))))
            .await?;
        println!(
            "[offer] {:?} in {:?}",
            reply.as_deref().map(String::from_utf8_lossy),
            t.elapsed()
        );
    }
    let channel = peer
        .create_data_channel("chat", ChannelOptions::default())
        .await?;
    channel.send_text("hello over a data channel").await?;
    if let Some(m) = channel.recv().await {
        println!("[offer] channel echo: {}", String::from_utf8_lossy(&m.data));
    }

    // A video track: 30 frames of 3 packets, paced as a camera would be.
    let video = peer
        .add_track(TrackMeta::new("camera", "video"), TrackCodec::vp8(96))
        .await?;
    println!("[offer] track accepted");
    let mut seq: u16 = 0;
    for frame in 0..30u32 {
        for i in 0..3 {
            let payload = Bytes::from(vec![frame as u8; 1000]);
            video
                .write_rtp(RtpOut::new(96, seq, frame * 3000, i == 2, payload))
                .await?;
            seq = seq.wrapping_add(1);
        }
        async_io::Timer::after(Duration::from_millis(20)).await;
    }
    println!("[offer] track sent: {:?}", video.stats().await?);
    video.remove().await?;

    peer.close().await;
    println!("[offer] stats: {:?}", peer.stats().await);
    // Give the answerer's close log a moment.
    async_io::Timer::after(Duration::from_millis(50)).await;
    println!("ok");
    Ok(())
}
