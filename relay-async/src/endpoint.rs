//! Sockets shared by peers: binding, candidates, and routing what arrives.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use futures_lite::future;
use relay_proto::{AnnouncedAddr, Certificate, PeerMeta, Router};
use tracing::{debug, trace, warn};

use crate::config::{Config, EndpointConfig};
use crate::error::Error;
use crate::peer::{self, Peer, Shared};
use crate::queue::{self, Rx, Tx};
use crate::runtime::{AsyncUdpSocket, Runtime};
use crate::socket::{self, Outgoing};

/// Datagrams the router reads at once, at most (each peer's share goes
/// over as one batch).
const ROUTER_BATCH: usize = 256;

/// STUN requests sent to the configured STUN server per socket.
const STUN_ATTEMPTS: usize = 3;

/// Received datagrams for one peer, from one socket, handed over at once.
pub(crate) struct Batch {
    pub(crate) local: SocketAddr,
    pub(crate) data: Vec<u8>,
    items: Vec<(SocketAddr, u32, u32)>,
    queued: Arc<AtomicUsize>,
}

impl Batch {
    fn new(local: SocketAddr, queued: Arc<AtomicUsize>) -> Batch {
        Batch {
            local,
            data: Vec::new(),
            items: Vec::new(),
            queued,
        }
    }

    fn push(&mut self, source: SocketAddr, data: &[u8]) {
        let start = self.data.len();
        self.data.extend_from_slice(data);
        self.items
            .push((source, start as u32, (start + data.len()) as u32));
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Each datagram's source and place in `data`.
    pub(crate) fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, Range<usize>)> + '_ {
        self.items
            .iter()
            .map(|&(s, a, b)| (s, a as usize..b as usize))
    }

    /// The peer took the batch: room in its queue again.
    pub(crate) fn consumed(&self) {
        self.queued.fetch_sub(self.items.len(), Ordering::Relaxed);
    }
}

/// Bound UDP sockets that any number of peers share.
///
/// One task per socket receives in batches and hands each peer its
/// datagrams ([`relay_proto::Router`]): STUN by the ICE ufrag it names, the
/// rest by its source address.
///
/// **The limit**: peers on one endpoint must have different remote
/// addresses. Two servers that both put many peers on one shared socket give
/// every peer between them the same 5-tuple, and only one of them can work:
/// use one peer per pair of servers, or a socket per peer
/// ([`Peer::new`]) on at least one side.
///
/// Cheap to clone; the sockets close when the last clone and the last peer
/// on them are gone.
pub struct Endpoint<R> {
    inner: Arc<EndpointInner>,
    _runtime: PhantomData<fn() -> R>,
}

impl<R> Clone for Endpoint<R> {
    fn clone(&self) -> Self {
        Endpoint {
            inner: self.inner.clone(),
            _runtime: PhantomData,
        }
    }
}

impl<R> std::fmt::Debug for Endpoint<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("local_addrs", &self.inner.local_addrs())
            .field("announced", &self.inner.announced)
            .finish_non_exhaustive()
    }
}

/// Counters of an endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointStats {
    /// Peers on the endpoint now.
    pub peers: usize,
    /// Datagrams that belonged to no peer and were dropped.
    pub unrouted: u64,
}

