//! [`Runtime`] for smol: async-io's reactor and timers, smol's executor.
//! No tokio anywhere.

use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use async_io::{Async, Timer};
use quinn_udp::{RecvMeta, Transmit, UdpSocketState};

use super::{AsyncTimer, AsyncUdpSocket, Runtime, SenderHelper, TrySend, UdpSender};

/// The smol runtime: peers' tasks on smol's global executor, sockets and
/// timers on async-io's reactor. Any executor can await the handles.
#[derive(Debug, Clone, Copy, Default)]
pub struct Smol;

impl Runtime for Smol {
    fn new_timer(&self, at: Instant) -> Pin<Box<dyn AsyncTimer>> {
        Box::pin(Timer::at(at))
    }

    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        ::smol::spawn(future).detach();
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Box<dyn AsyncUdpSocket>> {
        let state = UdpSocketState::new((&socket).into())?;
        Ok(Box::new(Socket {
            state: Arc::new(state),
            io: Arc::new(Async::new_nonblocking(socket)?),
        }))
    }
}

impl AsyncTimer for Timer {
    fn reset(mut self: Pin<&mut Self>, at: Instant) {
        self.set_at(at)
    }

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Future::poll(self, cx).map(|_| ())
    }
}

#[derive(Debug, Clone)]
struct Socket {
    io: Arc<Async<std::net::UdpSocket>>,
    state: Arc<UdpSocketState>,
}

impl TrySend for Socket {
    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        self.state.try_send((&self.io).into(), transmit)
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
            ready!(self.io.poll_readable(cx))?;
            match self.state.recv((&self.io).into(), bufs, meta) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.get_ref().local_addr()
    }

    fn max_receive_segments(&self) -> usize {
        self.state.gro_segments()
    }
}
