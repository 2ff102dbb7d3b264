//! Offer/answer parsing: [`Signal::decode`], the fingerprint parser, and the
//! peer's own handling of an offer ([`Peer::accept_offer`]) and an answer
//! ([`Peer::accept_answer`]).
//!
//! Checks: decoding never panics; an accepted signal re-encodes to bytes that
//! decode to the same signal and re-encode identically (when the canonical
//! form still fits [`SIGNAL_MAX_SIZE`]: zero-valued keys the input left out
//! are written back, so a 64 KiB input can grow past the cap); a parsed
//! fingerprint round-trips through its bytes; a peer refuses every input
//! the decoder refuses, as [`Error::BadSignal`], and the answer it makes
//! decodes and announces extensions only when the offer did.

use std::time::{Duration, Instant};

use relay_proto::wire::signal::SIGNAL_MAX_SIZE;
use relay_proto::wire::{DtlsFingerprint, Signal};
use relay_proto::{Error, Peer, PeerMeta};
use relay_tests::{Side, config_for};

/// The fuzz body.
pub fn body(data: &[u8]) {
    let decoded = Signal::decode(data);
    if let Ok(signal) = &decoded {
        check_round_trip(signal);
        for fp in signal.dtls_parameters.fingerprints.iter().flatten() {
            check_fingerprint(fp);
        }
    }
    // Decoding alone is cheap; a peer is only built for inputs that parse or
    // look like JSON objects (the rest cannot reach past the decoder).
    if decoded.is_ok() || data.first() == Some(&b'{') {
        check_answerer(data, decoded.as_ref().ok());
        check_offerer(data, decoded.as_ref().ok());
    }
}

fn check_round_trip(signal: &Signal) {
    let encoded = signal.encode();
    if encoded.len() > SIGNAL_MAX_SIZE {
        return;
    }
    let again = Signal::decode(&encoded)
        .unwrap_or_else(|e| panic!("re-encoded signal does not decode: {e}\n{signal:?}"));
    assert_eq!(&again, signal, "signal changed in a round trip");
    assert_eq!(again.encode(), encoded, "re-encoding is not stable");
}

fn check_fingerprint(fp: &DtlsFingerprint) {
    if let Ok(bytes) = fp.to_bytes() {
        assert!(!bytes.is_empty(), "an accepted fingerprint has bytes");
        let canonical = DtlsFingerprint::from_bytes(&fp.algorithm, &bytes);
        assert!(
            canonical.value.eq_ignore_ascii_case(&fp.value),
            "fingerprint {:?} re-encodes as {:?}",
            fp.value,
            canonical.value
        );
        assert_eq!(canonical.to_bytes().ok(), Some(bytes));
    }
}

fn new_peer(side: Side, now: Instant) -> Peer {
    Peer::new(PeerMeta::new("fuzz", "fuzz"), config_for(side), now).expect("a valid config")
}

fn check_answerer(data: &[u8], decoded: Option<&Signal>) {
    let now = Instant::now();
    let mut peer = new_peer(Side::B, now);
    match peer.accept_offer(now, data) {
        Ok(answer) => {
            let offer = decoded.expect("a peer accepted an offer the decoder refuses");
            let answer = Signal::decode(&answer).expect("our answer decodes");
            assert_eq!(
                answer.relay.is_some(),
                offer.relay.is_some(),
                "the answer announces extensions exactly when the offer does"
            );
            assert!(
                !answer.ice_candidates.is_empty(),
                "the answer has candidates"
            );
            drain(&mut peer, now);
        }
        // A fingerprint that is not hex is a `BadSignal` too, so only one
        // direction holds.
        Err(Error::BadSignal(_)) => {}
        Err(e) => assert!(
            decoded.is_some(),
            "the decoder refuses what the peer took: {e}"
        ),
    }
}

fn check_offerer(data: &[u8], decoded: Option<&Signal>) {
    let now = Instant::now();
    let mut peer = new_peer(Side::A, now);
    let _offer = peer.create_offer(now).expect("an offer");
    match peer.accept_answer(now, data) {
        Ok(()) => {
            assert!(
                decoded.is_some(),
                "a peer accepted an answer the decoder refuses"
            );
            drain(&mut peer, now);
        }
        // A fingerprint that is not hex is a `BadSignal` too, so only one
        // direction holds.
        Err(Error::BadSignal(_)) => {}
        Err(e) => assert!(
            decoded.is_some(),
            "the decoder refuses what the peer took: {e}"
        ),
    }
}

/// Pulls the peer's first outputs and fires its first timer, so candidates
/// from the signal reach str0m's ICE agent (and its pairing code).
fn drain(peer: &mut Peer, now: Instant) {
    while peer.poll_transmit().is_some() {}
    while peer.poll_event().is_some() {}
    let at = peer
        .poll_timeout()
        .unwrap_or(now + Duration::from_millis(50));
    assert!(at >= now, "the first deadline is in the past");
    peer.handle_timeout(at);
    while peer.poll_transmit().is_some() {}
    while peer.poll_event().is_some() {}
}
