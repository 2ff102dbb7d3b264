//! Envelope parsing: [`Envelope::decode`] on arbitrary bytes.
//!
//! Checks: decoding never panics; an accepted envelope re-encodes to bytes
//! that decode to the same envelope and re-encode identically, and
//! [`Envelope::encoded_len`] is the exact length of [`Envelope::encode`]
//! (so an input already in canonical form, as everything Go sends is,
//! re-encodes byte for byte).

use relay_proto::wire::Envelope;

/// The fuzz body.
pub fn body(data: &[u8]) {
    let Ok(envelope) = Envelope::decode(data) else {
        return;
    };
    let encoded = envelope.encode();
    assert_eq!(
        envelope.encoded_len(),
        encoded.len(),
        "encoded_len is not exact for {envelope:?}"
    );
    let again = Envelope::decode(&encoded)
        .unwrap_or_else(|e| panic!("re-encoded envelope does not decode: {e}\n{envelope:?}"));
    assert_eq!(again, envelope, "envelope changed in a round trip");
    assert_eq!(again.encode(), encoded, "re-encoding is not stable");
}
