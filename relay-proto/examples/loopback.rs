//! Two relay peers on loopback UDP, each driven by a plain blocking loop on
//! its own thread: one offers, the other answers through an in-process
//! "signal", then they exchange requests and emits and close.
//!
//! Run: `cargo run -p relay-proto --example loopback [REQUESTS]`

use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use relay_proto::{Config, Event, Peer, PeerMeta, RequestId};

type AnyError = Box<dyn std::error::Error + Send + Sync>;

/// Sends what the peer queued, then waits for one datagram or its deadline.
fn pump(
    peer: &mut Peer,
    socket: &UdpSocket,
    local: SocketAddr,
    buf: &mut [u8],
) -> Result<(), AnyError> {
    while let Some(t) = peer.poll_transmit() {
        socket.send_to(&t.contents, t.destination)?;
    }
    let now = Instant::now();
    let wait = match peer.poll_timeout() {
        Some(deadline) => deadline.saturating_duration_since(now),
        None => Duration::from_millis(100),
    };
    socket.set_read_timeout(Some(wait.max(Duration::from_micros(100))))?;
    match socket.recv_from(buf) {
        Ok((n, from)) => peer.handle_datagram(Instant::now(), from, local, &buf[..n]),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            peer.handle_timeout(Instant::now())
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

fn answerer(
    offers: mpsc::Receiver<(PeerMeta, Vec<u8>, mpsc::Sender<Vec<u8>>)>,
) -> Result<(), AnyError> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let local = socket.local_addr()?;
    let (meta, offer, answer_to) = offers.recv()?;
    println!(
        "[answer] offer from {} ({} bytes)",
        meta.peer_id,
        offer.len()
    );
    let mut config = Config::new(vec![local]);
    config.seed = 2;
    let mut peer = Peer::new(
        PeerMeta::new("answerer", meta.session_id),
        config,
        Instant::now(),
    )?;
    let answer = peer.accept_offer(Instant::now(), &offer)?;
    answer_to.send(answer)?;
    let mut buf = vec![0u8; 2048];
    loop {
        while let Some(event) = peer.poll_event() {
            match event {
                Event::Ready => println!("[answer] ready"),
                // Echo every request; emits are answered too, harmlessly
                // (the offerer drops replies it did not ask for and counts them).
                Event::Request(req) => peer.reply(Instant::now(), req.id, req.payload)?,
                Event::Closed(reason) => {
                    println!("[answer] closed: {reason}; stats: {:?}", peer.stats());
                    return Ok(());
                }
                _ => {}
            }
        }
        pump(&mut peer, &socket, local, &mut buf)?;
    }
}

fn offerer(
    requests: usize,
    signal: mpsc::Sender<(PeerMeta, Vec<u8>, mpsc::Sender<Vec<u8>>)>,
) -> Result<(), AnyError> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let local = socket.local_addr()?;
    let meta = PeerMeta::new("offerer", "demo-session");
    let mut config = Config::new(vec![local]);
    config.seed = 1;
    let mut peer = Peer::new(meta.clone(), config, Instant::now())?;

    // The one out-of-band round trip.
    let started = Instant::now();
    let offer = peer.create_offer(Instant::now())?;
    let (answer_tx, answer_rx) = mpsc::channel();
    signal.send((meta, offer, answer_tx))?;
    let answer = answer_rx.recv_timeout(Duration::from_secs(5))?;
    peer.accept_answer(Instant::now(), &answer)?;

    let mut buf = vec![0u8; 2048];
    let mut sent_at: std::collections::HashMap<RequestId, Instant> = Default::default();
    let mut rtts = Vec::new();
    loop {
        while let Some(event) = peer.poll_event() {
            match event {
                Event::Ready => {
                    println!("[offer] ready after {:?}", started.elapsed());
                    peer.emit(
                        Instant::now(),
                        "hello",
                        Some(Bytes::from_static(b"from the offerer")),
                    )?;
                    for i in 0..requests {
                        let id = peer.request(
                            Instant::now(),
                            "echo",
                            Some(Bytes::from(format!("ping-{i}"))),
                            None,
                        )?;
                        sent_at.insert(id, Instant::now());
                    }
                }
                Event::Reply { id, payload } => {
                    if let Some(t) = sent_at.remove(&id) {
                        rtts.push(t.elapsed());
                    }
                    if rtts.len() == 1 {
                        println!(
                            "[offer] first reply: {:?}",
                            payload.as_deref().map(String::from_utf8_lossy)
                        );
                    }
                    if rtts.len() == requests {
                        rtts.sort();
                        println!(
                            "[offer] {requests} requests answered; round trip median {:?}, p99 {:?}, max {:?}",
                            rtts[rtts.len() / 2],
                            rtts[(rtts.len() * 99 / 100).min(rtts.len() - 1)],
                            rtts[rtts.len() - 1]
                        );
                        peer.close(Instant::now());
                    }
                }
                Event::RequestFailed { id, reason } => {
                    return Err(format!("request {id:?} failed: {reason}").into());
                }
                Event::Closed(reason) => {
                    println!("[offer] closed: {reason}; stats: {:?}", peer.stats());
                    // Send the goodbye datagrams still queued.
                    while let Some(t) = peer.poll_transmit() {
                        socket.send_to(&t.contents, t.destination)?;
                    }
                    return if rtts.len() == requests {
                        Ok(())
                    } else {
                        Err("closed before every request was answered".into())
                    };
                }
                _ => {}
            }
        }
        pump(&mut peer, &socket, local, &mut buf)?;
    }
}

fn main() -> Result<(), AnyError> {
    let requests: usize = match std::env::args().nth(1) {
        Some(n) => n.parse().map_err(|_| "usage: loopback [REQUESTS]")?,
        None => 1000,
    };
    let (signal_tx, signal_rx) = mpsc::channel();
    let answer = thread::spawn(move || answerer(signal_rx));
    let offer = offerer(requests, signal_tx);
    let answer = answer.join().map_err(|_| "answerer panicked")?;
    offer?;
    answer?;
    println!("ok");
    Ok(())
}
