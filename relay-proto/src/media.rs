//! Public types of media tracks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::wire::{CodecParameters, RtcpFeedback};

/// Id of a track on one peer: ours (from [`Peer::add_track`](crate::Peer::add_track))
/// or the remote's (from [`Event::Track`](crate::Event::Track)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[must_use = "a track is written and reported under this id"]
pub struct TrackId(pub u64);

/// What the application says a track is (ion-sfu's `trackInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct TrackMeta {
    /// The media stream the track belongs to.
    pub stream_id: String,
    /// The track's id.
    pub track_id: String,
}

impl TrackMeta {
    /// Meta from a stream id and a track id.
    pub fn new(stream_id: impl Into<String>, track_id: impl Into<String>) -> Self {
        TrackMeta {
            stream_id: stream_id.into(),
            track_id: track_id.into(),
        }
    }
}

/// Audio or video, from the MIME type's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackKind {
    /// `audio/...`
    Audio,
    /// `video/...`
    Video,
}

/// The codec a track carries, as its origin negotiated it (ion-sfu's
/// `codecParameters`). The relay forwards its payload type unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrackCodec {
    /// MIME type, such as `video/VP8` or `audio/opus`.
    pub mime_type: String,
    /// RTP clock rate (90,000 for video, 48,000 for Opus...).
    pub clock_rate: u32,
    /// Audio channels (0 for video).
    pub channels: u16,
    /// The SDP `a=fmtp` line, if any.
    pub fmtp_line: String,
    /// RTCP feedback the origin negotiated.
    pub rtcp_feedback: Vec<RtcpFeedback>,
    /// The payload type on the wire: 0..=63 or 96..=127.
    pub payload_type: u8,
}

impl TrackCodec {
    /// A codec by MIME type, clock rate, channels (0 for video) and payload
    /// type, with no fmtp line and no RTCP feedback.
    pub fn new(
        mime_type: impl Into<String>,
        clock_rate: u32,
        channels: u16,
        payload_type: u8,
    ) -> Self {
        TrackCodec {
            mime_type: mime_type.into(),
            clock_rate,
            channels,
            fmtp_line: String::new(),
            rtcp_feedback: Vec::new(),
            payload_type,
        }
    }

    /// This codec with an SDP `a=fmtp` line.
    pub fn with_fmtp_line(mut self, fmtp_line: impl Into<String>) -> Self {
        self.fmtp_line = fmtp_line.into();
        self
    }

    /// This codec with the RTCP feedback the origin negotiated, as
    /// (type, parameter) pairs such as `("nack", "pli")`.
    pub fn with_rtcp_feedback<T: Into<String>, P: Into<String>>(
        mut self,
        feedback: impl IntoIterator<Item = (T, P)>,
    ) -> Self {
        self.rtcp_feedback = feedback
            .into_iter()
            .map(|(t, p)| RtcpFeedback {
                typ: t.into(),
                parameter: p.into(),
            })
            .collect();
        self
    }

    /// This codec on another payload type.
    pub fn with_payload_type(mut self, payload_type: u8) -> Self {
        self.payload_type = payload_type;
        self
    }

    /// VP8 at 90 kHz with NACK and PLI feedback.
    pub fn vp8(payload_type: u8) -> Self {
        TrackCodec {
            mime_type: "video/VP8".into(),
            clock_rate: 90_000,
            channels: 0,
            fmtp_line: String::new(),
            rtcp_feedback: vec![
                RtcpFeedback {
                    typ: "nack".into(),
                    parameter: String::new(),
                },
                RtcpFeedback {
                    typ: "nack".into(),
                    parameter: "pli".into(),
                },
            ],
            payload_type,
        }
    }

    /// H.264 at 90 kHz (packetization mode 1, constrained baseline).
    pub fn h264(payload_type: u8) -> Self {
        TrackCodec {
            mime_type: "video/H264".into(),
            fmtp_line: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
                .into(),
            ..TrackCodec::vp8(payload_type)
        }
    }

