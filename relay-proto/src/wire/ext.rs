//! Names on the wire and the extension messages (PROTOCOL.md A.3, A.4 and
//! part B; exact forms in `docs/protocol.md`).
//!
//! Every event name, feature name and label the core puts on the wire is a
//! constant here, and every extension message is a typed codec beside the
//! base ones: to add a message, add its constant and its struct here, with
//! `encode`/`decode`, a round-trip property test and a byte-exact wire test
//! (`tests/tests/wire.rs`), and its fuzz body (`fuzz/src/extensions.rs`).

use super::{DecodeError, check_size, parse_object, push_uint};

/// Label of the signalling data channel (PROTOCOL.md A.3).
pub const SIGNAL_LABEL: &str = "ion_sfu_relay_signaler";

/// Event name of a track signal (PROTOCOL.md A.4).
pub const TRACK_EVENT: &str = "ion_relay_request";

/// Version of our extension announcement (PROTOCOL.md B.1).
pub const EXTENSION_VERSION: u32 = 1;

/// Feature: SCTP starts from INIT chunks exchanged in offer and answer, and
/// the signalling channel is pre-negotiated on a fixed stream (no DCEP).
pub const FEATURE_FAST_SETUP: &str = "fast-setup";
/// Feature: retransmission on the relay leg. Tracks are remapped onto leg
/// payload types that have resend types, and get an RTX SSRC.
pub const FEATURE_RTX: &str = "rtx";
/// Feature: the origin's header extensions cross with their values.
pub const FEATURE_HEADER_EXTENSIONS: &str = "header-extensions";
/// Feature: tracks with several simulcast layers.
pub const FEATURE_SIMULCAST: &str = "simulcast";
/// Feature: the remote learns at once that a track was removed
/// ([`TrackRemove`]).
pub const FEATURE_TRACK_REMOVE: &str = "track-remove";
/// Feature: the origin's sender report travels in band, for exact lip sync
/// ([`OriginReport`]).
pub const FEATURE_SENDER_REPORT: &str = "sender-report";
/// Feature: keyframe requests may be FIR, not only PLI.
pub const FEATURE_FIR: &str = "fir";

/// Extension features this build implements, announced in offer and
/// answer.
pub const FEATURES: &[&str] = &[
    FEATURE_FAST_SETUP,
    FEATURE_RTX,
    FEATURE_HEADER_EXTENSIONS,
    FEATURE_SIMULCAST,
    FEATURE_TRACK_REMOVE,
    FEATURE_SENDER_REPORT,
    FEATURE_FIR,
];

/// Event name of the track-removal emit ([`TrackRemove`]).
pub const TRACK_REMOVE_EVENT: &str = "relay.track.remove";
/// Event name of the in-band origin sender report ([`OriginReport`]).
pub const SENDER_REPORT_EVENT: &str = "relay.sender-report";

/// SCTP stream of the signalling channel with fast setup.
pub const SIGNAL_STREAM_FAST: u16 = 0;

/// Largest extension payload the decoders accept. A real one is under 100
/// bytes; the cap bounds the work a hostile peer can cause.
pub const EXTENSION_MAX_SIZE: usize = 1024;

/// Payload of a [`TRACK_REMOVE_EVENT`] emit: `{"ssrc":<u32>}`, the first
/// SSRC of the removed track on the relay leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrackRemove {
    /// The track's (first layer's) SSRC.
    pub ssrc: u32,
}

impl TrackRemove {
    /// `{"ssrc":N}`, no whitespace.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::with_capacity(24);
        out.push_str("{\"ssrc\":");
        push_uint(&mut out, self.ssrc);
        out.push('}');
        out.into_bytes()
    }

    /// Decodes a removal. `ssrc` is required and must be a non-zero u32;
    /// unknown keys are ignored.
    pub fn decode(bytes: &[u8]) -> Result<TrackRemove, DecodeError> {
        const WHAT: &str = "track removal";
        check_size(WHAT, bytes, EXTENSION_MAX_SIZE)?;
        let o = parse_object(WHAT, bytes)?;
        Ok(TrackRemove {
            ssrc: o.required_ssrc()?,
        })
    }
}

/// Payload of a [`SENDER_REPORT_EVENT`] emit:
/// `{"ssrc":<u32>,"ntp":<u64>,"rtp":<u32>}`: the origin's own sender report
/// for the track whose (first layer's) SSRC is `ssrc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OriginReport {
    /// The track's (first layer's) SSRC on the relay leg.
    pub ssrc: u32,
    /// The origin's NTP time, 32.32 fixed point.
    pub ntp: u64,
    /// The track's RTP timestamp at that instant.
    pub rtp: u32,
}

