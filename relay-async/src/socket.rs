//! Binding sockets, and moving datagrams through them in batches: a
//! receive-buffer pool per thread, and sends grouped into GSO segments.

use std::cell::RefCell;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use quinn_udp::{RecvMeta, Transmit};
use tracing::{debug, warn};

use crate::config::EndpointConfig;
use crate::runtime::{AsyncUdpSocket, Runtime, UdpSender};

/// Datagrams read per receive call, at most (`recvmmsg` batch).
pub(crate) const RECV_BATCH: usize = quinn_udp::BATCH_SIZE;

/// Bytes per receive buffer without GRO: more than any datagram a peer
/// sends (1,460 by default), and than an Ethernet MTU.
const PLAIN_BUF: usize = 2048;

/// Bytes per receive buffer with GRO: the most a coalesced read carries.
const GRO_BUF: usize = 64 * 1024;

/// Receive buffers, one set per thread and borrowed only within one
/// synchronous receive-and-handle step, so they cost nothing per peer:
/// every datagram is handed to the core (which copies what it keeps)
/// before the buffers are read into again.
struct RecvBufs {
    bufs: Vec<Vec<u8>>,
    meta: Vec<RecvMeta>,
}

thread_local! {
    static RECV_BUFS: RefCell<Option<RecvBufs>> = const { RefCell::new(None) };
}

/// One datagram of a received batch.
pub(crate) struct Received<'a> {
    pub(crate) source: SocketAddr,
    pub(crate) data: &'a [u8],
}

/// Reads one batch of at most about `max` datagrams from `socket` and hands
/// each (GRO segments split) to `each`. `Pending` when nothing was waiting
/// (the task is registered to be woken); the number of datagrams
/// otherwise.
///
/// With GRO one buffer may hold 64 datagrams, so a full `recvmmsg` could
/// bring two thousand: the number of buffers is cut to what `max` allows,
/// or one peer's turn would flood its tracks' queues before their readers
/// run.
pub(crate) fn poll_recv_batch(
    socket: &dyn AsyncUdpSocket,
    cx: &mut Context<'_>,
    max: usize,
    mut each: impl FnMut(Received<'_>),
) -> Poll<io::Result<usize>> {
    RECV_BUFS.with(|cell| {
        let mut slot = cell.borrow_mut();
        let size = if socket.max_receive_segments() > 1 {
            GRO_BUF
        } else {
            PLAIN_BUF
        };
        let pool = slot.get_or_insert_with(|| RecvBufs {
            bufs: Vec::new(),
            meta: vec![RecvMeta::default(); RECV_BATCH],
        });
        if pool.bufs.len() < RECV_BATCH || pool.bufs[0].len() < size {
            pool.bufs = (0..RECV_BATCH).map(|_| vec![0u8; size]).collect();
        }
        let RecvBufs { bufs, meta } = pool;
        let mut slices: [IoSliceMut<'_>; RECV_BATCH] = {
            let mut it = bufs.iter_mut();
            std::array::from_fn(|_| IoSliceMut::new(it.next().expect("RECV_BATCH buffers")))
        };
        let segments = socket.max_receive_segments().max(1);
        let nbufs = (max / segments).clamp(1, RECV_BATCH);
        let n = match socket.poll_recv(cx, &mut slices[..nbufs], &mut meta[..nbufs]) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(n)) => n,
        };
        let mut count = 0;
        for (m, buf) in meta.iter().zip(slices.iter()).take(n) {
            let stride = m.stride.max(1);
            for data in buf[..m.len].chunks(stride) {
                count += 1;
                each(Received {
                    source: m.addr,
                    data,
                });
            }
        }
        Poll::Ready(Ok(count))
    })
}

thread_local! {
    /// Scratch for joining equal datagrams into one GSO send.
    static SEND_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A datagram waiting to be sent from one of a peer's sockets.
pub(crate) struct Outgoing {
    pub(crate) destination: SocketAddr,
    pub(crate) contents: Vec<u8>,
}

/// Sends the front of `queue` through `sender`, joining the longest run of
/// datagrams to the same destination whose sizes GSO can carry (all equal,
/// the last no larger) into one call. Returns how many it sent; `Pending`
/// (with the task registered) when the socket has no room, the queue
/// untouched.
pub(crate) fn poll_send_run(
    sender: Pin<&mut dyn UdpSender>,
    queue: &mut std::collections::VecDeque<Outgoing>,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    let Some(first) = queue.front() else {
        return Poll::Ready(Ok(0));
    };
    let max_segments = sender.max_transmit_segments();
    let size = first.contents.len();
    let destination = first.destination;
    let mut run = 1;
    if max_segments > 1 && size > 0 {
        let mut total = size;
        for next in queue.iter().skip(1) {
            let len = next.contents.len();
            if run >= max_segments
                || next.destination != destination
                || len > size
                || total + len > u16::MAX as usize
            {
                break;
            }
            run += 1;
            total += len;
            if len < size {
                // A shorter datagram can only end a run.
                break;
            }
        }
    }
    let sent = if run == 1 {
        let transmit = Transmit {
            destination,
            ecn: None,
            contents: &first.contents,
            segment_size: None,
            src_ip: None,
        };
        sender.poll_send(&transmit, cx)
    } else {
        SEND_SCRATCH.with(|cell| {
            let mut buf = cell.borrow_mut();
            buf.clear();
            for o in queue.iter().take(run) {
                buf.extend_from_slice(&o.contents);
            }
            let transmit = Transmit {
                destination,
                ecn: None,
                contents: &buf,
                segment_size: Some(size),
                src_ip: None,
            };
            sender.poll_send(&transmit, cx)
        })
    };
    match sent {
        Poll::Pending => Poll::Pending,
        Poll::Ready(result) => {
            queue.drain(..run);
            match result {
                Ok(()) => Poll::Ready(Ok(run)),
                // UDP is lossy anyway: a refused send is one lost datagram
                // run, not a broken peer.
                Err(e) => {
                    debug!("send to {destination} failed: {e}");
                    Poll::Ready(Ok(run))
                }
            }
        }
    }
}

/// Binds the configured addresses: one socket per concrete address, one per
/// local interface address for a wildcard. Returns the sockets with their
/// bound addresses.
pub(crate) fn bind(
    runtime: &Arc<dyn Runtime>,
    config: &EndpointConfig,
) -> io::Result<Vec<(SocketAddr, Arc<dyn AsyncUdpSocket>)>> {
    let mut sockets = Vec::new();
    for (addr, expanded) in expand(&config.bind)? {
        match std::net::UdpSocket::bind(addr) {
            Ok(s) => {
                size_buffers(&s, config);
                let local = s.local_addr()?;
                sockets.push((local, Arc::from(runtime.wrap_udp_socket(s)?)));
            }
            Err(e) if expanded => warn!("skipping {addr}: {e}"),
            Err(e) => return Err(e),
        }
    }
    if sockets.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            "no address to bind",
        ));
    }
    Ok(sockets)
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

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// Receive errors that say nothing about the socket itself: ICMP errors of
/// earlier sends surface here on some systems.
pub(crate) fn transient(e: &io::Error) -> bool {
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
