//! Bookkeeping of requests: ours awaiting replies, and the remote's awaiting
//! ours. A sub-machine with its own timeout, drained by the peer.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Instant;

/// Requests this side sent that await a reply. Generic over the time type
/// only so that its tests need no clock.
#[derive(Debug)]
pub(crate) struct Outbound<T = Instant> {
    /// id -> deadline.
    pending: HashMap<u64, T>,
    /// Ordered deadlines, so the next one is found without a scan.
    deadlines: BTreeSet<(T, u64)>,
    rng: fastrand::Rng,
}

impl<T: Ord + Copy> Outbound<T> {
    pub(crate) fn new(seed: u64) -> Self {
        Outbound {
            pending: HashMap::new(),
            deadlines: BTreeSet::new(),
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    /// A fresh envelope id, distinct from every pending one.
    pub(crate) fn next_id(&mut self) -> u64 {
        loop {
            let id = self.rng.u64(..);
            if !self.pending.contains_key(&id) {
                return id;
            }
        }
    }

    pub(crate) fn insert(&mut self, id: u64, deadline: T) {
        self.pending.insert(id, deadline);
        self.deadlines.insert((deadline, id));
    }

    /// Removes a pending request; `false` when the id is not pending.
    pub(crate) fn complete(&mut self, id: u64) -> bool {
        match self.pending.remove(&id) {
            Some(deadline) => {
                self.deadlines.remove(&(deadline, id));
                true
            }
            None => false,
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<T> {
        self.deadlines.first().map(|(t, _)| *t)
    }

    /// Removes and returns the requests whose deadline is at or before `now`.
    pub(crate) fn handle_timeout(&mut self, now: T) -> Vec<u64> {
        let mut expired = Vec::new();
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            self.pending.remove(&id);
            expired.push(id);
        }
        expired
    }

    /// Removes every pending request (the peer closed).
    pub(crate) fn drain(&mut self) -> Vec<u64> {
        self.deadlines.clear();
        let mut ids: Vec<u64> = self.pending.drain().map(|(id, _)| id).collect();
        ids.sort_unstable();
        ids
    }
}

/// The remote's requests surfaced to the application and not yet answered.
///
/// Bounded: past `cap` the oldest is forgotten, so a peer that floods
/// requests the application never answers cannot grow memory.
#[derive(Debug)]
pub(crate) struct Unanswered {
    events: HashMap<u64, String>,
    /// Arrival order; may hold ids already answered (removed lazily).
    order: VecDeque<u64>,
    cap: usize,
}

impl Unanswered {
    pub(crate) fn new(cap: usize) -> Self {
        Unanswered {
            events: HashMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// Remembers an inbound request; returns how many older ones were
    /// forgotten to make room.
    pub(crate) fn insert(&mut self, id: u64, event: String) -> u64 {
        let mut evicted = 0;
        if self.events.insert(id, event).is_none() {
            self.order.push_back(id);
        }
        while self.events.len() > self.cap {
            match self.order.pop_front() {
                Some(old) if old != id => {
                    if self.events.remove(&old).is_some() {
                        evicted += 1;
                    }
                }
                Some(old) => self.order.push_back(old),
                None => break,
            }
        }
        // Answered ids linger in `order`; compact once they dominate.
        if self.order.len() > 2 * self.events.len() + 64 {
            let events = &self.events;
            self.order.retain(|id| events.contains_key(id));
        }
        evicted
    }

    /// The event name of an unanswered request, forgetting it.
    pub(crate) fn take(&mut self, id: u64) -> Option<String> {
        self.events.remove(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_in_deadline_order() {
        // Milliseconds stand in for instants.
        let mut o: Outbound<u64> = Outbound::new(7);
        let a = o.next_id();
        o.insert(a, 20);
        let b = o.next_id();
        o.insert(b, 10);
        assert_eq!(o.poll_timeout(), Some(10));
        assert_eq!(o.handle_timeout(15), vec![b]);
        assert!(o.complete(a));
        assert!(!o.complete(a));
        assert_eq!(o.poll_timeout(), None);
    }

    #[test]
    fn unanswered_is_bounded_and_compacts() {
        let mut u = Unanswered::new(3);
        let mut evicted = 0;
        for id in 0..10 {
            evicted += u.insert(id, format!("e{id}"));
        }
        assert_eq!(evicted, 7);
        assert_eq!(u.take(9).as_deref(), Some("e9"));
        assert_eq!(u.take(0), None);
        for id in 100..10_000 {
            u.insert(id, String::new());
            u.take(id);
        }
        assert!(u.order.len() <= 2 * u.events.len() + 65);
    }
}