impl OriginReport {
    /// `{"ssrc":S,"ntp":N,"rtp":R}`, in that order, no whitespace.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::with_capacity(64);
        out.push_str("{\"ssrc\":");
        push_uint(&mut out, self.ssrc);
        out.push_str(",\"ntp\":");
        push_uint(&mut out, self.ntp);
        out.push_str(",\"rtp\":");
        push_uint(&mut out, self.rtp);
        out.push('}');
        out.into_bytes()
    }

    /// Decodes a report. All three keys are required (a report without its
    /// time is useless); unknown keys are ignored.
    pub fn decode(bytes: &[u8]) -> Result<OriginReport, DecodeError> {
        const WHAT: &str = "origin sender report";
        check_size(WHAT, bytes, EXTENSION_MAX_SIZE)?;
        let o = parse_object(WHAT, bytes)?;
        Ok(OriginReport {
            ssrc: o.required_ssrc()?,
            ntp: o.required_uint("ntp")?,
            rtp: o.required_uint("rtp")?,
        })
    }
}

/// An extension message recognised by its event name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Extension {
    /// [`TRACK_REMOVE_EVENT`].
    TrackRemove(TrackRemove),
    /// [`SENDER_REPORT_EVENT`].
    OriginReport(OriginReport),
}

impl Extension {
    /// The message under `event`: `None` when the event is not an
    /// extension's, else the decoded payload or why it does not decode.
    pub fn decode(event: &str, payload: Option<&[u8]>) -> Option<Result<Extension, DecodeError>> {
        let decode = |what: &'static str| {
            payload.ok_or(DecodeError::Malformed {
                what,
                detail: "payload is null".into(),
            })
        };
        match event {
            TRACK_REMOVE_EVENT => Some(
                decode("track removal")
                    .and_then(TrackRemove::decode)
                    .map(Extension::TrackRemove),
            ),
            SENDER_REPORT_EVENT => Some(
                decode("origin sender report")
                    .and_then(OriginReport::decode)
                    .map(Extension::OriginReport),
            ),
            _ => None,
        }
    }

    /// Its event name.
    pub fn event(&self) -> &'static str {
        match self {
            Extension::TrackRemove(_) => TRACK_REMOVE_EVENT,
            Extension::OriginReport(_) => SENDER_REPORT_EVENT,
        }
    }

    /// Its payload's bytes.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Extension::TrackRemove(m) => m.encode(),
            Extension::OriginReport(m) => m.encode(),
        }
    }

    /// The feature both ends must announce for it to be sent.
    pub fn feature(&self) -> &'static str {
        match self {
            Extension::TrackRemove(_) => FEATURE_TRACK_REMOVE,
            Extension::OriginReport(_) => FEATURE_SENDER_REPORT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_bytes() {
        assert_eq!(TrackRemove { ssrc: 7 }.encode(), br#"{"ssrc":7}"#);
        let r = OriginReport {
            ssrc: 1,
            ntp: u64::MAX,
            rtp: u32::MAX,
        };
        assert_eq!(
            r.encode(),
            br#"{"ssrc":1,"ntp":18446744073709551615,"rtp":4294967295}"#
        );
    }

    #[test]
    fn decoding_is_strict_on_what_matters() {
        assert!(TrackRemove::decode(br#"{"ssrc":0}"#).is_err());
        assert!(TrackRemove::decode(br#"{}"#).is_err());
        assert!(TrackRemove::decode(br#"{"ssrc":4294967296}"#).is_err());
        assert_eq!(
            TrackRemove::decode(br#"{"other":"x","ssrc":9}"#).unwrap(),
            TrackRemove { ssrc: 9 }
        );
        assert!(OriginReport::decode(br#"{"ssrc":1,"ntp":2}"#).is_err());
        assert!(TrackRemove::decode(&vec![b' '; EXTENSION_MAX_SIZE + 1]).is_err());
    }

    #[test]
    fn by_event_name() {
        assert!(Extension::decode("other", Some(b"{}")).is_none());
        assert!(matches!(
            Extension::decode(TRACK_REMOVE_EVENT, None),
            Some(Err(_))
        ));
        let m = Extension::decode(TRACK_REMOVE_EVENT, Some(br#"{"ssrc":3}"#))
            .unwrap()
            .unwrap();
        assert_eq!(m, Extension::TrackRemove(TrackRemove { ssrc: 3 }));
        assert_eq!(m.event(), TRACK_REMOVE_EVENT);
        assert_eq!(m.feature(), FEATURE_TRACK_REMOVE);
    }
}
