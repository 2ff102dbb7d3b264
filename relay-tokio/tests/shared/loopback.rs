//! The adapter over real loopback sockets (127.0.0.1 only), written once
//! for both adapters: the including test file names the adapter `relay` and
//! gives `sleep`, `spawn` (detached) and `task` (joined); each public
//! function here is one test, run under the including file's runtime and
//! time bound.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::future;

use super::relay::relay_proto;
use super::relay::{
    ChannelOptions, CloseReason, Config, Endpoint, EndpointConfig, Error, Event, Peer, PeerMeta,
    RequestError,
};
use super::{sleep, spawn, task};

fn localhost() -> Vec<SocketAddr> {
    vec!["127.0.0.1:0".parse().unwrap()]
}

fn config() -> Config {
    let mut c = Config::bind(localhost());
    c.core.connect_timeout = Duration::from_secs(5);
    c
}

/// Bounds one step of a test: a hang there is a failure at once.
async fn bounded<T>(secs: u64, f: impl Future<Output = T>) -> T {
    future::or(f, async {
        sleep(Duration::from_secs(secs)).await;
        panic!("timed out")
    })
    .await
}

/// An offerer and an answerer connected over loopback; the answerer is made
/// by `answer` inside the signal function.
async fn pair_with(
    offerer: Peer,
    answer: impl FnOnce(PeerMeta, Vec<u8>) -> Result<(Peer, Vec<u8>), Error>,
) -> (Peer, Peer) {
    let slot = Arc::new(Mutex::new(None));
    let keep = slot.clone();
    offerer
        .offer(|meta, offer| async move {
            let (peer, answer) = answer(meta, offer)?;
            *keep.lock().unwrap() = Some(peer);
            Ok::<_, Error>(answer)
        })
        .await
        .expect("offer");
    let answerer = slot.lock().unwrap().take().expect("answerer");
    bounded(5, answerer.ready()).await.expect("answerer ready");
    (offerer, answerer)
}

async fn pair() -> (Peer, Peer) {
    let offerer = Peer::new(PeerMeta::new("a", "s"), config()).await.unwrap();
    let endpoint = Endpoint::bind(EndpointConfig::bind(localhost()))
        .await
        .unwrap();
    pair_with(offerer, move |_, offer| {
        endpoint.answer(PeerMeta::new("b", "s"), config(), &offer)
    })
    .await
}

/// Echoes every request, prefixed with `tag`.
fn echo(peer: &Peer, tag: &'static str) {
    peer.on_request(move |mut req| {
        spawn(async move {
            let mut out = tag.as_bytes().to_vec();
            out.extend_from_slice(&req.take_payload().unwrap_or_default());
            req.reply(Some(out.into())).await.expect("reply");
        });
    });
}

/// Echoes every request, prefixed with `tag`, from the callback itself
/// (`try_reply`, no task spawned).
fn echo_inline(peer: &Peer, tag: &'static str) {
    peer.on_request(move |mut req| {
        let mut out = tag.as_bytes().to_vec();
        out.extend_from_slice(&req.take_payload().unwrap_or_default());
        req.try_reply(Some(out.into())).expect("reply queued");
    });
}

pub async fn connect_and_request_both_ways() {
    let (a, b) = pair().await;
    echo_inline(&a, "a:");
    echo(&b, "b:");
    let reply = a
        .request("echo", Some(Bytes::from_static(b"ping")))
        .await
        .unwrap();
    assert_eq!(reply.as_deref(), Some(&b"b:ping"[..]));
    let reply = b
        .request("echo", Some(Bytes::from_static(b"pong")))
        .await
        .unwrap();
    assert_eq!(reply.as_deref(), Some(&b"a:pong"[..]));
    assert_eq!(a.stats().await.core.requests_answered, 1);
    a.close().await;
}

