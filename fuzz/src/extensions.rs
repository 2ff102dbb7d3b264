//! The extension messages (`relay_proto::wire::ext`): arbitrary bytes as the
//! payload of each extension event.
//!
//! Checks: decoding never panics, whatever the event; an accepted message
//! re-encodes to bytes that decode to the same message and re-encode
//! identically; an event that is no extension's is never taken for one.
//! (A peer fed such payloads inside envelopes is `pair_ops`' business: its
//! raw signalling messages reach the same decoders.)

use relay_proto::wire::{
    Extension, OriginReport, SENDER_REPORT_EVENT, TRACK_REMOVE_EVENT, TrackRemove,
};

/// The fuzz body. The first byte picks the event; the rest is the payload.
pub fn body(data: &[u8]) {
    let Some((&pick, payload)) = data.split_first() else {
        return;
    };
    let event = match pick % 3 {
        0 => TRACK_REMOVE_EVENT,
        1 => SENDER_REPORT_EVENT,
        _ => "not.an.extension",
    };
    let decoded = Extension::decode(event, Some(payload));
    if event == "not.an.extension" {
        assert!(
            decoded.is_none(),
            "an unknown event decoded as an extension"
        );
        return;
    }
    let Some(Ok(message)) = decoded else {
        return;
    };
    assert_eq!(message.event(), event, "decoded under another event");
    let encoded = message.encode();
    let again = Extension::decode(event, Some(&encoded))
        .expect("an extension event")
        .unwrap_or_else(|e| panic!("re-encoded {message:?} does not decode: {e}"));
    assert_eq!(again, message, "changed in a round trip");
    assert_eq!(again.encode(), encoded, "re-encoding is not stable");
    // The typed codecs agree with the dispatch.
    match message {
        Extension::TrackRemove(m) => assert_eq!(TrackRemove::decode(&encoded).ok(), Some(m)),
        Extension::OriginReport(m) => assert_eq!(OriginReport::decode(&encoded).ok(), Some(m)),
        _ => {}
    }
}
