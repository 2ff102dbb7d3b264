//! Media tracks over real loopback sockets (127.0.0.1 only), written once
//! for both adapters: the including test file names the adapter `relay` and
//! gives `sleep`; each function here is one test, run under the including
//! file's runtime and time bound.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::future;

use super::relay::relay_proto;
use super::relay::{
    CloseReason, Config, Endpoint, EndpointConfig, Error, Event, Events, KeyframeKind, LocalTrack,
    Peer, PeerMeta, RemoteTrack, RequestError, RtpOut, TrackCodec, TrackMeta,
};
use super::sleep;

fn localhost() -> Vec<SocketAddr> {
    vec!["127.0.0.1:0".parse().unwrap()]
}

fn config() -> Config {
    let mut c = Config::bind(localhost());
    c.core.connect_timeout = Duration::from_secs(5);
    c
}

/// An offerer and an answerer connected over loopback.
async fn pair() -> (Peer, Peer) {
    let a = Peer::new(PeerMeta::new("a", "s"), config()).await.unwrap();
    let endpoint = Endpoint::bind(EndpointConfig::bind(localhost()))
        .await
        .unwrap();
    let slot = Arc::new(Mutex::new(None));
    let keep = slot.clone();
    a.offer(|_, offer| async move {
        let (b, answer) = endpoint.answer(PeerMeta::new("b", "s"), config(), &offer)?;
        *keep.lock().unwrap() = Some(b);
        Ok::<_, Error>(answer)
    })
    .await
    .expect("offer");
    let b = slot.lock().unwrap().take().expect("answerer");
    b.ready().await.expect("answerer ready");
    (a, b)
}

/// Hands the peer's remote tracks out, in order, through `on_track`.
fn remote_tracks(peer: &Peer) -> async_channel::Receiver<RemoteTrack> {
    let (tx, rx) = async_channel::unbounded();
    peer.on_track(move |t| {
        let _ = tx.try_send(t);
    });
    rx
}

/// Packet `i` of a test stream: 1,000 bytes that name it.
fn packet(pt: u8, i: u16) -> RtpOut {
    let payload: Vec<u8> = (0..1000).map(|b| (b as u16 ^ i) as u8).collect();
    RtpOut::new(
        pt,
        40_000u16.wrapping_add(i),
        u32::from(i) * 3000,
        i % 5 == 4,
        Bytes::from(payload),
    )
}

/// Writes `n` packets on `track` while reading them on `remote`, and checks
/// each crossed intact and in order.
///
/// Paced like media (10 packets every 5 ms, 16 Mbit/s): an unpaced burst of
/// hundreds of packets overflows the receiving socket's kernel buffer, and
/// a lost tail packet has no later one to reveal it for a NACK.
async fn send_and_check(track: &LocalTrack, remote: &RemoteTrack, n: u16) {
    let pt = track.codec().payload_type;
    let write = async {
        for i in 0..n {
            track.write_rtp(packet(pt, i)).await.expect("write_rtp");
            if i % 10 == 9 {
                sleep(Duration::from_millis(5)).await;
            }
        }
    };
    let read = async {
        for i in 0..n {
            let got = remote.read_rtp().await.expect("a packet");
            let want = packet(pt, i);
            assert_eq!(got.track, remote.id());
            assert_eq!(
                got.sequence_number, want.sequence_number,
                "packet {i} in order"
            );
            assert_eq!(got.timestamp, want.timestamp);
            assert_eq!(got.marker, want.marker);
            assert_eq!(got.payload_type, pt);
            assert_eq!(&got.payload[..], &want.payload[..], "payload {i} intact");
        }
    };
    future::zip(write, read).await;
}

/// A keyframe-sized burst (400 packets of 1,000 bytes, unpaced) arrives
/// whole: the sockets ask the kernel for a 4 MiB receive buffer
/// (`EndpointConfig::recv_buffer`) instead of its default, which drops the
/// tail of such a burst on loopback.
pub async fn an_unpaced_burst_arrives_whole() {
    let granted = {
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sock = socket2::SockRef::from(&probe);
        sock.set_recv_buffer_size(4 * 1024 * 1024).unwrap();
        sock.recv_buffer_size().unwrap()
    };
    if granted < 1024 * 1024 {
        println!(
            "skipped: this kernel grants only {granted} bytes of receive buffer (net.core.rmem_max)"
        );
        return;
    }
    let (a, b) = pair().await;
    let b_tracks = remote_tracks(&b);
    let video = a
        .add_track(TrackMeta::new("cam", "burst"), TrackCodec::vp8(96))
        .await
        .expect("add video");
    let video_in = b_tracks.recv().await.unwrap();
    let n = 400u16;
    for i in 0..n {
        video.write_rtp(packet(96, i)).await.expect("write_rtp");
    }
    for i in 0..n {
        let got = video_in.read_rtp().await.expect("a packet");
        assert_eq!(
            got.sequence_number,
            packet(96, i).sequence_number,
            "packet {i}"
        );
    }
    let s = video_in.stats().await.unwrap();
    assert_eq!((s.packets, s.lost), (n as u64, 0));
}