/// The same over IPv6 loopback (`[::1]`): candidates, ICE, DTLS and
/// SCTP in the other address family.
pub async fn connect_and_request_over_ipv6() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        println!("skipped: no IPv6 loopback here");
        return;
    }
    let v6 = || {
        let mut c = Config::bind(vec!["[::1]:0".parse().unwrap()]);
        c.core.connect_timeout = Duration::from_secs(5);
        c
    };
    let offerer = Peer::new(PeerMeta::new("a6", "s"), v6()).await.unwrap();
    assert!(offerer.local_addrs().iter().all(|a| a.is_ipv6()));
    let endpoint = Endpoint::bind(EndpointConfig::bind(vec!["[::1]:0".parse().unwrap()]))
        .await
        .unwrap();
    let (a, b) = pair_with(offerer, move |_, offer| {
        endpoint.answer(PeerMeta::new("b6", "s"), v6(), &offer)
    })
    .await;
    echo(&b, "b:");
    let reply = a
        .request("echo", Some(Bytes::from_static(b"six")))
        .await
        .unwrap();
    assert_eq!(reply.as_deref(), Some(&b"b:six"[..]));
    a.close().await;
}

pub async fn events_as_a_stream_and_emits() {
    let (a, b) = pair().await;
    let mut events = b.events().expect("events not taken yet");
    assert!(b.events().is_none());
    assert!(matches!(events.next().await, Some(Event::Ready)));
    a.emit("note", Some(Bytes::from_static(b"x")))
        .await
        .unwrap();
    match events.next().await {
        Some(Event::Request(req)) => {
            assert_eq!(req.event(), "note");
            assert_eq!(req.payload().map(|p| &p[..]), Some(&b"x"[..]));
            req.ignore();
        }
        other => panic!("expected the emit, got {other:?}"),
    }
    a.close().await;
    match events.next().await {
        Some(Event::Closed(CloseReason::Remote)) => {}
        other => panic!("expected Closed(Remote), got {other:?}"),
    }
    assert!(events.next().await.is_none());
    assert_eq!(b.stats().await.requests_unanswered, 0);
}

pub async fn data_channel_both_ways() {
    let (a, b) = pair().await;
    let (tx, rx) = async_channel::unbounded();
    b.on_data_channel(move |ch| {
        let _ = tx.try_send(ch);
    });
    let ours = a
        .create_data_channel("files", ChannelOptions::default())
        .await
        .unwrap();
    // Sent before the channel is open: waits for it.
    for i in 0..20u8 {
        ours.send(vec![i; 1000]).await.unwrap();
    }
    let theirs = rx.recv().await.expect("remote channel");
    assert_eq!(theirs.label(), "files");
    for i in 0..20u8 {
        let m = theirs.recv().await.expect("message");
        assert!(m.binary);
        assert_eq!(&m.data[..], &vec![i; 1000][..]);
    }
    theirs.send_text("back").await.unwrap();
    let m = ours.recv().await.unwrap();
    assert_eq!((m.binary, &m.data[..]), (false, &b"back"[..]));
    ours.close().await.unwrap();
    assert!(theirs.recv().await.is_none(), "remote sees the close");
    assert!(matches!(
        theirs.send(vec![1]).await,
        Err(Error::ChannelClosed)
    ));
    a.close().await;
}