    /// Opus at 48 kHz, two channels.
    pub fn opus(payload_type: u8) -> Self {
        TrackCodec {
            mime_type: "audio/opus".into(),
            clock_rate: 48_000,
            channels: 2,
            fmtp_line: "minptime=10;useinbandfec=1".into(),
            rtcp_feedback: Vec::new(),
            payload_type,
        }
    }

    /// Audio or video, from the MIME type; `None` for anything else.
    pub fn kind(&self) -> Option<TrackKind> {
        let lower = self.mime_type.to_ascii_lowercase();
        if lower.starts_with("audio/") {
            Some(TrackKind::Audio)
        } else if lower.starts_with("video/") {
            Some(TrackKind::Video)
        } else {
            None
        }
    }

    pub(crate) fn to_wire(&self) -> CodecParameters {
        CodecParameters {
            mime_type: self.mime_type.clone(),
            clock_rate: self.clock_rate,
            channels: self.channels,
            sdp_fmtp_line: self.fmtp_line.clone(),
            rtcp_feedback: self.rtcp_feedback.clone(),
            payload_type: self.payload_type,
        }
    }

    pub(crate) fn from_wire(c: &CodecParameters) -> Self {
        TrackCodec {
            mime_type: c.mime_type.clone(),
            clock_rate: c.clock_rate,
            channels: c.channels,
            fmtp_line: c.sdp_fmtp_line.clone(),
            rtcp_feedback: c.rtcp_feedback.clone(),
            payload_type: c.payload_type,
        }
    }
}

/// `true` for the payload types the relay carries: 0..=63 and 96..=127.
/// 64..=95 collide with RTCP packet types under rtcp-mux and cannot be
/// received.
pub fn payload_type_is_carried(pt: u8) -> bool {
    pt <= 63 || (96..=127).contains(&pt)
}

/// One of the origin's RTP header extensions on a track: its URI and the
/// id the origin gave it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HeaderExtension {
    /// The origin's id (1..=255).
    pub id: u8,
    /// The extension's URI.
    pub uri: String,
}

/// How a track is carried beyond its codec; the default is one encoding and
/// no header extensions (all a base peer can take).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TrackOptions {
    /// The origin's header extensions whose values should cross with each
    /// packet ([`RtpOut::header_extensions`]), at most 9. Needs the
    /// `header-extensions` feature on both ends; toward a peer without it
    /// they are not sent.
    pub header_extensions: Vec<HeaderExtension>,
    /// Simulcast layers by RTP stream id (`"q"`, `"h"`, `"f"`...), each sent
    /// with its own SSRC (and RTX SSRC); empty for one encoding. Needs the
    /// `simulcast` feature on both ends.
    pub simulcast: Vec<String>,
}

impl TrackOptions {
    /// Options with simulcast layers by RTP stream id.
    pub fn with_simulcast<S: Into<String>>(mut self, rids: impl IntoIterator<Item = S>) -> Self {
        self.simulcast = rids.into_iter().map(Into::into).collect();
        self
    }

    /// Options with the origin's header extensions.
    pub fn with_header_extensions(mut self, extensions: Vec<HeaderExtension>) -> Self {
        self.header_extensions = extensions;
        self
    }
}

/// One RTP packet to forward on a track, as it came from the origin.
///
/// Made with [`RtpOut::new`], or with [`RtpOut::forward`] from a packet
/// another peer received: that one is written without copying its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RtpOut {
    /// Payload type (normally the track's; any carried one is accepted).
    pub payload_type: u8,
    /// The origin's 16-bit sequence number; gaps are kept as they are.
    pub sequence_number: u16,
    /// The origin's RTP timestamp.
    pub timestamp: u32,
    /// The marker bit.
    pub marker: bool,
    /// The payload.
    pub payload: Bytes,
    /// Simulcast layer: an index into [`TrackOptions::simulcast`]; 0 for a
    /// track with one encoding.
    pub layer: u8,
    /// The origin's header-extension values, by the origin's id; only ids
    /// listed in [`TrackOptions::header_extensions`] cross.
    pub header_extensions: Vec<(u8, Bytes)>,
    /// The buffer `payload` came from when it was received by a peer
    /// (str0m's own), so that writing it again needs no copy.
    shared: SharedPayload,
}

