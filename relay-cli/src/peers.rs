//! `relay answer` and `relay offer`: relay peers signalled over HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::StatusCode;
use relay_tokio::{Config, Endpoint, Error, Event, Peer, PeerMeta, PeerSet};
use tokio::net::TcpListener;

use crate::report::{Spread, human};
use crate::{AnswerArgs, CliError, OfferArgs, media};

fn bound(addr: SocketAddr, announce: &[std::net::IpAddr]) -> Config {
    let mut config = Config::bind(vec![addr]);
    config.endpoint.announced_ips = announce.to_vec();
    config
}

/// `relay answer`: serve offers until interrupted.
pub async fn answer(args: AnswerArgs) -> Result<(), CliError> {
    let mut shutdown = crate::Shutdown::catch()?;
    let listener = TcpListener::bind(args.listen).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            format!("cannot listen on {}: port in use", args.listen)
        } else {
            format!("cannot listen on {}: {e}", args.listen)
        }
    })?;
    println!("relay answer: POST offers to http://{}/relay", args.listen);
    let live = Arc::new(AtomicUsize::new(0));
    let peers = PeerSet::new();
    let kept = peers.clone();
    let (echo, max_peers) = (args.echo, args.max_peers);
    let config = bound(args.bind, &args.announce);
    // A fixed port: every peer on one socket, routed by the endpoint.
    let endpoint = if args.bind.port() != 0 {
        let endpoint = Endpoint::bind(config.endpoint.clone()).await?;
        println!("relay answer: relay peers on {}", args.bind);
        Some(endpoint)
    } else {
        None
    };
    let sink = args.rtp_out.map(|target| media::RtpOutSink {
        target,
        sdp_dir: args.sdp_dir.clone(),
        next: Default::default(),
    });
    let server = relay_http::serve(listener, args.token.clone(), move |meta, offer| {
        let live = live.clone();
        let sink = sink.clone();
        let kept = kept.clone();
        let endpoint = endpoint.clone();
        let config = config.clone();
        async move {
            if live.load(Ordering::SeqCst) >= max_peers {
                return Err((
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("peer limit reached: {max_peers} relay peers are connected"),
                ));
            }
            let local = PeerMeta::new(format!("answer-{}", meta.peer_id), meta.session_id.clone());
            let answered = match &endpoint {
                Some(endpoint) => endpoint.answer(local, config, &offer),
                None => Peer::answer(local, config, &offer).await,
            };
            let (peer, answer) = match answered {
                Ok(x) => x,
                Err(Error::Peer(e)) => {
                    return Err((StatusCode::BAD_REQUEST, format!("offer refused: {e}")));
                }
                Err(e) => {
                    return Err((
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("cannot answer: {e}"),
                    ));
                }
            };
            live.fetch_add(1, Ordering::SeqCst);
            kept.insert(&peer);
            tokio::spawn(watch(peer, meta, echo, live, sink));
            Ok(answer)
        }
    });
    tokio::select! {
        _ = server => Ok(()),
        signal = shutdown.signalled() => {
            let open = peers.len();
            let closed = peers.close_all(crate::SHUTDOWN_WAIT).await;
            println!("{signal}: closed {closed} of {open} relay peers");
            Ok(())
        }
    }
}

/// Prints a line per event of one answered peer.
async fn watch(
    peer: Peer,
    remote: PeerMeta,
    echo: bool,
    live: Arc<AtomicUsize>,
    sink: Option<media::RtpOutSink>,
) {
    let who = format!("[{} / {}]", remote.peer_id, remote.session_id);
    let Some(mut events) = peer.events() else {
        return;
    };
    while let Some(event) = events.next().await {
        match event {
            Event::Ready => println!("{who} ready"),
            Event::Request(req) => {
                let len = req.payload().map_or(0, |p| p.len());
                println!("{who} request {:?} ({len} bytes)", req.event());
                if echo {
                    let payload = req.payload().cloned();
                    tokio::spawn(async move {
                        let _ = req.reply(payload).await;
                    });
                } else {
                    req.ignore();
                }
            }
            Event::DataChannel(channel) => {
                println!("{who} data channel {:?}", channel.label());
                let who = who.clone();
                tokio::spawn(async move {
                    let mut count = 0u64;
                    while let Some(msg) = channel.recv().await {
                        count += 1;
                        if echo {
                            let _ = channel.send(msg.data).await;
                        }
                    }
                    println!(
                        "{who} data channel {:?} closed after {count} messages",
                        channel.label()
                    );
                });
            }
            Event::Track(track) => {
                let c = track.codec();
                println!(
                    "{who} track {}/{} {} payload type {} clock {} ssrc {}",
                    track.meta().stream_id,
                    track.meta().track_id,
                    c.mime_type,
                    c.payload_type,
                    c.clock_rate,
                    track.ssrc()
                );
                let tag = format!(
                    "{}-{}-{}",
                    remote.peer_id,
                    track.meta().stream_id,
                    track.meta().track_id
                );
                media::follow(track, who.clone(), sink.clone(), tag);
            }
            Event::PathInterrupted => println!("{who} path interrupted"),
            Event::PathRestored => println!("{who} path restored"),
            Event::Closed(reason) => {
                println!("{who} closed: {reason}");
                break;
            }
            _ => {}
        }
    }
    live.fetch_sub(1, Ordering::SeqCst);
}

