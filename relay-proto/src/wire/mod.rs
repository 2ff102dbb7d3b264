//! Wire codecs for the relay protocol (PROTOCOL.md A.1, A.3, A.4 and our
//! extensions), and every name the core puts on the wire ([`ext`]).
//!
//! Everything here is plain data plus `encode`/`decode`. Encoders write the
//! exact bytes ion-sfu's Go relay writes (same key order, no whitespace), so
//! a captured Go message re-encodes byte for byte. Decoders are lenient in the
//! way Go's `encoding/json` is (unknown keys ignored, a missing or `null` key
//! takes its zero value) but never panic: every failure is a [`DecodeError`].

pub mod envelope;
pub mod ext;
pub mod signal;
pub mod track;

use std::fmt::Write as _;

use serde_json::{Map, Value};

pub use envelope::Envelope;
pub use ext::{
    EXTENSION_VERSION, Extension, FEATURE_FAST_SETUP, FEATURE_FIR, FEATURE_HEADER_EXTENSIONS,
    FEATURE_RTX, FEATURE_SENDER_REPORT, FEATURE_SIMULCAST, FEATURE_TRACK_REMOVE, FEATURES,
    OriginReport, SENDER_REPORT_EVENT, SIGNAL_LABEL, SIGNAL_STREAM_FAST, TRACK_EVENT,
    TRACK_REMOVE_EVENT, TrackRemove,
};
pub use signal::{
    Announcement, CandidateProtocol, CandidateType, DtlsFingerprint, DtlsParameters, DtlsRole,
    IceParameters, SctpCapabilities, Signal, SignalCandidate,
};
pub use track::{
    CodecParameters, Encodings, HeaderExtensionMap, LayerEncoding, RtcpFeedback, RtxEncoding,
    TrackExtensions, TrackInfo, TrackSignal,
};

/// Largest envelope a base (Go) peer reads: 65 535 bytes.
///
/// Go's signalling channel dies on a larger message (PROTOCOL.md A.3), so
/// nothing bigger may be sent to a peer that has not announced more.
pub const BASE_MAX_MESSAGE_SIZE: usize = 65_535;

/// Why bytes from the wire could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not JSON, or JSON of the wrong shape (wrong type, missing required key).
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// The kind of message being decoded (e.g. `"signal"`).
        what: &'static str,
        /// What was wrong, with the path of the offending key.
        detail: String,
    },
    /// Well-formed, but a value is out of its allowed range (e.g. an unknown
    /// candidate type, a number too large for its field, bad base64).
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// The kind of message being decoded (e.g. `"signal"`).
        what: &'static str,
        /// What was wrong, with the path of the offending key.
        detail: String,
    },
    /// The input is larger than the decoder accepts (checked before parsing,
    /// so an oversized input costs nothing).
    #[error("{what} too large: {len} bytes, limit {limit}")]
    TooLarge {
        /// The kind of message being decoded.
        what: &'static str,
        /// Length of the input.
        len: usize,
        /// The limit it exceeded.
        limit: usize,
    },
}

/// Rejects `bytes` longer than `limit` before any parsing.
fn check_size(what: &'static str, bytes: &[u8], limit: usize) -> Result<(), DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge {
            what,
            len: bytes.len(),
            limit,
        });
    }
    Ok(())
}

/// Parses `bytes` as JSON and requires a top-level object.
fn parse_object(what: &'static str, bytes: &[u8]) -> Result<Obj<'static>, DecodeError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed {
        what,
        detail: e.to_string(),
    })?;
    match value {
        Value::Object(map) => Ok(Obj {
            map: std::borrow::Cow::Owned(map),
            what,
            path: String::new(),
        }),
        other => Err(DecodeError::Malformed {
            what,
            detail: format!("expected a JSON object, got {}", kind(&other)),
        }),
    }
}

/// Name of a JSON value's type, for error messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a non-integer number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A string from the wire for an error message, cut short so a hostile peer
/// cannot make our logs huge.
fn shown(s: &str) -> String {
    const MAX_CHARS: usize = 40;
    match s.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{:?}...", &s[..cut]),
        None => format!("{s:?}"),
    }
}

/// A JSON object being decoded, with its path for error messages.
///
/// Accessors follow Go's `encoding/json`: a missing key and a `null` value
/// both mean "zero value"; a value of the wrong type is an error.
struct Obj<'a> {
    map: std::borrow::Cow<'a, Map<String, Value>>,
    what: &'static str,
    path: String,
}