/// Where the router sends one peer's datagrams.
struct Sink {
    tx: Tx<Batch>,
    /// Datagrams handed over and not yet taken.
    queued: Arc<AtomicUsize>,
    cap: usize,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Routes {
    router: Router<u64>,
    sinks: HashMap<u64, Sink>,
    next_key: u64,
}

pub(crate) struct EndpointInner {
    pub(crate) runtime: Arc<dyn Runtime>,
    sockets: Vec<(SocketAddr, Arc<dyn AsyncUdpSocket>)>,
    announced: Vec<AnnouncedAddr>,
    routes: Mutex<Routes>,
    cert: Option<Certificate>,
    unrouted: AtomicU64,
    stop: Stop,
}

/// Ends the receive tasks when the endpoint goes.
#[derive(Default)]
struct Stop {
    stopped: AtomicBool,
    event: event_listener::Event,
}

impl Drop for EndpointInner {
    fn drop(&mut self) {
        self.stop.stopped.store(true, Ordering::Release);
        self.stop.event.notify(usize::MAX);
    }
}

fn lock(routes: &Mutex<Routes>) -> std::sync::MutexGuard<'_, Routes> {
    // The routes stay consistent whatever panicked while holding them.
    routes.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<R: Runtime + Default> Endpoint<R> {
    /// Binds the configured addresses, asks the STUN server (if any), and
    /// starts receiving.
    pub async fn bind(config: EndpointConfig) -> Result<Endpoint<R>, Error> {
        let runtime: Arc<dyn Runtime> = Arc::new(R::default());
        let sockets = socket::bind(&runtime, &config)?;
        let announced = announced(&runtime, &sockets, &config).await;
        let inner = Arc::new(EndpointInner {
            runtime: runtime.clone(),
            sockets,
            announced,
            routes: Mutex::new(Routes::default()),
            cert: Certificate::generate().ok(),
            unrouted: AtomicU64::new(0),
            stop: Stop::default(),
        });
        for (local, socket) in &inner.sockets {
            let task = receive(*local, socket.clone(), Arc::downgrade(&inner));
            runtime.spawn(Box::pin(task));
        }
        Ok(Endpoint {
            inner,
            _runtime: PhantomData,
        })
    }

    /// A new peer on this endpoint's sockets (`config.endpoint` is ignored);
    /// then [`Peer::offer`].
    pub fn peer(&self, meta: PeerMeta, config: Config) -> Result<Peer<R>, Error> {
        peer::start_shared(self.inner.clone(), meta, config, None).map(|(p, _)| p)
    }

    /// A new peer on this endpoint's sockets that answers `offer`; hand the
    /// answer back to the offerer.
    pub fn answer(
        &self,
        meta: PeerMeta,
        config: Config,
        offer: &[u8],
    ) -> Result<(Peer<R>, Vec<u8>), Error> {
        let (peer, answer) = peer::start_shared(self.inner.clone(), meta, config, Some(offer))?;
        Ok((peer, answer.unwrap_or_default()))
    }
}

impl<R> Endpoint<R> {
    /// The bound addresses (the host candidates).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.inner.local_addrs()
    }

    /// The public addresses announced besides (1:1 NAT and STUN).
    pub fn announced_addrs(&self) -> &[AnnouncedAddr] {
        &self.inner.announced
    }

    /// Counters.
    pub fn stats(&self) -> EndpointStats {
        EndpointStats {
            peers: lock(&self.inner.routes).sinks.len(),
            unrouted: self.inner.unrouted.load(Ordering::Relaxed),
        }
    }
}

impl EndpointInner {
    pub(crate) fn local_addrs(&self) -> Vec<SocketAddr> {
        self.sockets.iter().map(|(a, _)| *a).collect()
    }

    pub(crate) fn sockets(&self) -> &[(SocketAddr, Arc<dyn AsyncUdpSocket>)] {
        &self.sockets
    }

    pub(crate) fn announced(&self) -> &[AnnouncedAddr] {
        &self.announced
    }

    pub(crate) fn cert(&self) -> Option<Certificate> {
        self.cert.clone()
    }

    /// A key and a batch queue for a new peer; `cap` datagrams may wait.
    pub(crate) fn attach(&self, shared: Arc<Shared>, cap: usize) -> (u64, Rx<Batch>) {
        // Bounded by `queued` (datagrams), not by batches.
        let (tx, rx) = queue::queue(usize::MAX);
        let mut routes = lock(&self.routes);
        let key = routes.next_key;
        routes.next_key += 1;
        routes.sinks.insert(
            key,
            Sink {
                tx,
                queued: Arc::new(AtomicUsize::new(0)),
                cap: cap.max(1),
                shared,
            },
        );
        (key, rx)
    }

    /// Routes STUN naming `ufrag` (our own offer's or answer's) to `key`.
    pub(crate) fn route_ufrag(&self, key: u64, ufrag: &str) -> bool {
        lock(&self.routes).router.add_peer(key, ufrag)
    }

    /// Routes datagrams from the remote's candidates to `key`.
    pub(crate) fn route_remote(&self, key: u64, remote_signal: &[u8]) {
        if let Err(e) = lock(&self.routes)
            .router
            .add_remote_candidates(key, remote_signal)
        {
            debug!("remote candidates not routed: {e}");
        }
    }

    pub(crate) fn detach(&self, key: u64) {
        let mut routes = lock(&self.routes);
        routes.router.remove(key);
        routes.sinks.remove(&key);
    }
}

/// The addresses announced besides the bound ones: 1:1 NAT, then what a
/// STUN server sees.
pub(crate) async fn announced(
    runtime: &Arc<dyn Runtime>,
    sockets: &[(SocketAddr, Arc<dyn AsyncUdpSocket>)],
    config: &EndpointConfig,
) -> Vec<AnnouncedAddr> {
    let mut announced = Vec::new();
    for ip in &config.announced_ips {
        for (local, _) in sockets {
            if local.is_ipv4() == ip.is_ipv4() {
                let public = SocketAddr::new(*ip, local.port());
                announced.push(AnnouncedAddr {
                    public,
                    local: *local,
                });
            }
        }
    }
    if let Some(server) = config.stun_server {
        for (local, socket) in sockets {
            if local.is_ipv4() != server.is_ipv4() {
                continue;
            }
            match reflexive(runtime, socket.as_ref(), server, config.stun_timeout).await {
                Some(public) if public != *local => {
                    debug!("{server} sees {local} as {public}");
                    announced.push(AnnouncedAddr {
                        public,
                        local: *local,
                    });
                }
                Some(_) => {}
                None => warn!("no answer from STUN server {server} for {local}"),
            }
        }
    }
    announced
}

