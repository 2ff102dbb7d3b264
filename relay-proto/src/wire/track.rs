//! The payload of an `ion_relay_request`: a new track (PROTOCOL.md A.4).

use super::signal::{read_dtls, read_ice, write_dtls, write_ice};
use super::{
    DecodeError, DtlsParameters, IceParameters, Obj, check_size, parse_object, push_json_str,
    push_uint,
};

/// Largest track signal [`TrackSignal::decode`] accepts: 16 KiB.
///
/// A real one is a few hundred bytes; the cap bounds the work a hostile
/// peer can cause per request.
pub const TRACK_SIGNAL_MAX_SIZE: usize = 16 * 1024;

const WHAT: &str = "track signal";

/// Announces a track the sender is about to send.
///
/// It is Go's signal object with `encodings` and `trackInfo` set; the ICE and
/// DTLS parts are carried empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackSignal {
    /// SSRC and payload type of the one encoding.
    pub encodings: Encodings,
    /// Empty on the base protocol (Go copies the struct, not the values).
    pub ice_parameters: IceParameters,
    /// Role `Unset` and fingerprints `None` on the base protocol.
    pub dtls_parameters: DtlsParameters,
    /// Stream, track and codec.
    pub track_info: TrackInfo,
    /// Our extensions (PROTOCOL.md part B), under the key `relay`; sent only
    /// to a peer that announced them, ignored by Go.
    pub relay: Option<TrackExtensions>,
}

/// The `relay` key of a track signal: what a track carries beyond the base
/// protocol (`docs/protocol.md`, B.7 and B.8).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrackExtensions {
    /// The origin's header extensions this track carries: each URI with the
    /// id the origin gave it. On the relay leg they travel under the ids of
    /// the list's order (see `docs/protocol.md`).
    pub header_extensions: Vec<HeaderExtensionMap>,
    /// Simulcast layers; empty for a single encoding (then `encodings`
    /// describes it).
    pub layers: Vec<LayerEncoding>,
}

/// One header extension of a track: its URI and the origin's id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderExtensionMap {
    /// The extension's URI.
    pub uri: String,
    /// The origin's id for it (1..=255).
    pub id: u8,
}

/// One simulcast layer of a track.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LayerEncoding {
    /// The layer's RTP stream id.
    pub rid: String,
    /// Its SSRC on the relay leg.
    pub ssrc: u32,
    /// Its retransmission SSRC (0 for none).
    pub rtx: u32,
}

/// The single encoding of a track (pion's `RTPCodingParameters`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Encodings {
    /// Simulcast rid; `""` on the base protocol.
    pub rid: String,
    /// Media SSRC.
    pub ssrc: u32,
    /// RTP payload type.
    pub payload_type: u8,
    /// Retransmission stream; SSRC 0 means none.
    pub rtx: RtxEncoding,
}

/// Retransmission parameters of an encoding.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RtxEncoding {
    /// RTX SSRC; 0 means no RTX (the base protocol has none).
    pub ssrc: u32,
}

/// Identity and codec of a track (ion-sfu's `TrackMeta`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrackInfo {
    /// Media stream id.
    pub stream_id: String,
    /// Track id.
    pub track_id: String,
    /// The codec the track is sent with.
    pub codec_parameters: CodecParameters,
}

/// pion's `RTPCodecParameters`. Its wire keys are capitalised (`MimeType`,
/// `ClockRate`, ...) because the Go struct has no JSON tags.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CodecParameters {
    /// MIME type, e.g. `video/VP8`; its prefix gives the media kind.
    pub mime_type: String,
    /// RTP clock rate in Hz.
    pub clock_rate: u32,
    /// Audio channels; 0 for video.
    pub channels: u16,
    /// SDP `a=fmtp` parameters.
    pub sdp_fmtp_line: String,
    /// RTCP feedback the origin negotiated. Go's `null` decodes as empty.
    pub rtcp_feedback: Vec<RtcpFeedback>,
    /// The payload type on the wire.
    pub payload_type: u8,
}

