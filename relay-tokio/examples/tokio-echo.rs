//! Two relay peers on loopback over tokio: the answerer echoes requests, the
//! offerer sends a few, opens a data channel, and closes.
//!
//! Run: `cargo run -p relay-tokio --example echo`

use std::time::Instant;

use bytes::Bytes;
use relay_tokio::{ChannelOptions, Config, Error, Peer, PeerMeta};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
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
            tokio::spawn(async move {
                let payload = req.payload().cloned();
                let _ = req.reply(payload).await;
            });
        });
        answerer.on_data_channel(|channel| {
            tokio::spawn(async move {
                while let Some(m) = channel.recv().await {
                    let _ = channel.send(m.data).await;
                }
            });
        });
        tokio::spawn(async move {
            println!("[answer] closed: {}", answerer.closed().await);
        });
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
    peer.close().await;
    println!("[offer] stats: {:?}", peer.stats().await);
    // Give the answerer's close log a moment.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    println!("ok");
    Ok(())
}