pub async fn close_is_noticed_by_the_remote() {
    let (a, b) = pair().await;
    let reason = Arc::new(Mutex::new(None));
    let seen = reason.clone();
    b.on_close(move |r| *seen.lock().unwrap() = Some(r));
    let started = Instant::now();
    a.close().await;
    assert_eq!(a.closed().await, CloseReason::Local);
    assert_eq!(b.closed().await, CloseReason::Remote);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(
        b.request("x", None).await,
        Err(Error::Closed(CloseReason::Remote))
    ));
    sleep(Duration::from_millis(50)).await;
    assert_eq!(*reason.lock().unwrap(), Some(CloseReason::Remote));
    // Late callbacks run at once.
    let late = Arc::new(AtomicUsize::new(0));
    let l = late.clone();
    b.on_close(move |_| {
        l.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(late.load(Ordering::SeqCst), 1);
}

/// Calls made on a peer while its task is ending, or after, return at once:
/// none may wait for an answer that never comes.
pub async fn calls_on_a_peer_that_just_closed_return() {
    for _ in 0..20 {
        let (a, b) = pair().await;
        a.close().await;
        // b's lifecycle says closed a moment before its task ends: a call
        // made in between must not wait for an answer that never comes.
        bounded(2, b.closed()).await;
        bounded(2, b.close()).await;
        let emitted = bounded(2, b.emit("late", None)).await;
        assert!(emitted.is_err(), "an emit on a closed peer succeeded");
    }
}

/// Binding the port again proves the peer's socket was closed.
async fn assert_freed(addr: SocketAddr) {
    let until = Instant::now() + Duration::from_secs(2);
    loop {
        match std::net::UdpSocket::bind(addr) {
            Ok(_) => return,
            Err(e) if Instant::now() > until => panic!("{addr} still bound: {e}"),
            Err(_) => sleep(Duration::from_millis(20)).await,
        }
    }
}

pub async fn a_failing_signal_ends_the_offer_and_frees_the_socket() {
    let a = Peer::new(PeerMeta::new("a", "s"), config()).await.unwrap();
    let addr = a.local_addrs()[0];
    let got = Arc::new(Mutex::new(None));
    let keep = got.clone();
    let result = a
        .offer(|meta, offer| async move {
            *keep.lock().unwrap() = Some((meta, offer));
            Err::<Vec<u8>, _>("signalling server down")
        })
        .await;
    match result {
        Err(Error::Signal(e)) => assert_eq!(e.to_string(), "signalling server down"),
        other => panic!("expected a signal error, got {other:?}"),
    }
    let (meta, offer) = got.lock().unwrap().take().unwrap();
    assert_eq!(meta, PeerMeta::new("a", "s"));
    assert!(relay_proto_ufrag(&offer));
    assert!(a.is_closed());
    assert_eq!(a.closed().await, CloseReason::Local);
    assert_freed(addr).await;
}

fn relay_proto_ufrag(offer: &[u8]) -> bool {
    relay_proto::ufrag_of(offer).is_ok_and(|u| !u.is_empty())
}

pub async fn an_answer_that_never_comes_times_out() {
    let mut c = config();
    c.core.connect_timeout = Duration::from_millis(800);
    let a = Peer::new(PeerMeta::new("a", "s"), c).await.unwrap();
    let addr = a.local_addrs()[0];
    let started = Instant::now();
    let result = a
        .offer(|_, _| std::future::pending::<Result<Vec<u8>, Error>>())
        .await;
    let took = started.elapsed();
    assert!(
        matches!(result, Err(Error::Closed(CloseReason::ConnectTimeout))),
        "{result:?}"
    );
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_freed(addr).await;
}

pub async fn request_timeout_cancel_and_unanswered_requests() {
    let (a, b) = pair().await;
    // `b` drops every request unanswered.
    b.on_request(drop);
    let started = Instant::now();
    let r = a
        .request_with_timeout("x", None, Duration::from_millis(300))
        .await;
    assert!(
        matches!(r, Err(Error::Request(RequestError::TimedOut))),
        "{r:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(b.stats().await.requests_unanswered, 1);

    // A dropped request future withdraws the request in the core.
    let gave_up = future::or(async { Some(a.request("y", None).await) }, async {
        sleep(Duration::from_millis(100)).await;
        None
    })
    .await;
    assert!(gave_up.is_none());
    let until = Instant::now() + Duration::from_secs(2);
    loop {
        let s = a.stats().await.core;
        if s.requests_failed == 1 {
            assert_eq!(s.requests_timed_out, 1);
            break;
        }
        assert!(Instant::now() < until, "request not cancelled: {s:?}");
        sleep(Duration::from_millis(10)).await;
    }
    a.close().await;
}

pub async fn a_consumer_that_falls_behind_stalls_nothing() {
    let offerer = Peer::new(PeerMeta::new("a", "s"), config()).await.unwrap();
    let (a, b) = pair_with(offerer, |_, offer| {
        let mut c = config();
        c.event_queue = 4;
        future::block_on(Peer::answer(PeerMeta::new("b", "s"), c, &offer))
    })
    .await;
    echo(&a, "a:");
    // Nobody reads b's events: emits beyond its queue are dropped...
    for i in 0..10u8 {
        a.emit("flood", Some(vec![i].into())).await.unwrap();
    }
    // ...while b's packets and timers keep going.
    let reply = b
        .request("echo", Some(Bytes::from_static(b"1")))
        .await
        .unwrap();
    assert_eq!(reply.as_deref(), Some(&b"a:1"[..]));
    let dropped = b.stats().await.events_dropped;
    // Queue of 4: Ready plus two emits, one slot kept for Closed.
    assert_eq!(dropped, 8, "dropped {dropped}");
    a.close().await;
    let mut events = b.events().unwrap();
    let mut kinds = Vec::new();
    while let Some(e) = events.next().await {
        kinds.push(match e {
            Event::Ready => "ready",
            Event::Request(r) => {
                r.ignore();
                "request"
            }
            Event::Closed(_) => "closed",
            _ => "other",
        });
    }
    assert_eq!(kinds, ["ready", "request", "request", "closed"]);
}

pub async fn fifty_peers_share_one_socket() {
    let shared = Endpoint::bind(EndpointConfig::bind(localhost()))
        .await
        .unwrap();
    assert_eq!(shared.local_addrs().len(), 1);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let shared = shared.clone();
        tasks.push(task(async move {
            let offerer = Peer::new(PeerMeta::new(format!("a{i}"), "s"), config())
                .await
                .unwrap();
            let (a, b) = pair_with(offerer, move |meta, offer| {
                let (b, answer) =
                    shared.answer(PeerMeta::new(format!("b{i}"), "s"), config(), &offer)?;
                assert_eq!(meta.peer_id, format!("a{i}"));
                Ok((b, answer))
            })
            .await;
            let id = b.meta().peer_id.clone();
            b.on_request(move |req| {
                let id = id.clone();
                spawn(async move {
                    let mut out = id.into_bytes();
                    out.extend_from_slice(req.payload().map(|p| &p[..]).unwrap_or(b""));
                    let _ = req.reply(Some(out.into())).await;
                });
            });
            let reply = a
                .request("who", Some(format!("/{i}").into()))
                .await
                .unwrap();
            assert_eq!(reply.unwrap(), Bytes::from(format!("b{i}/{i}")));
            (a, b)
        }));
    }
    let mut peers = Vec::new();
    for t in tasks {
        peers.push(t.await);
    }
    assert_eq!(shared.stats().peers, 50);
    for (a, b) in &peers {
        a.close().await;
        assert_eq!(b.closed().await, CloseReason::Remote);
    }
    let until = Instant::now() + Duration::from_secs(2);
    while shared.stats().peers > 0 {
        assert!(Instant::now() < until, "peers left on the endpoint");
        sleep(Duration::from_millis(10)).await;
    }
}

/// A STUN server on loopback that reports every client as `mapped`.
fn fake_stun_server(mapped: SocketAddr) -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            if n < 20 {
                continue;
            }
            let SocketAddr::V4(v4) = mapped else {
                unreachable!()
            };
            let mut resp = buf[..20].to_vec();
            resp[..4].copy_from_slice(&[0x01, 0x01, 0x00, 0x0c]);
            resp.extend_from_slice(&[0x00, 0x20, 0x00, 0x08, 0x00, 0x01]);
            resp.extend_from_slice(&(v4.port() ^ 0x2112).to_be_bytes());
            for (b, k) in v4.ip().octets().iter().zip([0x21, 0x12, 0xA4, 0x42]) {
                resp.push(b ^ k);
            }
            let _ = socket.send_to(&resp, from);
        }
    });
    addr
}