impl RtpOut {
    /// A packet on layer 0 with no header extensions.
    pub fn new(
        payload_type: u8,
        sequence_number: u16,
        timestamp: u32,
        marker: bool,
        payload: Bytes,
    ) -> Self {
        RtpOut {
            payload_type,
            sequence_number,
            timestamp,
            marker,
            payload,
            layer: 0,
            header_extensions: Vec::new(),
            shared: SharedPayload::default(),
        }
    }

    /// A packet whose payload is already shared (str0m hands received
    /// payloads out as `Arc<[u8]>`, as an SFU's browser side does): written
    /// without a copy.
    pub fn from_shared(
        payload_type: u8,
        sequence_number: u16,
        timestamp: u32,
        marker: bool,
        payload: Arc<[u8]>,
    ) -> Self {
        let mut out = RtpOut::new(
            payload_type,
            sequence_number,
            timestamp,
            marker,
            Bytes::from_owner(payload.clone()),
        );
        out.shared = SharedPayload(Some(payload));
        out
    }

    /// The same packet, to write on a track of another peer: payload type,
    /// sequence number, timestamp, marker, layer, header extensions and
    /// payload as received. The payload is not copied (as long as
    /// `payload` is left as it is).
    pub fn forward(packet: &RtpIn) -> Self {
        RtpOut {
            payload_type: packet.payload_type,
            sequence_number: packet.sequence_number,
            timestamp: packet.timestamp,
            marker: packet.marker,
            payload: packet.payload.clone(),
            layer: packet.layer,
            header_extensions: packet.header_extensions.clone(),
            shared: packet.shared.clone(),
        }
    }

    /// This packet on another simulcast layer.
    pub fn with_layer(mut self, layer: u8) -> Self {
        self.layer = layer;
        self
    }

    /// This packet with the origin's header-extension values.
    pub fn with_header_extensions(mut self, values: Vec<(u8, Bytes)>) -> Self {
        self.header_extensions = values;
        self
    }

    /// The payload as str0m takes it (`Arc<[u8]>`): the received buffer
    /// itself when `payload` still is that buffer, else one copy. str0m
    /// 0.25's `RtpWrite` takes an `Arc<[u8]>`, and a `Bytes` cannot become
    /// one without copying; an `RtpWrite` that took `Bytes` would lift it.
    pub(crate) fn into_shared_payload(self) -> Arc<[u8]> {
        match self.shared.0 {
            Some(shared)
                if shared.as_ptr() == self.payload.as_ptr()
                    && shared.len() == self.payload.len() =>
            {
                shared
            }
            _ => Arc::from(&self.payload[..]),
        }
    }
}

/// One RTP packet received on a remote track.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RtpIn {
    /// The track.
    pub track: TrackId,
    /// Simulcast layer (index into the track's layers; 0 with one).
    pub layer: u8,
    /// The SSRC on the relay leg.
    pub ssrc: u32,
    /// Payload type, as the origin sent it.
    pub payload_type: u8,
    /// The origin's sequence number.
    pub sequence_number: u16,
    /// The sequence number extended with the rollover count.
    pub extended_sequence_number: u64,
    /// The origin's RTP timestamp.
    pub timestamp: u32,
    /// The marker bit.
    pub marker: bool,
    /// The origin's header-extension values by the origin's id (from the
    /// track's signalled list; for a base peer's track, the ids as they
    /// came, which the Go relay leaves as the origin set them).
    pub header_extensions: Vec<(u8, Bytes)>,
    /// The payload. It shares the buffer the packet was decrypted into;
    /// [`RtpOut::forward`] writes it on another track without a copy.
    pub payload: Bytes,
    /// When it arrived (the time passed to the input that delivered it).
    pub received: Instant,
    /// str0m's buffer behind `payload`.
    pub(crate) shared: SharedPayload,
}

