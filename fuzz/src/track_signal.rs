//! Track-signal parsing: [`TrackSignal::decode`] on arbitrary bytes.
//!
//! Checks: decoding never panics; an accepted track signal re-encodes to
//! bytes that decode to the same value and re-encode identically (when the
//! canonical form still fits [`TRACK_SIGNAL_MAX_SIZE`]: keys the input left
//! out are written back with their zero values, so it can grow); and inside
//! an envelope (as the `ion_relay_request` payload it travels in) it survives
//! the envelope's round trip too.

use bytes::Bytes;
use relay_proto::wire::track::TRACK_SIGNAL_MAX_SIZE;
use relay_proto::wire::{Envelope, TrackSignal};

/// The fuzz body.
pub fn body(data: &[u8]) {
    let Ok(track) = TrackSignal::decode(data) else {
        return;
    };
    let encoded = track.encode();
    if encoded.len() > TRACK_SIGNAL_MAX_SIZE {
        return;
    }
    let again = TrackSignal::decode(&encoded)
        .unwrap_or_else(|e| panic!("re-encoded track signal does not decode: {e}\n{track:?}"));
    assert_eq!(again, track, "track signal changed in a round trip");
    assert_eq!(again.encode(), encoded, "re-encoding is not stable");

    let request = Envelope {
        id: u64::MAX,
        reply: false,
        event: "ion_relay_request".into(),
        payload: Some(Bytes::from(encoded)),
    };
    let carried = Envelope::decode(&request.encode()).expect("the request envelope decodes");
    let payload = carried.payload.expect("the payload survives");
    assert_eq!(
        TrackSignal::decode(&payload).ok().as_ref(),
        Some(&track),
        "the track signal changed inside its envelope"
    );
}
