//! The JSON envelope of every signalling-channel message (PROTOCOL.md A.3).

use std::borrow::Cow;

use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;

use super::{
    DecodeError, base64_len, decimal_len, json_str_len, push_base64, push_json_str, push_uint,
};

const WHAT: &str = "envelope";

/// One signalling-channel message:
/// `{"id":u64,"reply":bool,"event":string,"payload":base64|null}`.
///
/// A request and an emit look the same; a reply copies the request's `id`
/// and `event` and sets `reply`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Request id; a full `u64` (Go picks random ones above 2^63).
    pub id: u64,
    /// Whether this answers the request with the same `id`.
    pub reply: bool,
    /// Event name, e.g. `ion_relay_request`.
    pub event: String,
    /// Opaque payload; `None` is JSON `null`, distinct from an empty payload.
    pub payload: Option<Bytes>,
}

/// The envelope as parsed; the payload stays borrowed (when unescaped) until
/// it is base64-decoded.
#[derive(Deserialize)]
struct RawEnvelope<'a> {
    id: u64,
    #[serde(default)]
    reply: Option<bool>,
    event: String,
    #[serde(default, borrow)]
    payload: Option<RawText<'a>>,
}

#[derive(Deserialize)]
struct RawText<'a>(#[serde(borrow)] Cow<'a, str>);

impl Envelope {
    /// Encodes as Go does: keys `id`, `reply`, `event`, `payload` in that
    /// order, no whitespace, payload as standard padded base64 or `null`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::with_capacity(self.encoded_len());
        out.push_str("{\"id\":");
        push_uint(&mut out, self.id);
        out.push_str(if self.reply {
            ",\"reply\":true"
        } else {
            ",\"reply\":false"
        });
        out.push_str(",\"event\":");
        push_json_str(&mut out, &self.event);
        out.push_str(",\"payload\":");
        match &self.payload {
            None => out.push_str("null"),
            Some(p) => push_base64(&mut out, p),
        }
        out.push('}');
        out.into_bytes()
    }

    /// Exact length of [`Envelope::encode`]'s output, computed without
    /// encoding, so a sender can check a size limit (e.g.
    /// [`BASE_MAX_MESSAGE_SIZE`](super::BASE_MAX_MESSAGE_SIZE)) cheaply.
    pub fn encoded_len(&self) -> usize {
        const FIXED: usize = r#"{"id":,"reply":,"event":,"payload":}"#.len();
        FIXED
            + decimal_len(self.id)
            + if self.reply { 4 } else { 5 }
            + json_str_len(&self.event)
            + match &self.payload {
                None => 4,
                Some(p) => base64_len(p.len()) + 2,
            }
    }

    /// Decodes one envelope.
    ///
    /// `id` (exact up to `u64::MAX`) and `event` are required; unknown keys
    /// are ignored; a missing `reply` is `false`; a missing or `null`
    /// `payload` is `None`. Bad base64 is [`DecodeError::Invalid`]. There is
    /// no size limit here: callers enforce the one that applies to the peer.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
        // serde's derived struct decoder would also take a JSON array.
        let first = bytes
            .iter()
            .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
        if first != Some(&b'{') {
            // Let serde_json say what is wrong when it is not JSON at all.
            let detail = match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Err(e) => e.to_string(),
                Ok(_) => "expected a JSON object".to_owned(),
            };
            return Err(DecodeError::Malformed { what: WHAT, detail });
        }
        let raw: RawEnvelope<'_> =
            serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed {
                what: WHAT,
                detail: e.to_string(),
            })?;
        let payload = match raw.payload {
            None => None,
            Some(RawText(text)) => Some(Bytes::from(
                base64::engine::general_purpose::STANDARD
                    .decode(text.as_bytes())
                    .map_err(|e| DecodeError::Invalid {
                        what: WHAT,
                        detail: format!("payload: bad base64: {e}"),
                    })?,
            )),
        };
        Ok(Envelope {
            id: raw.id,
            reply: raw.reply.unwrap_or(false),
            event: raw.event,
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_len_matches_for_edge_cases() {
        for (id, reply, event, payload) in [
            (0, false, "", None),
            (u64::MAX, true, "\u{1}\"\\é", Some(&b""[..])),
            (10, false, "x", Some(&b"a"[..])),
            (99, true, "y", Some(&b"ab"[..])),
            (100, true, "z", Some(&b"abc"[..])),
        ] {
            let e = Envelope {
                id,
                reply,
                event: event.into(),
                payload: payload.map(Bytes::copy_from_slice),
            };
            assert_eq!(e.encoded_len(), e.encode().len(), "{e:?}");
            assert_eq!(Envelope::decode(&e.encode()).unwrap(), e);
        }
    }

    #[test]
    fn rejects_arrays_and_scalars() {
        for input in [
            &b"[1,false,\"e\",null]"[..],
            b"  42",
            b"",
            b"null",
            b"\"{\"",
        ] {
            assert!(
                matches!(Envelope::decode(input), Err(DecodeError::Malformed { .. })),
                "{:?} accepted",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn escaped_payload_is_decoded() {
        // JSON allows `\/` and `\u` escapes inside the base64 string.
        let e = Envelope::decode(br#"{"id":1,"event":"e","payload":"YW\u0045\/"}"#).unwrap();
        assert_eq!(e.payload.as_deref(), Some(&[0x61, 0x61, 0x3f][..]));
    }

    #[test]
    fn required_keys() {
        assert!(Envelope::decode(br#"{"event":"e"}"#).is_err());
        assert!(Envelope::decode(br#"{"id":1}"#).is_err());
        assert!(Envelope::decode(br#"{"id":-1,"event":"e"}"#).is_err());
        assert!(Envelope::decode(br#"{"id":1.0,"event":"e"}"#).is_err());
        assert!(Envelope::decode(br#"{"id":18446744073709551616,"event":"e"}"#).is_err());
    }
}