pub async fn rtp_crosses_both_ways_in_order() {
    let (a, b) = pair().await;
    let (a_tracks, b_tracks) = (remote_tracks(&a), remote_tracks(&b));

    let video = a
        .add_track(TrackMeta::new("cam", "video"), TrackCodec::vp8(96))
        .await
        .expect("add video");
    let video_in = b_tracks.recv().await.unwrap();
    assert_eq!(video_in.meta(), &TrackMeta::new("cam", "video"));
    assert_eq!(video_in.codec(), &TrackCodec::vp8(96));
    assert!(video_in.layers().is_empty());
    assert!(video_in.is_active());

    let audio = b
        .add_track(TrackMeta::new("mic", "audio"), TrackCodec::opus(111))
        .await
        .expect("add audio");
    let audio_in = a_tracks.recv().await.unwrap();
    assert_eq!(audio_in.codec(), &TrackCodec::opus(111));

    future::zip(
        send_and_check(&video, &video_in, 100),
        send_and_check(&audio, &audio_in, 100),
    )
    .await;

    assert_eq!(video.stats().await.unwrap().packets, 100);
    let received = video_in.stats().await.unwrap();
    assert_eq!((received.packets, received.lost), (100, 0));
    assert_eq!(audio_in.stats().await.unwrap().packets, 100);
    for peer in [&a, &b] {
        let s = peer.stats().await;
        assert_eq!(
            (s.rtp_packets_dropped, s.rtp_writes_failed),
            (0, 0),
            "{s:?}"
        );
    }
    // What the handle can tell at once is refused at once.
    assert!(matches!(
        video.write_rtp(packet(72, 0)).await,
        Err(Error::Peer(relay_proto::Error::PayloadType(72)))
    ));
    let mut layered = packet(96, 0);
    layered.layer = 1;
    assert!(matches!(
        video.try_write_rtp(layered),
        Err(Error::Peer(relay_proto::Error::UnknownLayer(1)))
    ));
    a.close().await;
    assert!(
        video_in.read_rtp().await.is_none(),
        "the reader ends with the peer"
    );
    assert!(matches!(
        video.write_rtp(packet(96, 0)).await,
        Err(Error::Closed(CloseReason::Local))
    ));
}

pub async fn a_keyframe_request_reaches_the_sender() {
    let (a, b) = pair().await;
    let b_tracks = remote_tracks(&b);
    let video = a
        .add_track(TrackMeta::new("cam", "video"), TrackCodec::vp8(96))
        .await
        .unwrap();
    let video_in = b_tracks.recv().await.unwrap();
    send_and_check(&video, &video_in, 5).await;

    let asked = Instant::now();
    video_in.request_keyframe(KeyframeKind::Pli).await.unwrap();
    let got = video.keyframe_request().await.expect("a request");
    assert_eq!((got.layer, got.kind), (0, KeyframeKind::Pli));
    assert!(
        asked.elapsed() < Duration::from_millis(500),
        "{:?}",
        asked.elapsed()
    );

    // Our peers announce FIR; the second request waits out the interval.
    video_in.request_keyframe(KeyframeKind::Fir).await.unwrap();
    let got = video.keyframe_request().await.expect("a request");
    assert_eq!((got.layer, got.kind), (0, KeyframeKind::Fir));
    assert_eq!(video.stats().await.unwrap().keyframe_requests, 2);
    assert_eq!(video_in.stats().await.unwrap().keyframe_requests, 2);
    a.close().await;
    assert!(video.keyframe_request().await.is_none());
}

pub async fn removed_tracks_end_their_readers() {
    let (a, b) = pair().await;
    let mut events = b.events().unwrap();
    assert!(matches!(events.next().await, Some(Event::Ready)));
    let mut seen = Vec::new();

    // Removed with `remove`.
    let first = a
        .add_track(TrackMeta::new("s", "one"), TrackCodec::vp8(96))
        .await
        .unwrap();
    let first_in = next_track(&mut events, &mut seen).await;
    send_and_check(&first, &first_in, 10).await;
    first.remove().await.unwrap();
    assert!(first.is_removed());
    assert!(
        first_in.read_rtp().await.is_none(),
        "the reader sees the removal"
    );
    assert!(matches!(
        first.write_rtp(packet(96, 0)).await,
        Err(Error::TrackClosed)
    ));
    assert!(first.keyframe_request().await.is_none());
    first.remove().await.unwrap(); // idempotent

    // Removed by dropping its handle.
    let second = a
        .add_track(TrackMeta::new("s", "two"), TrackCodec::opus(111))
        .await
        .unwrap();
    let second_in = next_track(&mut events, &mut seen).await;
    drop(second);
    assert!(second_in.read_rtp().await.is_none());

    // Ended by the peer closing.
    let third = a
        .add_track(TrackMeta::new("s", "three"), TrackCodec::vp8(96))
        .await
        .unwrap();
    let third_in = next_track(&mut events, &mut seen).await;
    send_and_check(&third, &third_in, 3).await;
    a.close().await;
    assert!(third_in.read_rtp().await.is_none());

    while let Some(e) = events.next().await {
        seen.push(describe(e));
    }
    assert_eq!(
        seen,
        [
            format!("removed {}", first_in.id().0),
            format!("removed {}", second_in.id().0),
            "closed: closed by remote".to_string(),
        ]
    );
    assert_eq!(b.stats().await.rtp_packets_dropped, 0);
}

