//! Everything runtime-specific (async-io and smol's executor): the clock,
//! tasks, timers and sockets. The other modules are relay-tokio's source
//! files, included by path (see `lib.rs`).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use async_io::{Async, Timer};

/// The adapter's one clock read: every input handed to the core carries it.
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// Completes at `deadline`.
pub(crate) async fn sleep_until(deadline: Instant) {
    Timer::at(deadline).await;
}

/// Runs `f` in the background until it ends.
pub(crate) fn spawn<F>(f: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    smol::spawn(f).detach();
}

/// A background task that is stopped when this is dropped.
pub(crate) struct Task(#[allow(dead_code)] smol::Task<()>);

/// Runs `f` in the background until it ends or the returned [`Task`] drops.
pub(crate) fn spawn_owned<F>(f: F) -> Task
where
    F: Future<Output = ()> + Send + 'static,
{
    Task(smol::spawn(f))
}

/// A UDP socket registered with the reactor.
pub(crate) struct UdpSocket(Async<std::net::UdpSocket>);

impl UdpSocket {
    /// Registers a bound std socket.
    pub(crate) fn from_std(socket: std::net::UdpSocket) -> io::Result<Self> {
        Ok(UdpSocket(Async::new(socket)?))
    }

    pub(crate) async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.0.recv_from(buf).await
    }

    pub(crate) async fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.0.send_to(buf, to).await
    }
}
