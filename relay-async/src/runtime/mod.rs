//! The seam between the peer logic and an async runtime: a clock, timers,
//! spawning, and UDP sockets with batched receive and send. The peer's
//! task, the shared endpoint and every handle are written once against
//! [`Runtime`]; [`Tokio`] (feature `tokio`) and [`Smol`] (feature `smol`)
//! implement it, as quinn does for its endpoint.
//!
//! Sockets go through [`quinn_udp`]: `recvmmsg` and `sendmsg` with GSO
//! segments and GRO where the kernel has them, IPv4 and IPv6.

#[cfg(feature = "smol")]
mod smol;
#[cfg(feature = "tokio")]
mod tokio;

use std::fmt::Debug;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

pub use quinn_udp::{RecvMeta, Transmit};

#[cfg(feature = "smol")]
pub use self::smol::Smol;
#[cfg(feature = "tokio")]
pub use self::tokio::Tokio;

/// What the relay needs of an async runtime.
///
/// Implement it to run relay peers on another runtime; the ones for tokio
/// and smol are [`Tokio`] and [`Smol`]. `Default` makes a handle to the
/// runtime the caller is in.
pub trait Runtime: Send + Sync + Debug + 'static {
    /// The time now; every input handed to a peer's core carries it, read
    /// once per wake-up of the peer's task.
    fn now(&self) -> Instant {
        Instant::now()
    }

    /// A timer that fires at `at` (and can be moved).
    fn new_timer(&self, at: Instant) -> Pin<Box<dyn AsyncTimer>>;

    /// Runs `future` in the background until it ends.
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>);

    /// Registers a bound, non-blocking std socket with the runtime.
    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Box<dyn AsyncUdpSocket>>;
}

/// A timer of a [`Runtime`].
pub trait AsyncTimer: Send + Debug + 'static {
    /// Moves the timer to fire at `at`.
    fn reset(self: Pin<&mut Self>, at: Instant);
    /// `Ready` once the time has come; else registers to be woken then.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()>;
}

/// A UDP socket of a [`Runtime`]. One task receives on it; any number send,
/// each through its own [`UdpSender`].
pub trait AsyncUdpSocket: Send + Sync + Debug + 'static {
    /// A sender that registers its own task for write readiness.
    fn create_sender(&self) -> Pin<Box<dyn UdpSender>>;

    /// Receives a batch of datagrams into `bufs` (one per buffer, or several
    /// of `meta.stride` bytes each with GRO), or registers to be woken when
    /// one may come. Only one task may poll this.
    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>>;

    /// The bound address.
    fn local_addr(&self) -> io::Result<SocketAddr>;

    /// Datagrams one receive buffer may hold (GRO), 1 without GRO.
    fn max_receive_segments(&self) -> usize {
        1
    }
}

/// The sending side of an [`AsyncUdpSocket`], for one task.
pub trait UdpSender: Send + Sync + Debug + 'static {
    /// Sends `transmit` (several equal segments with GSO), or registers to
    /// be woken when the socket can take it.
    fn poll_send(
        self: Pin<&mut Self>,
        transmit: &Transmit<'_>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>>;

    /// Segments one transmit may carry (GSO), 1 without GSO.
    fn max_transmit_segments(&self) -> usize {
        1
    }
}

/// A runtime's socket as the helper below sees it: a non-blocking send.
#[cfg_attr(not(any(feature = "tokio", feature = "smol")), allow(dead_code))]
pub(crate) trait TrySend: Send + Sync + 'static {
    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()>;
    fn max_transmit_segments(&self) -> usize;
}

/// A [`UdpSender`] made of a socket and a function that waits until it is
/// writable: each sender owns its wait, so many tasks can send on one
/// socket without taking each other's wake-ups.
#[cfg_attr(not(any(feature = "tokio", feature = "smol")), allow(dead_code))]
pub(crate) struct SenderHelper<S, F, W> {
    socket: S,
    writable: F,
    waiting: Option<Pin<Box<W>>>,
}

impl<S, F, W> Debug for SenderHelper<S, F, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UdpSender")
    }
}

#[cfg_attr(not(any(feature = "tokio", feature = "smol")), allow(dead_code))]
impl<S, F, W> SenderHelper<S, F, W> {
    pub(crate) fn new(socket: S, writable: F) -> Self {
        SenderHelper {
            socket,
            writable,
            waiting: None,
        }
    }
}

impl<S, F, W> UdpSender for SenderHelper<S, F, W>
where
    S: TrySend,
    F: Fn(&S) -> W + Send + Sync + 'static,
    W: Future<Output = io::Result<()>> + Send + Sync + 'static,
{
    fn poll_send(
        self: Pin<&mut Self>,
        transmit: &Transmit<'_>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        // Nothing here is structurally pinned: the wait is boxed.
        let this = Pin::into_inner(self);
        loop {
            // Try first: a UDP socket is writable nearly always, and a
            // readiness wait per datagram would cost a poll each.
            if this.waiting.is_none() {
                match this.socket.try_send(transmit) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        this.waiting = Some(Box::pin((this.writable)(&this.socket)));
                    }
                    result => return Poll::Ready(result),
                }
            }
            let wait = this.waiting.as_mut().expect("set above");
            let ready = std::task::ready!(wait.as_mut().poll(cx));
            this.waiting = None;
            ready?;
        }
    }

    fn max_transmit_segments(&self) -> usize {
        self.socket.max_transmit_segments()
    }
}

impl<S, F, W> Unpin for SenderHelper<S, F, W> {}
