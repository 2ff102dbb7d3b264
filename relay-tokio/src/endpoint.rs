//! Sockets shared by peers: binding, candidates, and routing what arrives.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_channel::{Receiver, Sender, TrySendError};
use relay_proto::{AnnouncedAddr, Certificate as DtlsCert, PeerMeta, Router, Transmit};
use tracing::{debug, trace, warn};

use crate::config::{Config, EndpointConfig};
use crate::error::Error;
use crate::peer::{self, Peer, Shared};
use crate::rt::{self, Task, UdpSocket};

/// Largest datagram read; anything a peer sends is far smaller.
const RECV_BUFFER: usize = 65_536;

/// STUN requests sent to the configured STUN server per socket.
const STUN_ATTEMPTS: usize = 3;

/// One received datagram on its way to the peer it belongs to.
pub(crate) struct Datagram {
    pub(crate) source: SocketAddr,
    pub(crate) destination: SocketAddr,
    pub(crate) data: Vec<u8>,
}

/// Bound UDP sockets that any number of peers share.
///
/// Each received datagram goes to the peer it belongs to
/// ([`relay_proto::Router`]): STUN by the ICE ufrag it names, the rest by
/// its source address.
///
/// **The limit**: peers on one endpoint must have different remote
/// addresses. Two servers that both put many peers on one shared socket give
/// every peer between them the same 5-tuple, and only one of them can work:
/// use one peer per pair of servers, or a socket per peer
/// ([`Peer::new`](crate::Peer::new)) on at least one side.
///
/// Cheap to clone; the sockets close when the last clone and the last peer
/// on them are gone.
#[derive(Clone)]
pub struct Endpoint {
    inner: Arc<EndpointInner>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("local_addrs", &self.local_addrs())
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

pub(crate) struct EndpointInner {
    sockets: Vec<(SocketAddr, Arc<UdpSocket>)>,
    announced: Vec<AnnouncedAddr>,
    routes: Arc<Mutex<Routes>>,
    cert: Option<DtlsCert>,
    unrouted: Arc<AtomicU64>,
    _receivers: Vec<Task>,
}

#[derive(Default)]
struct Routes {
    router: Router<u64>,
    sinks: HashMap<u64, (Sender<Datagram>, Arc<Shared>)>,
    next_key: u64,
}

fn lock(routes: &Mutex<Routes>) -> std::sync::MutexGuard<'_, Routes> {
    // The routes stay consistent whatever panicked while holding them.
    routes.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Endpoint {
    /// Binds the configured addresses, asks the STUN server (if any), and
    /// starts receiving.
    pub async fn bind(config: EndpointConfig) -> Result<Endpoint, Error> {
        let mut sockets = Vec::new();
        for (addr, expanded) in expand(&config.bind)? {
            match std::net::UdpSocket::bind(addr) {
                Ok(s) => {
                    size_buffers(&s, &config);
                    let local = s.local_addr()?;
                    sockets.push((local, Arc::new(UdpSocket::from_std(s)?)));
                }
                Err(e) if expanded => warn!("skipping {addr}: {e}"),
                Err(e) => return Err(e.into()),
            }
        }
        if sockets.is_empty() {
            return Err(
                io::Error::new(io::ErrorKind::AddrNotAvailable, "no address to bind").into(),
            );
        }
        let mut announced = Vec::new();
        for ip in &config.announced_ips {
            for (local, _) in &sockets {
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
            for (local, socket) in &sockets {
                if local.is_ipv4() != server.is_ipv4() {
                    continue;
                }
                match reflexive(socket, server, config.stun_timeout).await {
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
        let routes = Arc::new(Mutex::new(Routes::default()));
        let unrouted = Arc::new(AtomicU64::new(0));
        let receivers = sockets
            .iter()
            .map(|(local, socket)| {
                rt::spawn_owned(receive(
                    *local,
                    socket.clone(),
                    routes.clone(),
                    unrouted.clone(),
                ))
            })
            .collect();
        Ok(Endpoint {
            inner: Arc::new(EndpointInner {
                sockets,
                announced,
                routes,
                cert: relay_proto::Certificate::generate().ok(),
                unrouted,
                _receivers: receivers,
            }),
        })
    }

    /// The bound addresses (the host candidates).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.inner.sockets.iter().map(|(a, _)| *a).collect()
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

    /// A new peer on this endpoint's sockets (`config.endpoint` is ignored);
    /// then [`Peer::offer`].
    pub fn peer(&self, meta: PeerMeta, config: Config) -> Result<Peer, Error> {
        peer::start(self.inner.clone(), meta, config, None).map(|(p, _)| p)
    }

    /// A new peer on this endpoint's sockets that answers `offer`; hand the
    /// answer back to the offerer.
    pub fn answer(
        &self,
        meta: PeerMeta,
        config: Config,
        offer: &[u8],
    ) -> Result<(Peer, Vec<u8>), Error> {
        let (peer, answer) = peer::start(self.inner.clone(), meta, config, Some(offer))?;
        Ok((peer, answer.unwrap_or_default()))
    }
}

impl EndpointInner {
    pub(crate) fn local_addrs(&self) -> Vec<SocketAddr> {
        self.sockets.iter().map(|(a, _)| *a).collect()
    }

    pub(crate) fn announced(&self) -> &[AnnouncedAddr] {
        &self.announced
    }

    pub(crate) fn cert(&self) -> Option<DtlsCert> {
        self.cert.clone()
    }

    /// A key and a datagram queue for a new peer.
    pub(crate) fn attach(&self, shared: Arc<Shared>, capacity: usize) -> (u64, Receiver<Datagram>) {
        let (tx, rx) = async_channel::bounded(capacity.max(1));
        let mut routes = lock(&self.routes);
        let key = routes.next_key;
        routes.next_key += 1;
        routes.sinks.insert(key, (tx, shared));
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

    /// Sends one datagram from the socket bound to its source address.
    pub(crate) async fn send(&self, t: &Transmit) {
        let Some((_, socket)) = self.sockets.iter().find(|(a, _)| *a == t.source) else {
            debug!("no socket bound to {}", t.source);
            return;
        };
        trace!(to = %t.destination, len = t.contents.len(), "datagram out");
        if let Err(e) = socket.send_to(&t.contents, t.destination).await {
            debug!("send to {} failed: {e}", t.destination);
        }
    }
}

/// Asks for the configured socket buffers; the system may grant less.
fn size_buffers(socket: &std::net::UdpSocket, config: &EndpointConfig) {
    let sock = socket2::SockRef::from(socket);
    if let Some(n) = config.recv_buffer
        && let Err(e) = sock.set_recv_buffer_size(n)
    {
        debug!("SO_RCVBUF {n}: {e}");
    }
    if let Some(n) = config.send_buffer
        && let Err(e) = sock.set_send_buffer_size(n)
    {
        debug!("SO_SNDBUF {n}: {e}");
    }
}

/// The addresses to bind, `true` for those expanded from a wildcard.
fn expand(bind: &[SocketAddr]) -> io::Result<Vec<(SocketAddr, bool)>> {
    let mut out: Vec<(SocketAddr, bool)> = Vec::new();
    let mut interfaces = None;
    for addr in bind {
        if !addr.ip().is_unspecified() {
            out.push((*addr, false));
            continue;
        }
        if interfaces.is_none() {
            interfaces = Some(if_addrs::get_if_addrs()?);
        }
        let family: Vec<IpAddr> = interfaces
            .iter()
            .flatten()
            .map(|i| i.ip())
            .filter(|ip| ip.is_ipv4() == addr.is_ipv4() && !is_link_local(ip))
            .collect();
        let outside: Vec<IpAddr> = family
            .iter()
            .copied()
            .filter(|ip| !ip.is_loopback())
            .collect();
        let chosen = if outside.is_empty() { family } else { outside };
        for ip in chosen {
            let a = SocketAddr::new(ip, addr.port());
            if !out.iter().any(|(b, _)| *b == a) {
                out.push((a, true));
            }
        }
    }
    Ok(out)
}

fn transient(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionReset
            | ConnectionRefused
            | HostUnreachable
            | NetworkUnreachable
            | Interrupted
            | WouldBlock
            | TimedOut
    )
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// The address a STUN server sees for `socket` (before receiving starts).
async fn reflexive(
    socket: &UdpSocket,
    server: SocketAddr,
    wait: std::time::Duration,
) -> Option<SocketAddr> {
    let transaction: [u8; 12] = std::array::from_fn(|_| fastrand::u8(..));
    let request = relay_proto::stun_binding_request(transaction);
    let mut buf = vec![0u8; 1500];
    for _ in 0..STUN_ATTEMPTS {
        if let Err(e) = socket.send_to(&request, server).await {
            debug!("STUN request to {server}: {e}");
            return None;
        }
        let deadline = rt::now() + wait;
        loop {
            let got =
                futures_lite::future::or(async { socket.recv_from(&mut buf).await.ok() }, async {
                    rt::sleep_until(deadline).await;
                    None
                })
                .await;
            let Some((n, from)) = got else { break };
            if from == server
                && let Some(mapped) = relay_proto::stun_mapped_address(&buf[..n], &transaction)
            {
                return Some(mapped);
            }
        }
    }
    None
}

/// Reads one socket and hands each datagram to the peer it belongs to.
async fn receive(
    local: SocketAddr,
    socket: Arc<UdpSocket>,
    routes: Arc<Mutex<Routes>>,
    unrouted: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; RECV_BUFFER];
    loop {
        let (n, source) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            // ICMP errors of earlier sends surface here on some systems.
            Err(e) if transient(&e) => {
                debug!("receive on {local}: {e}");
                continue;
            }
            Err(e) => {
                warn!("receive on {local} failed, socket given up: {e}");
                return;
            }
        };
        let data = &buf[..n];
        let mut routes = lock(&routes);
        let Some(key) = routes.router.route(source, data) else {
            trace!(from = %source, len = n, "datagram for no peer");
            unrouted.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let Some((sink, shared)) = routes.sinks.get(&key) else {
            continue;
        };
        let datagram = Datagram {
            source,
            destination: local,
            data: data.to_vec(),
        };
        match sink.try_send(datagram) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Closed(_)) => {
                shared.count_datagram_drop()
            }
        }
    }
}