pub async fn stun_and_nat_addresses_are_announced() {
    // Documentation addresses: announced in the offer, never sent to.
    let mapped: SocketAddr = "192.0.2.7:4242".parse().unwrap();
    let mut c = config();
    c.endpoint.stun_server = Some(fake_stun_server(mapped));
    c.endpoint.announced_ips = vec!["198.51.100.9".parse().unwrap()];
    let a = Peer::new(PeerMeta::new("a", "s"), c).await.unwrap();
    let local = a.local_addrs()[0];
    let offer = Arc::new(Mutex::new(Vec::new()));
    let keep = offer.clone();
    let _ = a
        .offer(|_, o| async move {
            *keep.lock().unwrap() = o;
            Err::<Vec<u8>, _>("inspect only")
        })
        .await;
    let signal = relay_proto::wire::Signal::decode(&offer.lock().unwrap()).unwrap();
    let cands: Vec<(String, u16, String, u16)> = signal
        .ice_candidates
        .iter()
        .map(|c| {
            (
                c.address.clone(),
                c.port,
                c.related_address.clone(),
                c.related_port,
            )
        })
        .collect();
    let host = (local.ip().to_string(), local.port(), String::new(), 0);
    let srflx = (
        "192.0.2.7".to_string(),
        4242,
        local.ip().to_string(),
        local.port(),
    );
    let nat = (
        "198.51.100.9".to_string(),
        local.port(),
        local.ip().to_string(),
        local.port(),
    );
    for want in [host, srflx, nat] {
        assert!(cands.contains(&want), "{want:?} not in {cands:?}");
    }
}