/// One RTCP feedback mechanism, e.g. `nack` / `pli`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RtcpFeedback {
    /// Feedback type (wire key `Type`), e.g. `nack`.
    pub typ: String,
    /// Parameter (wire key `Parameter`), e.g. `pli`; may be empty.
    pub parameter: String,
}

impl TrackSignal {
    /// A track signal of the base-protocol shape Go sends: rid `""`, no RTX,
    /// the codec's payload type, empty ICE parameters, DTLS role unset and
    /// fingerprints `null`.
    pub fn new(
        ssrc: u32,
        stream_id: String,
        track_id: String,
        codec: CodecParameters,
    ) -> TrackSignal {
        TrackSignal {
            encodings: Encodings {
                rid: String::new(),
                ssrc,
                payload_type: codec.payload_type,
                rtx: RtxEncoding::default(),
            },
            ice_parameters: IceParameters::default(),
            dtls_parameters: DtlsParameters::default(),
            track_info: TrackInfo {
                stream_id,
                track_id,
                codec_parameters: codec,
            },
            relay: None,
        }
    }

    /// Encodes with Go's key order: `encodings`, `iceParameters`,
    /// `dtlsParameters`, `trackInfo`; no whitespace.
    pub fn encode(&self) -> Vec<u8> {
        let e = &self.encodings;
        let t = &self.track_info;
        let c = &t.codec_parameters;
        let mut out = String::with_capacity(512);
        out.push_str("{\"encodings\":{\"rid\":");
        push_json_str(&mut out, &e.rid);
        out.push_str(",\"ssrc\":");
        push_uint(&mut out, e.ssrc);
        out.push_str(",\"payloadType\":");
        push_uint(&mut out, e.payload_type);
        out.push_str(",\"rtx\":{\"ssrc\":");
        push_uint(&mut out, e.rtx.ssrc);
        out.push_str("}},\"iceParameters\":");
        write_ice(&mut out, &self.ice_parameters);
        out.push_str(",\"dtlsParameters\":");
        write_dtls(&mut out, &self.dtls_parameters);
        out.push_str(",\"trackInfo\":{\"streamId\":");
        push_json_str(&mut out, &t.stream_id);
        out.push_str(",\"trackId\":");
        push_json_str(&mut out, &t.track_id);
        out.push_str(",\"codecParameters\":{\"MimeType\":");
        push_json_str(&mut out, &c.mime_type);
        out.push_str(",\"ClockRate\":");
        push_uint(&mut out, c.clock_rate);
        out.push_str(",\"Channels\":");
        push_uint(&mut out, c.channels);
        out.push_str(",\"SDPFmtpLine\":");
        push_json_str(&mut out, &c.sdp_fmtp_line);
        out.push_str(",\"RTCPFeedback\":[");
        for (i, fb) in c.rtcp_feedback.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"Type\":");
            push_json_str(&mut out, &fb.typ);
            out.push_str(",\"Parameter\":");
            push_json_str(&mut out, &fb.parameter);
            out.push('}');
        }
        out.push_str("],\"PayloadType\":");
        push_uint(&mut out, c.payload_type);
        out.push_str("}}");
        if let Some(x) = &self.relay {
            out.push_str(",\"relay\":{\"headerExtensions\":[");
            for (i, h) in x.header_extensions.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"uri\":");
                push_json_str(&mut out, &h.uri);
                out.push_str(",\"id\":");
                push_uint(&mut out, h.id);
                out.push('}');
            }
            out.push_str("],\"layers\":[");
            for (i, l) in x.layers.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"rid\":");
                push_json_str(&mut out, &l.rid);
                out.push_str(",\"ssrc\":");
                push_uint(&mut out, l.ssrc);
                out.push_str(",\"rtx\":");
                push_uint(&mut out, l.rtx);
                out.push('}');
            }
            out.push_str("]}");
        }
        out.push('}');
        out.into_bytes()
    }

    /// Decodes a track signal.
    ///
    /// `encodings`, `trackInfo` and `trackInfo.codecParameters` are required
    /// (Go would crash on a track without a codec); other missing or `null`
    /// keys take their zero values and unknown keys are ignored, so later
    /// extensions can add keys. Inputs over [`TRACK_SIGNAL_MAX_SIZE`] are
    /// refused unparsed. Payload types are not range-checked here.
    pub fn decode(bytes: &[u8]) -> Result<TrackSignal, DecodeError> {
        check_size(WHAT, bytes, TRACK_SIGNAL_MAX_SIZE)?;
        let root = parse_object(WHAT, bytes)?;
        let enc = root.required_object("encodings")?;
        let encodings = Encodings {
            rid: enc.string("rid")?,
            ssrc: enc.uint("ssrc")?,
            payload_type: enc.uint("payloadType")?,
            rtx: match enc.object("rtx")? {
                Some(rtx) => RtxEncoding {
                    ssrc: rtx.uint("ssrc")?,
                },
                None => RtxEncoding::default(),
            },
        };
        let info = root.required_object("trackInfo")?;
        let track_info = TrackInfo {
            stream_id: info.string("streamId")?,
            track_id: info.string("trackId")?,
            codec_parameters: read_codec(&info.required_object("codecParameters")?)?,
        };
        let relay = match root.object("relay")? {
            Some(x) => Some(TrackExtensions {
                header_extensions: x
                    .object_array("headerExtensions")?
                    .unwrap_or_default()
                    .iter()
                    .map(|h| {
                        Ok(HeaderExtensionMap {
                            uri: h.string("uri")?,
                            id: h.uint("id")?,
                        })
                    })
                    .collect::<Result<_, DecodeError>>()?,
                layers: x
                    .object_array("layers")?
                    .unwrap_or_default()
                    .iter()
                    .map(|l| {
                        Ok(LayerEncoding {
                            rid: l.string("rid")?,
                            ssrc: l.uint("ssrc")?,
                            rtx: l.uint("rtx")?,
                        })
                    })
                    .collect::<Result<_, DecodeError>>()?,
            }),
            None => None,
        };
        Ok(TrackSignal {
            encodings,
            ice_parameters: read_ice(&root)?,
            dtls_parameters: read_dtls(&root)?,
            track_info,
            relay,
        })
    }
}