/// The address a STUN server sees for `socket` (before receiving starts).
async fn reflexive(
    runtime: &Arc<dyn Runtime>,
    socket: &dyn AsyncUdpSocket,
    server: SocketAddr,
    wait: Duration,
) -> Option<SocketAddr> {
    let transaction: [u8; 12] = std::array::from_fn(|_| fastrand::u8(..));
    let request = relay_proto::stun_binding_request(transaction);
    let mut sender = socket.create_sender();
    for _ in 0..STUN_ATTEMPTS {
        let mut queue = std::collections::VecDeque::from([Outgoing {
            destination: server,
            contents: request.to_vec(),
        }]);
        future::poll_fn(|cx| socket::poll_send_run(sender.as_mut(), &mut queue, cx))
            .await
            .ok()?;
        let mut timer = runtime.new_timer(runtime.now() + wait);
        let answer = future::poll_fn(|cx| {
            let mut mapped = None;
            loop {
                let got = socket::poll_recv_batch(socket, cx, socket::RECV_BATCH, |d| {
                    if d.source == server && mapped.is_none() {
                        mapped = relay_proto::stun_mapped_address(d.data, &transaction);
                    }
                });
                match got {
                    Poll::Ready(Ok(_)) if mapped.is_some() => return Poll::Ready(mapped),
                    Poll::Ready(Ok(_)) => continue,
                    Poll::Ready(Err(e)) if socket::transient(&e) => continue,
                    Poll::Ready(Err(_)) => return Poll::Ready(None),
                    Poll::Pending => break,
                }
            }
            match timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        if answer.is_some() {
            return answer;
        }
    }
    None
}

/// Reads one socket and hands each peer its datagrams, a batch per peer
/// per read; ends when the endpoint is gone.
async fn receive(
    local: SocketAddr,
    socket: Arc<dyn AsyncUdpSocket>,
    endpoint: std::sync::Weak<EndpointInner>,
) {
    // Per read: the peers that got datagrams, with their batches.
    let mut batches: Vec<(u64, Batch)> = Vec::new();
    let reading = future::poll_fn(|cx| {
        loop {
            let Some(inner) = endpoint.upgrade() else {
                return Poll::Ready(());
            };
            if inner.stop.stopped.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            let mut routes = lock(&inner.routes);
            let got = socket::poll_recv_batch(&*socket, cx, ROUTER_BATCH, |d| {
                let Some(key) = routes.router.route(d.source, d.data) else {
                    trace!(from = %d.source, len = d.data.len(), "datagram for no peer");
                    inner.unrouted.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                let Some(sink) = routes.sinks.get(&key) else {
                    return;
                };
                let batch = match batches.iter_mut().position(|(k, _)| *k == key) {
                    Some(i) => &mut batches[i].1,
                    None => {
                        batches.push((key, Batch::new(local, sink.queued.clone())));
                        &mut batches.last_mut().expect("just pushed").1
                    }
                };
                batch.push(d.source, d.data);
            });
            for (key, batch) in batches.drain(..) {
                let Some(sink) = routes.sinks.get(&key) else {
                    continue;
                };
                let n = batch.len();
                if sink.queued.load(Ordering::Relaxed) + n > sink.cap {
                    sink.shared.count_datagram_drops(n as u64);
                    continue;
                }
                sink.queued.fetch_add(n, Ordering::Relaxed);
                if sink.tx.try_send(batch).is_err() {
                    sink.shared.count_datagram_drops(n as u64);
                }
            }
            drop(routes);
            match got {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) if socket::transient(&e) => {
                    debug!("receive on {local}: {e}");
                }
                Poll::Ready(Err(e)) => {
                    warn!("receive on {local} failed, socket given up: {e}");
                    return Poll::Ready(());
                }
            }
        }
    });
    let stopped = async {
        loop {
            let Some(inner) = endpoint.upgrade() else {
                return;
            };
            let listener = inner.stop.event.listen();
            if inner.stop.stopped.load(Ordering::Acquire) {
                return;
            }
            drop(inner);
            listener.await;
        }
    };
    future::or(reading, stopped).await;
}