/// A NAT in front of the offerer, on loopback: a forwarder thread that
/// gives the offerer's datagrams a new outside port on `rebind`.
struct Nat {
    /// Where the offerer sends to reach the answerer.
    inside: SocketAddr,
    rebind: Arc<std::sync::atomic::AtomicBool>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Nat {
    fn start(answerer: SocketAddr) -> Nat {
        use std::net::UdpSocket;
        use std::sync::atomic::AtomicBool;
        let inside = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = inside.local_addr().unwrap();
        let (rebind, stop) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (r, s) = (rebind.clone(), stop.clone());
        std::thread::spawn(move || {
            let tick = Some(Duration::from_millis(1));
            inside.set_read_timeout(tick).unwrap();
            let mut outside = UdpSocket::bind("127.0.0.1:0").unwrap();
            outside.set_read_timeout(tick).unwrap();
            let mut offerer: Option<SocketAddr> = None;
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                if r.swap(false, Ordering::Relaxed) {
                    // The old mapping is gone: what is sent to it is lost.
                    outside = UdpSocket::bind("127.0.0.1:0").unwrap();
                    outside.set_read_timeout(tick).unwrap();
                }
                while let Ok((n, from)) = inside.recv_from(&mut buf) {
                    offerer = Some(from);
                    let _ = outside.send_to(&buf[..n], answerer);
                }
                while let Ok((n, _)) = outside.recv_from(&mut buf) {
                    if let Some(to) = offerer {
                        let _ = inside.send_to(&buf[..n], to);
                    }
                }
            }
        });
        Nat {
            inside: addr,
            rebind,
            stop,
        }
    }
}

impl Drop for Nat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Replaces every candidate of a signal (offer or answer) with `addr`.
fn with_candidate(signal: &[u8], addr: SocketAddr) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(signal).unwrap();
    for c in v["iceCandidates"].as_array_mut().unwrap() {
        c["address"] = addr.ip().to_string().into();
        c["port"] = addr.port().into();
    }
    serde_json::to_vec(&v).unwrap()
}

/// The offerer sits behind a NAT that gives it a new outside port mid-run
/// (a NAT rebinding). The answerer follows it on its next proven check:
/// requests keep getting replies, neither side closes.
pub async fn a_nat_rebinding_in_front_of_the_offerer_is_followed() {
    let endpoint = Endpoint::bind(EndpointConfig::bind(localhost()))
        .await
        .unwrap();
    let nat = Nat::start(endpoint.local_addrs()[0]);
    let inside = nat.inside;
    let offerer = Peer::new(PeerMeta::new("a", "s"), config()).await.unwrap();
    let (offerer, answerer) = pair_with(offerer, move |_, offer| {
        // The answerer can reach the offerer only through the NAT: the
        // offer's own candidate is a port nobody reads.
        let dead = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let offer = with_candidate(&offer, dead);
        let (peer, answer) = endpoint.answer(PeerMeta::new("b", "s"), config(), &offer)?;
        Ok((peer, with_candidate(&answer, inside)))
    })
    .await;
    echo(&answerer, "b:");
    let ask = || bounded(10, offerer.request("echo", Some(Bytes::from_static(b"x"))));
    assert_eq!(ask().await.unwrap().as_deref(), Some(&b"b:x"[..]));

    nat.rebind.store(true, Ordering::Relaxed);
    let rebound = Instant::now();
    // The answerer's replies still go to the old mapping until the
    // offerer's next check (every second) shows the new one.
    sleep(Duration::from_millis(100)).await;
    assert_eq!(ask().await.unwrap().as_deref(), Some(&b"b:x"[..]));
    let took = rebound.elapsed();
    println!("first reply after the rebinding: {took:?}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    for _ in 0..20 {
        assert_eq!(ask().await.unwrap().as_deref(), Some(&b"b:x"[..]));
    }
    assert_eq!(answerer.stats().await.core.remote_moves, 1);
    assert!(!offerer.is_closed() && !answerer.is_closed());
    offerer.close().await;
}