fn read_codec(o: &Obj<'_>) -> Result<CodecParameters, DecodeError> {
    let rtcp_feedback = o
        .object_array("RTCPFeedback")?
        .unwrap_or_default()
        .iter()
        .map(|fb| {
            Ok(RtcpFeedback {
                typ: fb.string("Type")?,
                parameter: fb.string("Parameter")?,
            })
        })
        .collect::<Result<_, DecodeError>>()?;
    Ok(CodecParameters {
        mime_type: o.string("MimeType")?,
        clock_rate: o.uint("ClockRate")?,
        channels: o.uint("Channels")?,
        sdp_fmtp_line: o.string("SDPFmtpLine")?,
        rtcp_feedback,
        payload_type: o.uint("PayloadType")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtcp_feedback_null_is_empty() {
        let t = TrackSignal::decode(
            br#"{"encodings":{"ssrc":5},"trackInfo":{"codecParameters":{"RTCPFeedback":null,"PayloadType":111}}}"#,
        )
        .unwrap();
        assert!(t.track_info.codec_parameters.rtcp_feedback.is_empty());
        assert_eq!(t.track_info.codec_parameters.payload_type, 111);
        assert_eq!(t.encodings.ssrc, 5);
        assert_eq!(t.dtls_parameters, DtlsParameters::default());
    }

    #[test]
    fn payload_type_must_fit_a_byte() {
        let err = TrackSignal::decode(
            br#"{"encodings":{"payloadType":256},"trackInfo":{"codecParameters":{}}}"#,
        )
        .unwrap_err();
        assert!(matches!(err, DecodeError::Invalid { .. }), "{err}");
    }

    #[test]
    fn codec_parameters_required() {
        let err =
            TrackSignal::decode(br#"{"encodings":{},"trackInfo":{"streamId":"s"}}"#).unwrap_err();
        assert!(matches!(err, DecodeError::Malformed { .. }), "{err}");
        assert!(
            err.to_string().contains("trackInfo.codecParameters"),
            "{err}"
        );
    }
}
