//! `relay answer` and `relay offer`: relay peers signalled over HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::StatusCode;
use relay_tokio::{Config, Error, Event, Peer, PeerMeta};
use tokio::net::TcpListener;

use crate::report::{Spread, human};
use crate::{AnswerArgs, CliError, OfferArgs, http};

fn bound(ip: std::net::IpAddr) -> Config {
    Config::bind(vec![SocketAddr::new(ip, 0)])
}

/// `relay answer`: serve offers until interrupted.
pub async fn answer(args: AnswerArgs) -> Result<(), CliError> {
    let listener = TcpListener::bind(args.listen).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            format!("cannot listen on {}: port in use", args.listen)
        } else {
            format!("cannot listen on {}: {e}", args.listen)
        }
    })?;
    println!("relay answer: POST offers to http://{}/relay", args.listen);
    let live = Arc::new(AtomicUsize::new(0));
    let (echo, max_peers, bind) = (args.echo, args.max_peers, args.bind);
    let server = http::serve(listener, args.token.clone(), move |meta, offer| {
        let live = live.clone();
        async move {
            if live.load(Ordering::SeqCst) >= max_peers {
                return Err((
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("peer limit reached: {max_peers} relay peers are connected"),
                ));
            }
            let local = PeerMeta::new(format!("answer-{}", meta.peer_id), meta.session_id.clone());
            let (peer, answer) = match Peer::answer(local, bound(bind), &offer).await {
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
            tokio::spawn(watch(peer, meta, echo, live));
            Ok(answer)
        }
    });
    tokio::select! {
        _ = server => Ok(()),
        _ = tokio::signal::ctrl_c() => {
            println!("interrupted");
            Ok(())
        }
    }
}

/// Prints a line per event of one answered peer.
async fn watch(peer: Peer, remote: PeerMeta, echo: bool, live: Arc<AtomicUsize>) {
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
    let meta = PeerMeta::new(args.peer_id.clone(), args.session_id.clone());
    let mut config = bound(args.bind);
    config.core.connect_timeout = Duration::from_secs(args.ready_timeout.max(1));
    let peer = Peer::new(meta, config).await?;
    let started = Instant::now();
    let (url, token) = (args.signal.clone(), args.token.clone());
    let signal = move |meta: PeerMeta, offer: Vec<u8>| async move {
        http::post_offer(&url, &meta, offer, token.as_deref()).await
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
    if args.stay {
        tokio::select! {
            reason = peer.closed() => println!("closed: {reason}"),
            _ = tokio::signal::ctrl_c() => println!("interrupted"),
        }
    }
    peer.close().await;
    Ok(())
}