/// The next remote track; the other events go to `seen`.
async fn next_track(events: &mut Events, seen: &mut Vec<String>) -> RemoteTrack {
    loop {
        match events.next().await {
            Some(Event::Track(t)) => return t,
            Some(e) => seen.push(describe(e)),
            None => panic!("no more events"),
        }
    }
}

fn describe(e: Event) -> String {
    match e {
        Event::TrackRemoved(id) => format!("removed {}", id.0),
        Event::Closed(r) => format!("closed: {r}"),
        other => format!("{other:?}"),
    }
}

/// A remote that is a bare `relay_proto::Peer` on a thread of its own, so
/// a test can make it vanish without a word, as a crashed server would.
struct BareRemote {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BareRemote {
    fn answer(offer: &[u8]) -> (BareRemote, Vec<u8>) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let local = socket.local_addr().unwrap();
        let mut core = relay_proto::Peer::new(
            PeerMeta::new("bare", "s"),
            relay_proto::Config::new(vec![local]),
            Instant::now(),
        )
        .unwrap();
        let answer = core.accept_offer(Instant::now(), offer).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0; 2000];
            while !stopped.load(Ordering::Relaxed) {
                // Tracks are accepted by the core itself.
                while core.poll_event().is_some() {}
                while let Some(t) = core.poll_transmit() {
                    let _ = socket.send_to(&t.contents, t.destination);
                }
                let now = Instant::now();
                let wait = core
                    .poll_timeout()
                    .map_or(Duration::from_millis(10), |d| {
                        d.saturating_duration_since(now)
                    })
                    .clamp(Duration::from_millis(1), Duration::from_millis(10));
                socket.set_read_timeout(Some(wait)).unwrap();
                match socket.recv_from(&mut buf) {
                    Ok((n, from)) => core.handle_datagram(Instant::now(), from, local, &buf[..n]),
                    Err(_) => core.handle_timeout(Instant::now()),
                }
            }
        });
        let remote = BareRemote {
            stop,
            thread: Some(thread),
        };
        (remote, answer)
    }

    /// Stops answering anything, at once and for good.
    fn vanish(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for BareRemote {
    fn drop(&mut self) {
        self.vanish();
    }
}

pub async fn adding_a_track_fails_when_the_remote_is_gone() {
    let mut c = config();
    c.core.track_request_timeout = Duration::from_millis(600);
    let a = Peer::new(PeerMeta::new("a", "s"), c).await.unwrap();
    let slot = Arc::new(Mutex::new(None));
    let keep = slot.clone();
    a.offer(|_, offer| async move {
        let (remote, answer) = BareRemote::answer(&offer);
        *keep.lock().unwrap() = Some(remote);
        Ok::<_, Error>(answer)
    })
    .await
    .expect("offer");
    let mut remote = slot.lock().unwrap().take().unwrap();

    // While it is there, it accepts tracks.
    let kept = a
        .add_track(TrackMeta::new("s", "before"), TrackCodec::vp8(96))
        .await
        .expect("accepted while the remote is there");
    remote.vanish();

    // Gone without a word: the add fails at the track timeout.
    let started = Instant::now();
    let result = a
        .add_track(TrackMeta::new("s", "after"), TrackCodec::vp8(96))
        .await;
    let took = started.elapsed();
    match result {
        Err(e @ Error::TrackFailed(RequestError::TimedOut)) => {
            assert_eq!(
                e.to_string(),
                "track not accepted by the remote: request timed out"
            )
        }
        other => panic!("expected TrackFailed(TimedOut), got {other:?}"),
    }
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(2),
        "{took:?}"
    );
    // Writing on the accepted track still works (the packets go nowhere).
    kept.write_rtp(packet(96, 0)).await.unwrap();

    // Closing fails an add in flight with the close reason.
    let pending = a.add_track(TrackMeta::new("s", "closing"), TrackCodec::vp8(96));
    let closing = async {
        sleep(Duration::from_millis(100)).await;
        a.close().await;
    };
    let (result, ()) = future::zip(pending, closing).await;
    assert!(
        matches!(result, Err(Error::Closed(CloseReason::Local))),
        "{result:?}"
    );
    // And a closed peer refuses at once.
    assert!(matches!(
        a.add_track(TrackMeta::new("s", "late"), TrackCodec::vp8(96))
            .await,
        Err(Error::Closed(CloseReason::Local))
    ));
    assert!(matches!(
        kept.write_rtp(packet(96, 1)).await,
        Err(Error::Closed(CloseReason::Local))
    ));
}