impl<'a> Obj<'a> {
    /// Path of `key` inside this object, e.g. `iceCandidates[0].port`.
    fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn malformed(&self, key: &str, detail: impl std::fmt::Display) -> DecodeError {
        DecodeError::Malformed {
            what: self.what,
            detail: format!("{}: {detail}", self.key_path(key)),
        }
    }

    fn invalid(&self, key: &str, detail: impl std::fmt::Display) -> DecodeError {
        DecodeError::Invalid {
            what: self.what,
            detail: format!("{}: {detail}", self.key_path(key)),
        }
    }

    /// The value under `key`; `None` when missing or `null`.
    fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// A nested object; `None` when missing or `null`.
    fn object(&self, key: &str) -> Result<Option<Obj<'_>>, DecodeError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Obj {
                map: std::borrow::Cow::Borrowed(map),
                what: self.what,
                path: self.key_path(key),
            })),
            Some(other) => {
                Err(self.malformed(key, format_args!("expected an object, got {}", kind(other))))
            }
        }
    }

    /// A nested object that must be present.
    fn required_object(&self, key: &str) -> Result<Obj<'_>, DecodeError> {
        self.object(key)?
            .ok_or_else(|| self.malformed(key, "required object is missing"))
    }

    /// Elements of an array with their paths; empty when missing or `null`.
    fn array(&self, key: &str) -> Result<Vec<(String, &Value)>, DecodeError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => {
                let base = self.key_path(key);
                Ok(items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (format!("{base}[{i}]"), v))
                    .collect())
            }
            Some(other) => {
                Err(self.malformed(key, format_args!("expected an array, got {}", kind(other))))
            }
        }
    }

    /// An array of objects; `None` when missing or `null` (Go's nil slice).
    fn object_array(&self, key: &str) -> Result<Option<Vec<Obj<'_>>>, DecodeError> {
        if self.get(key).is_none() {
            return Ok(None);
        }
        let mut out = Vec::new();
        for (path, v) in self.array(key)? {
            match v {
                Value::Object(map) => out.push(Obj {
                    map: std::borrow::Cow::Borrowed(map),
                    what: self.what,
                    path,
                }),
                other => {
                    return Err(DecodeError::Malformed {
                        what: self.what,
                        detail: format!("{path}: expected an object, got {}", kind(other)),
                    });
                }
            }
        }
        Ok(Some(out))
    }

    /// An array of strings; empty when missing or `null`.
    fn string_array(&self, key: &str) -> Result<Vec<String>, DecodeError> {
        self.array(key)?
            .into_iter()
            .map(|(path, v)| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(DecodeError::Malformed {
                    what: self.what,
                    detail: format!("{path}: expected a string, got {}", kind(other)),
                }),
            })
            .collect()
    }

    /// A string; `""` when missing or `null`.
    fn string(&self, key: &str) -> Result<String, DecodeError> {
        match self.get(key) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => {
                Err(self.malformed(key, format_args!("expected a string, got {}", kind(other))))
            }
        }
    }

    /// A boolean; `false` when missing or `null`.
    fn boolean(&self, key: &str) -> Result<bool, DecodeError> {
        match self.get(key) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => {
                Err(self.malformed(key, format_args!("expected a boolean, got {}", kind(other))))
            }
        }
    }

    /// An unsigned integer that must fit `T`; `0` when missing or `null`.
    ///
    /// Goes through `u64` only (never `f64`), so every value is exact.
    fn uint<T: TryFrom<u64> + Default>(&self, key: &str) -> Result<T, DecodeError> {
        match self.get(key) {
            None => Ok(T::default()),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(u) => T::try_from(u).map_err(|_| {
                    self.invalid(
                        key,
                        format_args!("{u} is out of range for {}", std::any::type_name::<T>()),
                    )
                }),
                None if n.is_f64() => {
                    Err(self.malformed(key, format_args!("expected an integer, got {n}")))
                }
                None => Err(self.invalid(key, format_args!("{n} is negative"))),
            },
            Some(other) => Err(self.malformed(
                key,
                format_args!("expected an integer, got {}", kind(other)),
            )),
        }
    }

    /// An unsigned integer that must be present (and not `null`).
    fn required_uint<T: TryFrom<u64> + Default>(&self, key: &str) -> Result<T, DecodeError> {
        if self.get(key).is_none() {
            return Err(self.malformed(key, "required integer is missing"));
        }
        self.uint(key)
    }

    /// `ssrc`: required, a u32, not 0.
    fn required_ssrc(&self) -> Result<u32, DecodeError> {
        match self.required_uint::<u32>("ssrc")? {
            0 => Err(self.invalid("ssrc", "SSRC 0 names no stream")),
            s => Ok(s),
        }
    }

    /// Standard base64 (with padding) decoded; `None` when missing or `null`.
    fn base64(&self, key: &str) -> Result<Option<bytes::Bytes>, DecodeError> {
        use base64::Engine as _;
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => base64::engine::general_purpose::STANDARD
                .decode(s)
                .map(|v| Some(v.into()))
                .map_err(|e| self.invalid(key, format_args!("bad base64: {e}"))),
            Some(other) => Err(self.malformed(
                key,
                format_args!("expected a base64 string, got {}", kind(other)),
            )),
        }
    }
}

