//! Measurements on pairs of our peers in this process: connect time,
//! request round trips and rate, memory per idle pair.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use relay_tokio::{Config, Error, Peer, PeerMeta};

use super::sys;
use crate::CliError;
use crate::report::Spread;

fn config() -> Config {
    Config::bind(vec!["127.0.0.1:0".parse().expect("a literal address")])
}

/// A connected pair and when each side became ready, counted from the
/// start of `offer`.
pub struct Pair {
    pub offerer: Peer,
    pub answerer: Peer,
    pub offerer_ready: Duration,
    pub answerer_ready: Duration,
}

impl Pair {
    /// Both sides ready.
    pub fn both_ready(&self) -> Duration {
        self.offerer_ready.max(self.answerer_ready)
    }

    /// Closes both sides and waits (at most 5 s) for the answerer to notice.
    pub async fn close(self) {
        self.offerer.close().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.answerer.closed()).await;
        self.answerer.close().await;
    }
}

/// Connects an offerer to an answerer made inside the signal function, as a
/// remote server would make it. `setup` runs on the answerer before it can
/// be ready (set its callbacks there). The clock starts just before `offer`
/// (sockets are already bound), and stops for each side when its `ready`
/// resolves.
pub async fn connect(
    index: usize,
    setup: impl FnOnce(&Peer) + Send + 'static,
) -> Result<Pair, CliError> {
    let session = format!("bench-{index}");
    let offerer = Peer::new(PeerMeta::new("bench-offerer", session.clone()), config()).await?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let signal = move |_meta: PeerMeta, offer: Vec<u8>| async move {
        let (answerer, answer) =
            Peer::answer(PeerMeta::new("bench-answerer", session), config(), &offer).await?;
        setup(&answerer);
        let waiting = answerer.clone();
        let ready = tokio::spawn(async move { waiting.ready().await.map(|()| Instant::now()) });
        let _ = tx.send((answerer, ready));
        Ok::<_, Error>(answer)
    };
    let started = Instant::now();
    offerer.offer(signal).await?;
    let offerer_ready = started.elapsed();
    let (answerer, ready) = rx.await?;
    let answerer_at = tokio::time::timeout(Duration::from_secs(15), ready)
        .await
        .map_err(|_| "the answerer was not ready 15 s after the offerer")???;
    Ok(Pair {
        offerer,
        answerer,
        offerer_ready,
        answerer_ready: answerer_at.saturating_duration_since(started),
    })
}

/// Echoes every inbound request with its own payload.
pub fn echo(peer: &Peer) {
    peer.on_request(|req| {
        let payload = req.payload().cloned();
        let _ = req.try_reply(payload);
    });
}

/// Connect times of `count` pairs made one after the other.
pub struct ReadyTimes {
    pub offerer: Spread,
    pub answerer: Spread,
    pub both: Spread,
}

/// Connects `count` pairs in turn (after one unmeasured warm-up), closing
/// each before the next.
pub async fn ready_times(count: usize) -> Result<ReadyTimes, CliError> {
    connect(usize::MAX, |_| {}).await?.close().await;
    let (mut offerer, mut answerer, mut both) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..count {
        let pair = connect(i, |_| {}).await?;
        offerer.push(pair.offerer_ready);
        answerer.push(pair.answerer_ready);
        both.push(pair.both_ready());
        pair.close().await;
    }
    let spread = |s: &[Duration]| Spread::of(s).ok_or("no connect measured");
    Ok(ReadyTimes {
        offerer: spread(&offerer)?,
        answerer: spread(&answerer)?,
        both: spread(&both)?,
    })
}

/// Request round trips, one at a time, and the rate with many in flight.
pub struct RequestResults {
    pub sequential: Spread,
    pub per_s: f64,
}

/// Payload of each request (echoed back): about the size of a small
/// signalling message.
pub const REQUEST_PAYLOAD: usize = 100;

/// `sequential` requests one after the other (after 10 % more unmeasured
/// ones), then `burst` requests by `in_flight` concurrent requesters, on
/// `peer`, whose remote echoes event `echo`.
pub async fn requests(
    peer: &Peer,
    sequential: usize,
    burst: usize,
    in_flight: usize,
) -> Result<RequestResults, CliError> {
    let payload = Bytes::from(vec![b'x'; REQUEST_PAYLOAD]);
    for _ in 0..sequential / 10 + 1 {
        peer.request("echo", Some(payload.clone())).await?;
    }
    let mut rtts = Vec::with_capacity(sequential);
    for _ in 0..sequential {
        let sent = Instant::now();
        let reply = peer.request("echo", Some(payload.clone())).await?;
        rtts.push(sent.elapsed());
        if reply.as_ref() != Some(&payload) {
            return Err("a reply did not carry the request's payload".into());
        }
    }
    let sequential = Spread::of(&rtts).ok_or("no request measured")?;

    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..in_flight {
        let (peer, next, payload) = (peer.clone(), next.clone(), payload.clone());
        workers.spawn(async move {
            let mut done = 0usize;
            while next.fetch_add(1, Ordering::Relaxed) < burst {
                peer.request("echo", Some(payload.clone())).await?;
                done += 1;
            }
            Ok::<_, Error>(done)
        });
    }
    let mut answered = 0;
    while let Some(done) = workers.join_next().await {
        answered += done??;
    }
    let elapsed = started.elapsed();
    Ok(RequestResults {
        sequential,
        per_s: answered as f64 / elapsed.as_secs_f64().max(1e-9),
    })
}

/// Resident memory added by idle connected pairs.
pub struct Memory {
    pub pairs: usize,
    pub kib_per_pair: f64,
    pub before_kib: u64,
    pub after_kib: u64,
}

/// Connects `pairs` pairs (after one unmeasured warm-up pair), lets them
/// idle for `idle`, and reads `VmRSS` before and after. Run first, before
/// the other measurements grow and free the heap, so freed memory is not
/// reused and counted as nothing.
pub async fn memory(pairs: usize, idle: Duration) -> Result<Memory, CliError> {
    connect(usize::MAX, echo).await?.close().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = sys::rss_kib().ok_or("cannot read VmRSS from /proc/self/status")?;
    let mut live = Vec::with_capacity(pairs);
    for i in 0..pairs {
        live.push(connect(i, echo).await?);
    }
    tokio::time::sleep(idle).await;
    let after = sys::rss_kib().ok_or("cannot read VmRSS from /proc/self/status")?;
    super::write_heap_profile();
    for pair in live {
        pair.close().await;
    }
    Ok(Memory {
        pairs,
        kib_per_pair: after.saturating_sub(before) as f64 / pairs.max(1) as f64,
        before_kib: before,
        after_kib: after,
    })
}
