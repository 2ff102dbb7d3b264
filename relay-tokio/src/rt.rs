//! Everything tokio-specific: the clock, tasks, timers and sockets. The
//! other modules are runtime-neutral: `relay-smol` compiles these same
//! files (by `#[path]`) against its own `rt`, so they must name nothing of
//! tokio and carry no doc examples that name this crate.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

/// The adapter's one clock read: every input handed to the core carries it.
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// Completes at `deadline`.
pub(crate) async fn sleep_until(deadline: Instant) {
    tokio::time::sleep_until(deadline.into()).await
}

/// Runs `f` in the background until it ends.
pub(crate) fn spawn<F>(f: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    drop(tokio::spawn(f));
}

/// A background task that is stopped when this is dropped.
pub(crate) struct Task(tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `f` in the background until it ends or the returned [`Task`] drops.
pub(crate) fn spawn_owned<F>(f: F) -> Task
where
    F: Future<Output = ()> + Send + 'static,
{
    Task(tokio::spawn(f))
}

/// A UDP socket registered with the runtime.
pub(crate) struct UdpSocket(tokio::net::UdpSocket);

impl UdpSocket {
    /// Registers a bound std socket (needs a tokio runtime).
    pub(crate) fn from_std(socket: std::net::UdpSocket) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        Ok(UdpSocket(tokio::net::UdpSocket::from_std(socket)?))
    }

    pub(crate) async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.0.recv_from(buf).await
    }

    pub(crate) async fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.0.send_to(buf, to).await
    }
}
