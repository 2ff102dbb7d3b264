//! [`Runtime`] for tokio: its timers, tasks and reactor.

use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;

use super::{AsyncTimer, AsyncUdpSocket, Runtime, SenderHelper, TrySend, UdpSender};

/// The tokio runtime: call from within one (with its `net` and `time`
/// drivers).
#[derive(Debug, Clone, Copy, Default)]
pub struct Tokio;

impl Runtime for Tokio {
    fn now(&self) -> Instant {
        // tokio's clock, so that a paused test runtime pauses the peers too.
        tokio::time::Instant::now().into_std()
    }

    fn new_timer(&self, at: Instant) -> Pin<Box<dyn AsyncTimer>> {
        Box::pin(tokio::time::sleep_until(at.into()))
    }

    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        drop(tokio::spawn(future));
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Box<dyn AsyncUdpSocket>> {
        socket.set_nonblocking(true)?;
        let state = UdpSocketState::new((&socket).into())?;
        Ok(Box::new(Socket {
            state: Arc::new(state),
            io: Arc::new(tokio::net::UdpSocket::from_std(socket)?),
        }))
    }
}

impl AsyncTimer for tokio::time::Sleep {
    fn reset(self: Pin<&mut Self>, at: Instant) {
        tokio::time::Sleep::reset(self, at.into())
    }

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Future::poll(self, cx)
    }
}

#[derive(Debug, Clone)]
struct Socket {
    io: Arc<tokio::net::UdpSocket>,
    state: Arc<UdpSocketState>,
}

impl TrySend for Socket {
    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        self.io.try_io(Interest::WRITABLE, || {
            self.state.try_send((&self.io).into(), transmit)
        })
    }

    fn max_transmit_segments(&self) -> usize {
        self.state.max_gso_segments()
    }
}

impl AsyncUdpSocket for Socket {
    fn create_sender(&self) -> Pin<Box<dyn UdpSender>> {
        Box::pin(SenderHelper::new(self.clone(), |s: &Socket| {
            let s = s.clone();
            async move { s.io.writable().await }
        }))
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.io.poll_recv_ready(cx))?;
            match self.io.try_io(Interest::READABLE, || {
                self.state.recv((&self.io).into(), bufs, meta)
            }) {
                Ok(n) => return Poll::Ready(Ok(n)),
                // `try_io` clears readiness on `WouldBlock` only; another
                // error retried here would spin.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    fn max_receive_segments(&self) -> usize {
        self.state.gro_segments()
    }
}
