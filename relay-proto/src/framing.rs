//! Splitting and joining envelopes larger than one data-channel message.
//!
//! str0m's direct API sends at most 64 KiB per SCTP message. Between two of
//! our peers (both announce PROTOCOL.md B.1) an envelope may be larger, up to
//! the receiver's announced `maxMessageSize`; it then crosses as a run of
//! fragments on the signalling channel (see `docs/protocol.md`):
//!
//! - a whole envelope is sent as is; it is JSON, so its first byte is `{`;
//! - a larger one is cut into pieces of at most [`FRAGMENT_PAYLOAD`] bytes,
//!   each sent as one message of `0x01` + piece, except the last one, sent as
//!   `0x02` + piece.
//!
//! The channel is ordered and reliable, so no sequence numbers are needed.
//! A base (Go) peer never sees a fragment: toward it the 65,535-byte limit
//! holds and larger envelopes are refused before they are queued.

/// Tag of a fragment that more fragments follow.
pub(crate) const TAG_MORE: u8 = 0x01;
/// Tag of the last fragment of an envelope.
pub(crate) const TAG_LAST: u8 = 0x02;
/// Bytes of envelope per fragment (plus one tag byte: under 64 KiB).
pub(crate) const FRAGMENT_PAYLOAD: usize = 60 * 1024;
/// Envelopes up to this size go whole (a base peer's read limit).
pub(crate) const WHOLE_LIMIT: usize = 65_535;

/// Cuts an encoded envelope into the messages that carry it.
pub(crate) fn split(envelope: Vec<u8>) -> Vec<Vec<u8>> {
    if envelope.len() <= WHOLE_LIMIT {
        return vec![envelope];
    }
    let pieces = envelope.len().div_ceil(FRAGMENT_PAYLOAD);
    envelope
        .chunks(FRAGMENT_PAYLOAD)
        .enumerate()
        .map(|(i, piece)| {
            let mut msg = Vec::with_capacity(piece.len() + 1);
            msg.push(if i + 1 == pieces { TAG_LAST } else { TAG_MORE });
            msg.extend_from_slice(piece);
            msg
        })
        .collect()
}

/// What one inbound message amounts to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Joined {
    /// A whole envelope, ready to decode.
    Envelope(Vec<u8>),
    /// A fragment was stored; more must come.
    Pending,
    /// The message (or the run it ended) was dropped: over the size limit,
    /// or a fragment from a peer that did not announce fragments.
    Dropped,
}

/// Joins fragments back into envelopes, bounded by our announced limit.
#[derive(Debug, Default)]
pub(crate) struct Joiner {
    buf: Vec<u8>,
    /// The current run went over the limit; skip to its last fragment.
    overflowed: bool,
    /// Runs cut short by a whole envelope (a broken sender).
    pub(crate) broken_runs: u64,
}

impl Joiner {
    /// Feeds one message. `fragments_allowed` is true only when the remote
    /// announced our extensions; `limit` is our own maximum envelope size.
    pub(crate) fn push(&mut self, msg: &[u8], fragments_allowed: bool, limit: usize) -> Joined {
        let (tag, piece) = match msg.split_first() {
            Some((&tag, piece)) if tag == TAG_MORE || tag == TAG_LAST => (tag, piece),
            _ => {
                // A whole envelope. A run left unfinished is broken: it is
                // dropped (and counted), the whole envelope is kept.
                if !self.buf.is_empty() || self.overflowed {
                    self.broken_runs += 1;
                }
                self.reset();
                return Joined::Envelope(msg.to_vec());
            }
        };
        if !fragments_allowed {
            return Joined::Dropped;
        }
        if !self.overflowed && self.buf.len() + piece.len() <= limit {
            self.buf.extend_from_slice(piece);
        } else {
            self.overflowed = true;
            self.buf = Vec::new();
        }
        if tag == TAG_MORE {
            return Joined::Pending;
        }
        let overflowed = self.overflowed;
        let whole = std::mem::take(&mut self.buf);
        self.reset();
        if overflowed {
            Joined::Dropped
        } else {
            Joined::Envelope(whole)
        }
    }

    fn reset(&mut self) {
        self.buf = Vec::new();
        self.overflowed = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_envelopes_go_whole() {
        let env = b"{\"id\":1}".to_vec();
        assert_eq!(split(env.clone()), vec![env]);
        let edge = vec![b'{'; WHOLE_LIMIT];
        assert_eq!(split(edge).len(), 1);
    }

    #[test]
    fn split_then_join_round_trips() {
        let mut env = vec![b'{'];
        env.extend((0..300_000u32).map(|i| b'a' + (i % 26) as u8));
        let parts = split(env.clone());
        assert_eq!(parts.len(), env.len().div_ceil(FRAGMENT_PAYLOAD));
        assert!(parts.iter().all(|p| p.len() <= 64 * 1024));
        let mut j = Joiner::default();
        let mut out = None;
        for p in &parts {
            match j.push(p, true, 1 << 20) {
                Joined::Envelope(e) => out = Some(e),
                Joined::Pending => {}
                Joined::Dropped => panic!("dropped"),
            }
        }
        assert_eq!(out, Some(env));
    }

    #[test]
    fn oversized_run_is_dropped_and_next_envelope_survives() {
        let env = vec![b'x'; 200_000];
        let parts = split(env);
        let mut j = Joiner::default();
        let results: Vec<_> = parts.iter().map(|p| j.push(p, true, 100_000)).collect();
        assert_eq!(results.last(), Some(&Joined::Dropped));
        assert_eq!(
            j.push(b"{}", true, 100_000),
            Joined::Envelope(b"{}".to_vec())
        );
    }

    #[test]
    fn fragments_from_a_base_peer_are_dropped() {
        let mut j = Joiner::default();
        assert_eq!(
            j.push(&[TAG_LAST, b'{', b'}'], false, 1 << 20),
            Joined::Dropped
        );
    }
}
