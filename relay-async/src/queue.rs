//! The queues between a peer's task and its handles.
//!
//! A `VecDeque` behind a mutex, with event-listener wake-ups: it holds
//! memory only for what is queued, and gives back what a burst grew once it
//! is empty again, so an idle peer's queues cost almost nothing (measured
//! with dhat: the block-allocated queues used before kept about 10 KiB per
//! idle peer). The capacity is checked here: the peer's task drops what
//! does not fit (and counts it), and a handle that must not lose a call
//! waits for room ([`Tx::send`]).

use std::collections::VecDeque;
use std::future::Future as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use event_listener::{Event, EventListener};

/// Capacity kept by an empty queue; more is given back.
const KEEP: usize = 4;

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

struct State<T> {
    items: VecDeque<T>,
    senders: usize,
    /// The receiver is gone or closed the queue.
    closed: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    cap: usize,
    /// An item came, or the last sender went.
    arrived: Event,
    /// Room came, or the receiver went.
    room: Event,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Plain data, consistent whatever panicked while it was held.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The sending side; cheap to clone.
pub(crate) struct Tx<T> {
    shared: Arc<Shared<T>>,
}

/// The receiving side.
pub(crate) struct Rx<T> {
    shared: Arc<Shared<T>>,
    listener: Option<EventListener>,
}

/// A queue that holds at most `cap` items (at least one).
pub(crate) fn queue<T>(cap: usize) -> (Tx<T>, Rx<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            senders: 1,
            closed: false,
        }),
        cap: cap.max(1),
        arrived: Event::new(),
        room: Event::new(),
    });
    (
        Tx {
            shared: shared.clone(),
        },
        Rx {
            shared,
            listener: None,
        },
    )
}

impl<T> Clone for Tx<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Tx {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Tx<T> {
    fn drop(&mut self) {
        let last = {
            let mut state = self.shared.lock();
            state.senders -= 1;
            state.senders == 0
        };
        if last {
            self.shared.arrived.notify(usize::MAX);
        }
    }
}

impl<T> Tx<T> {
    /// Queues `item` if there is room.
    pub(crate) fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        {
            let mut state = self.shared.lock();
            if state.closed {
                return Err(TrySendError::Closed(item));
            }
            if state.items.len() >= self.shared.cap {
                return Err(TrySendError::Full(item));
            }
            state.items.push_back(item);
        }
        self.shared.arrived.notify(1);
        Ok(())
    }

    /// Queues `item`, waiting for room; `Err` with it when the other side
    /// is gone.
    pub(crate) async fn send(&self, mut item: T) -> Result<(), T> {
        loop {
            match self.try_send(item) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(t)) => return Err(t),
                Err(TrySendError::Full(t)) => item = t,
            }
            let listener = self.shared.room.listen();
            {
                let state = self.shared.lock();
                if state.closed || state.items.len() < self.shared.cap {
                    continue;
                }
            }
            listener.await;
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.shared.lock().items.len()
    }

    pub(crate) fn capacity(&self) -> usize {
        self.shared.cap
    }
}

/// What a receive found.
enum Taken<T> {
    Item(T),
    /// Empty, and every sender is gone.
    End,
    Empty,
}

impl<T> Rx<T> {
    fn take(&self) -> Taken<T> {
        let taken = {
            let mut state = self.shared.lock();
            match state.items.pop_front() {
                Some(item) => {
                    if state.items.is_empty() && state.items.capacity() > KEEP {
                        state.items.shrink_to(KEEP);
                    }
                    Taken::Item(item)
                }
                None if state.senders == 0 => Taken::End,
                None => Taken::Empty,
            }
        };
        if matches!(taken, Taken::Item(_)) {
            self.shared.room.notify(1);
        }
        taken
    }

    /// The next item; `None` once every sender is gone and the queue is
    /// empty.
    pub(crate) async fn recv(&self) -> Option<T> {
        loop {
            match self.take() {
                Taken::Item(t) => return Some(t),
                Taken::End => return None,
                Taken::Empty => {}
            }
            let listener = self.shared.arrived.listen();
            match self.take() {
                Taken::Item(t) => return Some(t),
                Taken::End => return None,
                Taken::Empty => listener.await,
            }
        }
    }

    /// The next item if one is waiting.
    pub(crate) fn try_recv(&self) -> Option<T> {
        match self.take() {
            Taken::Item(t) => Some(t),
            _ => None,
        }
    }

    /// `Ready(None)` once every sender is gone and the queue is empty.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        loop {
            match self.take() {
                Taken::Item(t) => {
                    self.listener = None;
                    return Poll::Ready(Some(t));
                }
                Taken::End => {
                    self.listener = None;
                    return Poll::Ready(None);
                }
                Taken::Empty => {}
            }
            match &mut self.listener {
                None => {
                    // Listen, then look again: an item pushed in between
                    // is seen either way.
                    self.listener = Some(self.shared.arrived.listen());
                }
                Some(listener) => {
                    std::task::ready!(std::pin::Pin::new(listener).poll(cx));
                    self.listener = None;
                }
            }
        }
    }

    /// `true` once every sender is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.lock().senders == 0
    }

    /// Refuses further items and drops the waiting ones (which may hold the
    /// result senders of calls, whose callers then wake).
    pub(crate) fn close(&self) {
        let dropped = {
            let mut state = self.shared.lock();
            state.closed = true;
            std::mem::take(&mut state.items)
        };
        drop(dropped);
        self.shared.room.notify(usize::MAX);
    }
}

impl<T> Drop for Rx<T> {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_order_and_end() {
        let (tx, rx) = queue(2);
        assert!(tx.try_send(1).is_ok());
        assert!(tx.try_send(2).is_ok());
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        assert_eq!(rx.try_recv(), Some(1));
        assert!(tx.try_send(3).is_ok());
        drop(tx);
        assert_eq!(futures_lite::future::block_on(rx.recv()), Some(2));
        assert_eq!(futures_lite::future::block_on(rx.recv()), Some(3));
        assert_eq!(futures_lite::future::block_on(rx.recv()), None);
    }

    #[test]
    fn an_emptied_queue_gives_memory_back() {
        let (tx, rx) = queue(1000);
        for i in 0..500 {
            assert!(tx.try_send(i).is_ok());
        }
        while rx.try_recv().is_some() {}
        assert!(rx.shared.lock().items.capacity() <= KEEP);
    }

    #[test]
    fn a_closed_queue_refuses_and_drops() {
        let (tx, rx) = queue(4);
        let item = Arc::new(());
        assert!(tx.try_send(item.clone()).is_ok());
        rx.close();
        assert_eq!(Arc::strong_count(&item), 1, "the queued item was dropped");
        assert!(matches!(tx.try_send(item), Err(TrySendError::Closed(_))));
    }
}