/// `relay offer`: connect, fire requests, report.
pub async fn offer(args: OfferArgs) -> Result<(), CliError> {
    let mut shutdown = crate::Shutdown::catch()?;
    let meta = PeerMeta::new(args.peer_id.clone(), args.session_id.clone());
    let mut config = bound(args.bind, &args.announce);
    config.core.connect_timeout = Duration::from_secs(args.ready_timeout.max(1));
    if args.soak.is_some() {
        // On a lossy link one lost SCTP chunk waits out a retransmission
        // timeout (1 s at least, doubling): the 2 s default for a track's
        // answer is too short there.
        config.core.track_request_timeout = Duration::from_secs(10);
    }
    let peer = Peer::new(meta, config).await?;
    let started = Instant::now();
    let (url, token) = (args.signal.clone(), args.token.clone());
    let signal = move |meta: PeerMeta, offer: Vec<u8>| async move {
        relay_http::post_offer(&url, &meta, offer, token.as_deref()).await
    };
    match peer.offer(signal).await {
        Ok(()) => {}
        Err(Error::Signal(e)) => return Err(format!("{e}").into()),
        Err(Error::Peer(e)) => {
            return Err(format!("the answer does not parse or cannot be used: {e}").into());
        }
        Err(Error::Closed(relay_tokio::CloseReason::ConnectTimeout)) => {
            return Err(format!("no Ready within {} s", args.ready_timeout).into());
        }
        Err(e) => return Err(e.into()),
    }
    println!("ready after {}", human(started.elapsed()));
    let relayed = match args.rtp_in {
        Some(port) => {
            let codec = match args.codec.to_ascii_lowercase().as_str() {
                "video/h264" => relay_tokio::relay_proto::TrackCodec::h264(args.pt),
                "video/vp8" => relay_tokio::relay_proto::TrackCodec::vp8(args.pt),
                "audio/opus" => relay_tokio::relay_proto::TrackCodec::opus(args.pt),
                other => {
                    peer.close().await;
                    return Err(format!(
                        "unknown codec {other:?}: use video/H264, video/VP8 or audio/opus"
                    )
                    .into());
                }
            };
            let meta = relay_tokio::relay_proto::TrackMeta::new(args.session_id.clone(), "rtp-in");
            Some(media::rtp_in(&peer, args.bind.ip(), port, codec, meta).await?)
        }
        None => None,
    };
    if let Some(secs) = args.soak {
        println!("soak: {secs} s of requests, data-channel messages and video");
        let r = crate::soak::run(&peer, secs).await?;
        println!(
            "soak: requests {} answered, {} timed out, {} failed otherwise, {} without exactly one outcome, {} wrong replies",
            r.replies, r.timed_out, r.failed, r.unanswered, r.wrong_replies
        );
        println!(
            "soak: messages {} sent, {} back, {} wrong or out of order",
            r.messages_sent, r.messages_back, r.messages_wrong
        );
        println!(
            "soak: request round trips: median {}, p99 {}, max {}",
            human(r.rtt.median),
            human(r.rtt.p99),
            human(r.rtt.max)
        );
        println!("soak: video {} packets sent", r.video_sent);
        println!("soak: took {}", human(r.took));
        let stats = peer.stats().await;
        println!(
            "soak: datagrams {} out, {} in; {} requests timed out in the core",
            stats.core.datagrams_out, stats.core.datagrams_in, stats.core.requests_timed_out
        );
        peer.close().await;
        return if r.passed() {
            Ok(())
        } else {
            Err("soak failed".into())
        };
    }
    if args.requests > 0 {
        let mut rtts = Vec::with_capacity(args.requests);
        let mut failed = 0;
        for i in 0..args.requests {
            let payload = Bytes::from(format!("request {i}"));
            let sent = Instant::now();
            match peer.request("echo", Some(payload)).await {
                Ok(_) => rtts.push(sent.elapsed()),
                Err(e) => {
                    failed += 1;
                    if failed == 1 {
                        eprintln!("request failed: {e}");
                    }
                }
            }
        }
        match Spread::of(&rtts) {
            Some(s) => println!(
                "{}/{} requests answered; round trip {s}",
                rtts.len(),
                args.requests
            ),
            None => println!("no request answered"),
        }
        if failed > 0 {
            peer.close().await;
            return Err(format!("{failed} of {} requests failed", args.requests).into());
        }
    }
    if args.stay || relayed.is_some() {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tokio::select! {
                reason = peer.closed() => {
                    println!("closed: {reason}");
                    break;
                }
                signal = shutdown.signalled() => {
                    let _ = tokio::time::timeout(crate::SHUTDOWN_WAIT, peer.close()).await;
                    println!("{signal}: closed");
                    return Ok(());
                }
                _ = tick.tick() => {
                    if let Some(n) = &relayed {
                        println!("relayed {} RTP packets", n.load(Ordering::Relaxed));
                    }
                }
            }
        }
    }
    peer.close().await;
    Ok(())
}