/// Appends `s` as a JSON string literal, escaped the way `serde_json` does:
/// `"` and `\`, short forms for `\b \f \n \r \t`, `\u00XX` for other
/// control characters, everything else verbatim. Go decodes all of these.
fn push_json_str(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let short = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            '\u{08}' => "\\b",
            '\u{0c}' => "\\f",
            c if (c as u32) < 0x20 => "",
            _ => continue,
        };
        // `c` is ASCII here, so `i` and `i + 1` are char boundaries.
        out.push_str(&s[start..i]);
        if short.is_empty() {
            let b = c as u32;
            out.push_str("\\u00");
            out.push(char::from(HEX[(b >> 4) as usize & 0xf]));
            out.push(char::from(HEX[b as usize & 0xf]));
        } else {
            out.push_str(short);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Exact length [`push_json_str`] appends for `s`, quotes included.
fn json_str_len(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0x00..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

/// Appends an unsigned integer in decimal.
fn push_uint(out: &mut String, n: impl Into<u64>) {
    // Writing to a `String` cannot fail.
    let _ = write!(out, "{}", n.into());
}

/// Number of decimal digits of `n`.
fn decimal_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |l| l as usize + 1)
}

/// Appends standard base64 with padding, quoted.
fn push_base64(out: &mut String, data: &[u8]) {
    use base64::Engine as _;
    out.push('"');
    base64::engine::general_purpose::STANDARD.encode_string(data, out);
    out.push('"');
}

/// Length of standard padded base64 for `n` input bytes: `4 * ceil(n / 3)`.
fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_str_matches_serde_json_and_its_length() {
        for s in [
            "",
            "plain",
            "quote\" back\\slash",
            "\u{0}\u{1}\u{8}\u{9}\u{a}\u{b}\u{c}\u{d}\u{1f}\u{7f}",
            "ünï¢ødé 🎉 \u{2028}",
        ] {
            let mut ours = String::new();
            push_json_str(&mut ours, s);
            assert_eq!(ours, serde_json::to_string(s).unwrap(), "for {s:?}");
            assert_eq!(ours.len(), json_str_len(s), "for {s:?}");
        }
    }

    #[test]
    fn decimal_len_counts_digits() {
        for n in [0, 9, 10, 99, 100, u64::MAX / 10, u64::MAX] {
            assert_eq!(decimal_len(n), n.to_string().len(), "for {n}");
        }
    }

    #[test]
    fn base64_len_matches_encoder() {
        for n in 0..10 {
            let mut s = String::new();
            push_base64(&mut s, &vec![0xa5; n]);
            assert_eq!(s.len(), base64_len(n) + 2, "for {n}");
        }
    }

    #[test]
    fn shown_truncates_long_strings() {
        assert_eq!(shown("ab"), "\"ab\"");
        let long = "é".repeat(100);
        assert!(shown(&long).len() < 100);
        assert!(shown(&long).ends_with("..."));
    }

    #[test]
    fn uint_rejects_out_of_range_floats_and_negatives() {
        let obj = parse_object("t", br#"{"a":70000,"b":1.5,"c":-1,"d":"1","e":null}"#).unwrap();
        assert!(matches!(
            obj.uint::<u16>("a"),
            Err(DecodeError::Invalid { .. })
        ));
        assert!(matches!(
            obj.uint::<u16>("b"),
            Err(DecodeError::Malformed { .. })
        ));
        assert!(matches!(
            obj.uint::<u16>("c"),
            Err(DecodeError::Invalid { .. })
        ));
        assert!(matches!(
            obj.uint::<u16>("d"),
            Err(DecodeError::Malformed { .. })
        ));
        assert_eq!(obj.uint::<u16>("e").unwrap(), 0);
        assert_eq!(obj.uint::<u16>("missing").unwrap(), 0);
        assert_eq!(obj.uint::<u32>("a").unwrap(), 70000);
    }
}
