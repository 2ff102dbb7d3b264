//! Many peers, closed together: what a server needs when it shuts down.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use futures_lite::future;

use crate::peer::Peer;
use crate::runtime::Runtime;

/// The peers a server keeps, so that a shutdown closes every one of them
/// and each remote learns at once (`Closed(Remote)`), rather than from ICE
/// seconds later. Cheap to clone; closed peers are forgotten as new ones
/// come.
pub struct PeerSet<R> {
    peers: Arc<Mutex<Vec<Peer<R>>>>,
}

impl<R> Clone for PeerSet<R> {
    fn clone(&self) -> Self {
        PeerSet {
            peers: self.peers.clone(),
        }
    }
}

impl<R> Default for PeerSet<R> {
    fn default() -> Self {
        PeerSet {
            peers: Arc::default(),
        }
    }
}

impl<R> std::fmt::Debug for PeerSet<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerSet")
            .field("peers", &self.len())
            .finish()
    }
}

impl<R> PeerSet<R> {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps `peer` (a clone of its handle) until it closes.
    pub fn insert(&self, peer: &Peer<R>) {
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        peers.retain(|p| !p.is_closed());
        peers.push(peer.clone());
    }

    /// Peers not closed yet.
    pub fn len(&self) -> usize {
        let peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        peers.iter().filter(|p| !p.is_closed()).count()
    }

    /// `true` when no peer is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<R: Runtime + Default> PeerSet<R> {
    /// Closes every peer at once and waits until all are closed, at most
    /// `within`; returns how many were closed in time. A peer's close tells
    /// its remote immediately (DTLS close_notify, SCTP shutdown).
    pub async fn close_all(&self, within: Duration) -> usize {
        let peers: Vec<Peer<R>> =
            std::mem::take(&mut *self.peers.lock().unwrap_or_else(PoisonError::into_inner));
        let runtime = R::default();
        let mut timer = runtime.new_timer(runtime.now() + within);
        // All at once: each close only queues a command for its peer's task.
        let mut closing: Vec<Option<Pin<Box<dyn Future<Output = ()> + Send + '_>>>> = peers
            .iter()
            .map(|p| Some(Box::pin(p.close()) as Pin<Box<dyn Future<Output = ()> + Send>>))
            .collect();
        future::poll_fn(|cx| {
            for slot in closing.iter_mut() {
                if let Some(f) = slot
                    && f.as_mut().poll(cx).is_ready()
                {
                    *slot = None;
                }
            }
            if closing.iter().all(Option::is_none) || timer.as_mut().poll(cx).is_ready() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
        peers.iter().filter(|p| p.is_closed()).count()
    }
}
