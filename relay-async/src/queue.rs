//! The queues between a peer's task and its handles.
//!
//! Unbounded async-channel queues, which allocate their slots in small
//! blocks as they fill and free them as they empty, so an idle peer's
//! queues cost nearly nothing; with a capacity checked here: the peer's
//! task drops what does not fit (and counts it), and a handle that must not
//! lose a call waits for room ([`Tx::send`]).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;

/// Why [`Tx::try_send`] did not take an item.
pub(crate) enum TrySendError<T> {
    /// The queue holds its capacity.
    Full(T),
    /// The other side is gone.
    Closed(T),
}

impl<T> TrySendError<T> {
    pub(crate) fn into_inner(self) -> T {
        match self {
            TrySendError::Full(t) | TrySendError::Closed(t) => t,
        }
    }
}

/// The sending side; cheap to clone.
pub(crate) struct Tx<T> {
    inner: async_channel::Sender<T>,
    cap: usize,
    room: Arc<event_listener::Event>,
}

impl<T> Clone for Tx<T> {
    fn clone(&self) -> Self {
        Tx {
            inner: self.inner.clone(),
            cap: self.cap,
            room: self.room.clone(),
        }
    }
}

/// The receiving side.
pub(crate) struct Rx<T> {
    inner: Pin<Box<async_channel::Receiver<T>>>,
    room: Arc<event_listener::Event>,
}

/// A queue that holds at most `cap` items (at least one).
pub(crate) fn queue<T>(cap: usize) -> (Tx<T>, Rx<T>) {
    let (tx, rx) = async_channel::unbounded();
    let room = Arc::new(event_listener::Event::new());
    (
        Tx {
            inner: tx,
            cap: cap.max(1),
            room: room.clone(),
        },
        Rx {
            inner: Box::pin(rx),
            room,
        },
    )
}

impl<T> Tx<T> {
    /// Queues `item` if there is room.
    pub(crate) fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        if self.inner.is_closed() {
            return Err(TrySendError::Closed(item));
        }
        if self.inner.len() >= self.cap {
            return Err(TrySendError::Full(item));
        }
        self.inner
            .try_send(item)
            .map_err(|e| TrySendError::Closed(e.into_inner()))
    }

    /// Queues `item`, waiting for room; `Err` with it when the other side
    /// is gone. With many senders the queue may briefly hold a few more
    /// than its capacity.
    pub(crate) async fn send(&self, mut item: T) -> Result<(), T> {
        loop {
            match self.try_send(item) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(t)) => return Err(t),
                Err(TrySendError::Full(t)) => item = t,
            }
            let listener = self.room.listen();
            if self.inner.len() < self.cap || self.inner.is_closed() {
                continue;
            }
            listener.await;
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.inner.len()
    }

    pub(crate) fn capacity(&self) -> usize {
        self.cap
    }
}

impl<T> Rx<T> {
    /// The next item; `None` once every sender is gone and the queue is
    /// empty.
    pub(crate) async fn recv(&self) -> Option<T> {
        let item = self.inner.recv().await.ok();
        self.room.notify(1);
        item
    }

    /// The next item if one is waiting.
    pub(crate) fn try_recv(&self) -> Option<T> {
        let item = self.inner.try_recv().ok();
        if item.is_some() {
            self.room.notify(1);
        }
        item
    }

    /// `Ready(None)` once every sender is gone and the queue is empty.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let item = self.inner.as_mut().poll_next(cx);
        if let Poll::Ready(Some(_)) = item {
            self.room.notify(1);
        }
        item
    }

    /// `true` once every sender is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Refuses further items and drops the waiting ones (which may hold the
    /// result senders of calls, whose callers then wake).
    pub(crate) fn close(&self) {
        self.inner.close();
        while self.inner.try_recv().is_ok() {}
        self.room.notify(usize::MAX);
    }
}