impl RtpIn {
    /// The payload as an `Arc<[u8]>` (what str0m writes, to browsers say):
    /// the buffer it was received in, not a copy.
    pub fn shared_payload(&self) -> Arc<[u8]> {
        match &self.shared.0 {
            Some(shared) => shared.clone(),
            None => Arc::from(&self.payload[..]),
        }
    }
}

/// str0m's buffer behind a received payload, carried along so that
/// forwarding needs no copy. Invisible to equality and debug output: it is
/// the same bytes as the payload.
#[derive(Clone, Default)]
pub(crate) struct SharedPayload(pub(crate) Option<Arc<[u8]>>);

impl PartialEq for SharedPayload {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for SharedPayload {}

impl std::fmt::Debug for SharedPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("..")
    }
}

/// A keyframe request's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyframeKind {
    /// Picture Loss Indication: what a base (Go) peer acts on.
    Pli,
    /// Full Intra Request; sent as a PLI to a peer that does not announce
    /// the `fir` feature.
    Fir,
}

/// A sender report: the origin's relation between wall-clock time (64-bit
/// NTP, 32.32 fixed point) and a track's RTP time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SenderReport {
    /// NTP time (seconds since 1900 in the upper 32 bits, fraction below).
    pub ntp: u64,
    /// The RTP timestamp that corresponds to `ntp`.
    pub rtp: u32,
}

impl SenderReport {
    /// The NTP time of an RTP timestamp of the same track, given its clock
    /// rate. Timestamps within half the 32-bit range either side map
    /// correctly across wrap-around.
    pub fn ntp_of(&self, rtp: u32, clock_rate: u32) -> Option<u64> {
        if clock_rate == 0 {
            return None;
        }
        let delta = rtp.wrapping_sub(self.rtp) as i32 as i128;
        let offset = (delta << 32) / clock_rate as i128;
        let ntp = self.ntp as i128 + offset;
        u64::try_from(ntp).ok()
    }
}

/// Counters of one track, in its direction (sent for ours, received for
/// the remote's).
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct TrackStats {
    /// RTP packets.
    pub packets: u64,
    /// Payload bytes.
    pub bytes: u64,
    /// Payload bit rate over the last full second, bits per second.
    pub bitrate: u64,
    /// Packets missing from the sequence so far (received side).
    pub lost: u64,
    /// Interarrival jitter (RFC 3550), received side.
    pub jitter: Duration,
    /// NACKs sent (received side) or received (sending side).
    pub nacks: u64,
    /// Keyframe requests sent (received side) or received (sending side).
    pub keyframe_requests: u64,
    /// Keyframe requests merged into one already sent (received side).
    pub keyframe_requests_merged: u64,
    /// Packets refused by `write_rtp` because their datagram would exceed
    /// [`Config::max_datagram_size`](crate::Config::max_datagram_size)
    /// (sending side).
    pub refused_too_large: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shared payload reaches str0m as the very buffer it came in (what
    /// `RtpOut::forward` and `RtpOut::from_shared` carry); a payload changed
    /// on the way, or a plain `Bytes`, is copied instead.
    #[test]
    fn shared_payloads_are_not_copied() {
        let buf: Arc<[u8]> = Arc::from(&b"payload"[..]);
        let shared = RtpOut::from_shared(96, 1, 0, false, buf.clone());
        assert_eq!(&shared.payload[..], b"payload");
        assert!(Arc::ptr_eq(&shared.clone().into_shared_payload(), &buf));
        let mut changed = shared;
        changed.payload = Bytes::from_static(b"other");
        let copied = changed.into_shared_payload();
        assert!(!Arc::ptr_eq(&copied, &buf));
        assert_eq!(&copied[..], b"other");
        let plain = RtpOut::new(96, 1, 0, false, Bytes::from_static(b"p"));
        assert_eq!(&plain.into_shared_payload()[..], b"p");
    }
}
