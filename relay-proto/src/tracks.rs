//! Media tracks: the codec table, our tracks and the remote's, keyframe
//! request merging, inactivity, per-track stats. A sub-machine the peer
//! drives; it touches str0m only through the `Rtc` the peer lends it.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use str0m::format::{Codec, FormatParams};
use str0m::media::{Frequency, KeyframeRequestKind, MediaKind, Mid, Pt, Rid};
use str0m::rtp::{RtpWrite, SeqNo, Ssrc};
use str0m::{Rtc, RtcConfig};

use crate::hdrext;
use crate::media::{
    KeyframeKind, RtpIn, RtpOut, SenderReport, TrackCodec, TrackId, TrackKind, TrackStats,
    payload_type_is_carried,
};
use crate::peer::later;

/// Registers every payload type a peer may signal (PROTOCOL.md A.4): str0m
/// fixes its table when the `Rtc` is built and drops unknown types.
///
/// Only the clock rate of an entry matters to us (str0m's sender reports
/// use it); static types get theirs from RFC 3551, 111 is Opus, the other
/// dynamic ones are taken as 90 kHz video. No entry has a resend type, so
/// str0m sends no RTX and no NACK.
pub(crate) fn register_payload_types(mut config: RtcConfig, rtx_leg: bool) -> RtcConfig {
    config = config.clear_codecs();
    let table = config.codec_config();
    if rtx_leg {
        // Between two of our peers that announce `rtx`: a (type, resend
        // type) pair per clock rate, which tracks are remapped onto.
        for class in LEG_CLASSES {
            let rate = Frequency::new(class.clock_rate).unwrap_or(Frequency::NINETY_KHZ);
            table.add_config(
                class.pt.into(),
                Some(class.rtx_pt.into()),
                class.codec,
                rate,
                class.channels,
                FormatParams::default(),
            );
        }
    }
    for pt in (0u8..=63).chain(96..=127) {
        if rtx_leg && !is_identity_in_rtx_table(pt) {
            continue;
        }
        let (codec, rate, channels) = match pt {
            0 => (Codec::PCMU, 8_000, Some(1)),
            8 => (Codec::PCMA, 8_000, Some(1)),
            9 => (Codec::G722, 8_000, Some(1)),
            13 => (Codec::CN, 8_000, Some(1)),
            3..=5 | 7 | 12 | 15 | 18 => (Codec::PCMU, 8_000, Some(1)),
            6 => (Codec::PCMU, 16_000, Some(1)),
            10 => (Codec::PCMU, 44_100, Some(2)),
            11 => (Codec::PCMU, 44_100, Some(1)),
            16 => (Codec::PCMU, 11_025, Some(1)),
            17 => (Codec::PCMU, 22_050, Some(1)),
            111 => (Codec::Opus, 48_000, Some(2)),
            _ => (Codec::Vp8, 90_000, None),
        };
        let rate = Frequency::new(rate).unwrap_or(Frequency::NINETY_KHZ);
        table.add_config(
            pt.into(),
            None,
            codec,
            rate,
            channels,
            FormatParams::default(),
        );
    }
    config.set_rtp_mode(true)
}

/// A relay-leg payload type with its resend type, for one clock rate.
struct LegClass {
    pt: u8,
    rtx_pt: u8,
    clock_rate: u32,
    channels: Option<u8>,
    codec: Codec,
}

/// The relay leg's payload types when both ends announce `rtx` (B.6).
const LEG_CLASSES: [LegClass; 7] = [
    LegClass {
        pt: 96,
        rtx_pt: 97,
        clock_rate: 90_000,
        channels: None,
        codec: Codec::Vp8,
    },
    LegClass {
        pt: 98,
        rtx_pt: 99,
        clock_rate: 48_000,
        channels: Some(2),
        codec: Codec::Opus,
    },
    LegClass {
        pt: 100,
        rtx_pt: 101,
        clock_rate: 48_000,
        channels: Some(1),
        codec: Codec::Opus,
    },
    LegClass {
        pt: 102,
        rtx_pt: 103,
        clock_rate: 8_000,
        channels: Some(1),
        codec: Codec::PCMU,
    },
    LegClass {
        pt: 104,
        rtx_pt: 105,
        clock_rate: 16_000,
        channels: Some(1),
        codec: Codec::PCMU,
    },
    LegClass {
        pt: 106,
        rtx_pt: 107,
        clock_rate: 32_000,
        channels: Some(1),
        codec: Codec::PCMU,
    },
    LegClass {
        pt: 108,
        rtx_pt: 109,
        clock_rate: 44_100,
        channels: Some(2),
        codec: Codec::PCMU,
    },
];

/// Payload types that keep their own entry (no resend type) in the `rtx`
/// table: all carried ones but those the leg pairs use.
fn is_identity_in_rtx_table(pt: u8) -> bool {
    pt <= 63 || (110..=127).contains(&pt)
}

/// The relay-leg payload type (and resend type) of a track whose origin
/// negotiated `codec`, when both ends announce `rtx`.
pub(crate) fn leg_payload_type(codec: &TrackCodec) -> (u8, Option<u8>) {
    let audio = codec.kind() == Some(TrackKind::Audio);
    let class = LEG_CLASSES.iter().find(|c| {
        c.clock_rate == codec.clock_rate
            && match (audio, c.channels) {
                (false, None) => true,
                (true, Some(ch)) => {
                    c.clock_rate != 48_000 || ch == codec.channels.clamp(1, 2) as u8
                }
                _ => false,
            }
    });
    match class {
        Some(c) => (c.pt, Some(c.rtx_pt)),
        None if is_identity_in_rtx_table(codec.payload_type) => (codec.payload_type, None),
        // An unusual clock rate on a type the leg pairs use: carried on a
        // free type with no retransmission.
        None => (110, None),
    }
}

/// Why a track request from the remote was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    PayloadType(u8),
    Kind(String),
    SsrcInUse(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LocalState {
    /// Awaiting the reply to this request id.
    Pending(u64),
    Accepted,
}

/// One encoding of a track on the relay leg: the only one, or a simulcast
/// layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LegLayer {
    /// The layer's RTP stream id (`None` without simulcast).
    pub(crate) rid: Option<String>,
    pub(crate) ssrc: u32,
    /// Retransmission stream, when both ends announce `rtx`.
    pub(crate) rtx: Option<u32>,
}

#[derive(Debug)]
struct TxLayer {
    leg: LegLayer,
    last_ext_seq: Option<u64>,
}

#[derive(Debug)]
struct LocalTrack {
    layers: Vec<TxLayer>,
    /// The payload type on the relay leg (the origin's unless remapped).
    leg_pt: u8,
    /// The origin's header-extension ids, in slot order.
    ext_ids: Vec<u8>,
    mid: Mid,
    codec: TrackCodec,
    state: LocalState,
    origin_report: Option<SenderReport>,
    stats: TrackStats,
    rate: RateWindow,
}

#[derive(Debug)]
struct RxLayer {
    leg: LegLayer,
    first_seq: Option<u64>,
    max_seq: u64,
    packets: u64,
}

#[derive(Debug)]
struct RemoteTrack {
    layers: Vec<RxLayer>,
    leg_pt: u8,
    ext_ids: Vec<u8>,
    mid: Mid,
    codec: TrackCodec,
    last_rtp: Option<Instant>,
    inactive: bool,
    report: Option<SenderReport>,
    stats: TrackStats,
    rate: RateWindow,
    /// Last relative transit time (RFC 3550 jitter), in clock units.
    last_transit: Option<f64>,
    first_arrival: Option<Instant>,
    jitter: f64,
    last_keyframe_request: Option<Instant>,
    pending_keyframe: Option<KeyframeKind>,
}

/// Bit rate over the last full second.
#[derive(Debug, Default)]
struct RateWindow {
    start: Option<Instant>,
    bytes: u64,
}

impl RateWindow {
    fn add(&mut self, now: Instant, bytes: usize, stats: &mut TrackStats) {
        let start = *self.start.get_or_insert(now);
        let span = now.saturating_duration_since(start);
        if span >= Duration::from_secs(1) {
            stats.bitrate = (self.bytes * 8 * 1_000_000) / span.as_micros().max(1) as u64;
            self.start = Some(now);
            self.bytes = 0;
        }
        self.bytes += bytes as u64;
    }
}

/// Tracks of one peer, both directions.
#[derive(Debug, Default)]
pub(crate) struct Tracks {
    /// The `Rtc` has the `rtx` table: tracks are remapped onto leg types.
    pub(crate) rtx_leg: bool,
    next_id: u64,
    next_mid: u64,
    local: HashMap<TrackId, LocalTrack>,
    remote: HashMap<TrackId, RemoteTrack>,
    /// Every layer's SSRC of a remote track: (track, layer index).
    rx_by_ssrc: HashMap<u32, (TrackId, usize)>,
    rx_by_mid: HashMap<Mid, TrackId>,
    tx_by_mid: HashMap<Mid, TrackId>,
    requests: HashMap<u64, TrackId>,
    ssrcs: HashSet<u32>,
    /// An Instant paired with an origin NTP time, so that write wallclocks
    /// follow the origin's clock (str0m's sender reports then keep the
    /// origin's relation between tracks, with the NTP origin rebased).
    anchor: Option<(Instant, u64)>,
}

/// What a new track is made of, on either side.
#[derive(Debug)]
pub(crate) struct TrackSetup {
    pub(crate) codec: TrackCodec,
    pub(crate) layers: Vec<LegLayer>,
    pub(crate) leg_pt: u8,
    pub(crate) ext_ids: Vec<u8>,
}

impl Tracks {
    fn new_mid(&mut self, prefix: char) -> Mid {
        self.next_mid += 1;
        Mid::from(format!("{prefix}{}", self.next_mid).as_str())
    }

    fn new_id(&mut self) -> TrackId {
        self.next_id += 1;
        TrackId(self.next_id)
    }

    /// A fresh SSRC, unused by any track of ours or the remote's, and
    /// reserved until the track it is for is gone.
    pub(crate) fn new_ssrc(&mut self, rng: &mut fastrand::Rng) -> u32 {
        loop {
            let s = rng.u32(1..);
            if self.ssrcs.insert(s) {
                return s;
            }
        }
    }

    /// Gives back SSRCs reserved for a track that was never declared.
    pub(crate) fn release_ssrcs(&mut self, layers: &[LegLayer]) {
        for l in layers {
            self.ssrcs.remove(&l.ssrc);
            if let Some(rtx) = l.rtx {
                self.ssrcs.remove(&rtx);
            }
        }
    }

    /// Declares a track of ours (SSRCs from [`Tracks::new_ssrc`]), pending
    /// the reply to `request`.
    pub(crate) fn add_local(
        &mut self,
        rtc: &mut Rtc,
        setup: TrackSetup,
        request: u64,
        mid_prefix: char,
    ) -> TrackId {
        let id = self.new_id();
        let mid = self.new_mid(mid_prefix);
        let mut api = rtc.direct_api();
        api.declare_media(mid, media_kind(&setup.codec));
        for l in &setup.layers {
            let rid = l.rid.as_deref().map(Rid::from);
            api.declare_stream_tx(Ssrc::from(l.ssrc), l.rtx.map(Ssrc::from), mid, rid);
        }
        self.tx_by_mid.insert(mid, id);
        self.requests.insert(request, id);
        self.local.insert(
            id,
            LocalTrack {
                layers: setup
                    .layers
                    .into_iter()
                    .map(|leg| TxLayer {
                        leg,
                        last_ext_seq: None,
                    })
                    .collect(),
                leg_pt: setup.leg_pt,
                ext_ids: setup.ext_ids,
                mid,
                codec: setup.codec,
                state: LocalState::Pending(request),
                origin_report: None,
                stats: TrackStats::default(),
                rate: RateWindow::default(),
            },
        );
        id
    }

    /// The track a request id belongs to, if it was a track request.
    pub(crate) fn take_request(&mut self, request: u64) -> Option<TrackId> {
        self.requests.remove(&request)
    }

    /// The request a track of ours still awaits the reply to, if any.
    pub(crate) fn pending_request(&self, id: TrackId) -> Option<u64> {
        match self.local.get(&id)?.state {
            LocalState::Pending(request) => Some(request),
            LocalState::Accepted => None,
        }
    }

    /// The remote accepted our track: RTP may flow.
    pub(crate) fn accepted(&mut self, id: TrackId) {
        if let Some(t) = self.local.get_mut(&id) {
            t.state = LocalState::Accepted;
        }
    }

    /// Forgets a track of ours (refused, failed or removed); returns its
    /// first SSRC.
    pub(crate) fn drop_local(&mut self, rtc: &mut Rtc, id: TrackId) -> Option<u32> {
        let t = self.local.remove(&id)?;
        if let LocalState::Pending(req) = t.state {
            self.requests.remove(&req);
        }
        self.tx_by_mid.remove(&t.mid);
        let legs: Vec<LegLayer> = t.layers.iter().map(|l| l.leg.clone()).collect();
        self.release_ssrcs(&legs);
        rtc.direct_api().remove_media(t.mid);
        legs.first().map(|l| l.ssrc)
    }

    pub(crate) fn local_ssrc(&self, id: TrackId) -> Option<u32> {
        self.local.get(&id)?.layers.first().map(|l| l.leg.ssrc)
    }

    pub(crate) fn is_local(&self, id: TrackId) -> bool {
        self.local.contains_key(&id)
    }

    /// Sets up reception of a track the remote announced.
    pub(crate) fn add_remote(
        &mut self,
        rtc: &mut Rtc,
        setup: TrackSetup,
        mid_prefix: char,
    ) -> Result<TrackId, Refusal> {
        let codec = &setup.codec;
        if !payload_type_is_carried(codec.payload_type) {
            return Err(Refusal::PayloadType(codec.payload_type));
        }
        if !payload_type_is_carried(setup.leg_pt) {
            return Err(Refusal::PayloadType(setup.leg_pt));
        }
        if codec.kind().is_none() {
            return Err(Refusal::Kind(codec.mime_type.clone()));
        }
        let mut seen = HashSet::new();
        for l in &setup.layers {
            for s in std::iter::once(l.ssrc).chain(l.rtx) {
                if s == 0 || self.ssrcs.contains(&s) || !seen.insert(s) {
                    return Err(Refusal::SsrcInUse(s));
                }
            }
        }
        if setup.layers.is_empty() {
            return Err(Refusal::SsrcInUse(0));
        }
        let id = self.new_id();
        let mid = self.new_mid(mid_prefix);
        let mut api = rtc.direct_api();
        api.declare_media(mid, media_kind(codec));
        for (i, l) in setup.layers.iter().enumerate() {
            let rid = l.rid.as_deref().map(Rid::from);
            // NACK only where a retransmission stream exists: a base peer
            // ignores NACKs (and has no RTX).
            api.expect_stream_rx(Ssrc::from(l.ssrc), l.rtx.map(Ssrc::from), mid, rid)
                .suppress_nack(l.rtx.is_none());
            self.rx_by_ssrc.insert(l.ssrc, (id, i));
            self.ssrcs.insert(l.ssrc);
            self.ssrcs.extend(l.rtx);
        }
        self.rx_by_mid.insert(mid, id);
        self.remote.insert(
            id,
            RemoteTrack {
                layers: setup
                    .layers
                    .into_iter()
                    .map(|leg| RxLayer {
                        leg,
                        first_seq: None,
                        max_seq: 0,
                        packets: 0,
                    })
                    .collect(),
                leg_pt: setup.leg_pt,
                ext_ids: setup.ext_ids,
                mid,
                codec: setup.codec,
                last_rtp: None,
                inactive: false,
                report: None,
                stats: TrackStats::default(),
                rate: RateWindow::default(),
                last_transit: None,
                first_arrival: None,
                jitter: 0.0,
                last_keyframe_request: None,
                pending_keyframe: None,
            },
        );
        Ok(id)
    }

    /// Forgets a remote track (removed by the remote).
    pub(crate) fn drop_remote(&mut self, rtc: &mut Rtc, id: TrackId) -> bool {
        let Some(t) = self.remote.remove(&id) else {
            return false;
        };
        for l in &t.layers {
            self.rx_by_ssrc.remove(&l.leg.ssrc);
        }
        let legs: Vec<LegLayer> = t.layers.into_iter().map(|l| l.leg).collect();
        self.release_ssrcs(&legs);
        self.rx_by_mid.remove(&t.mid);
        rtc.direct_api().remove_media(t.mid);
        true
    }

    /// The remote track one of whose layers has this SSRC.
    pub(crate) fn remote_by_ssrc(&self, ssrc: u32) -> Option<TrackId> {
        self.rx_by_ssrc.get(&ssrc).map(|(id, _)| *id)
    }

    /// str0m's NACK count for a media: sent for a remote track, received
    /// for ours.
    pub(crate) fn set_nacks(&mut self, mid: Mid, nacks: u64) {
        if let Some(t) = self
            .rx_by_mid
            .get(&mid)
            .and_then(|id| self.remote.get_mut(id))
        {
            t.stats.nacks = nacks;
        } else if let Some(t) = self
            .tx_by_mid
            .get(&mid)
            .and_then(|id| self.local.get_mut(id))
        {
            t.stats.nacks = nacks;
        }
    }

    pub(crate) fn remote_by_mid(&self, mid: Mid) -> Option<TrackId> {
        self.rx_by_mid.get(&mid).copied()
    }

    pub(crate) fn remote_ssrc(&self, id: TrackId) -> Option<u32> {
        self.remote.get(&id)?.layers.first().map(|l| l.leg.ssrc)
    }

    /// Writes one RTP packet of ours. The caller checked the payload type.
    pub(crate) fn write(
        &mut self,
        rtc: &mut Rtc,
        now: Instant,
        id: TrackId,
        pkt: RtpOut,
    ) -> Result<(), crate::Error> {
        let anchor = self.anchor;
        let rtx_leg = self.rtx_leg;
        let t = self.local.get_mut(&id).ok_or(crate::Error::UnknownTrack)?;
        if t.state != LocalState::Accepted {
            return Err(crate::Error::TrackNotAccepted);
        }
        let layer = t
            .layers
            .get_mut(pkt.layer as usize)
            .ok_or(crate::Error::UnknownLayer(pkt.layer))?;
        // Extend the origin's 16-bit number from ROC 0 on this leg, so the
        // receiver (which assumes ROC 0) decrypts a stream joined anywhere.
        let ext = match layer.last_ext_seq {
            None => pkt.sequence_number as u64,
            Some(prev) => extend_seq(prev, pkt.sequence_number),
        };
        if layer.last_ext_seq.is_none_or(|p| ext > p) {
            layer.last_ext_seq = Some(ext);
        }
        let ssrc = layer.leg.ssrc;
        let has_rtx = layer.leg.rtx.is_some();
        let wallclock = match (anchor, t.origin_report) {
            (Some((at, anchor_ntp)), Some(report)) => report
                .ntp_of(pkt.timestamp, t.codec.clock_rate)
                .and_then(|ntp| instant_of_ntp(at, anchor_ntp, ntp))
                .unwrap_or(now),
            _ => now,
        };
        // The track's own type crosses on its leg type (remapped with
        // `rtx`); another type crosses as is where the table has it.
        let (wire_pt, nackable) = if pkt.payload_type == t.codec.payload_type {
            (t.leg_pt, has_rtx)
        } else if !rtx_leg || is_identity_in_rtx_table(pkt.payload_type) {
            (pkt.payload_type, false)
        } else {
            return Err(crate::Error::PayloadType(pkt.payload_type));
        };
        let ext_vals = hdrext::to_leg(&t.ext_ids, &pkt.header_extensions);
        let len = pkt.payload.len();
        let mut api = rtc.direct_api();
        let stream = api
            .stream_tx(&Ssrc::from(ssrc))
            .ok_or(crate::Error::UnknownTrack)?;
        stream.write_rtp(
            RtpWrite::new(
                Pt::from(wire_pt),
                SeqNo::from(ext),
                pkt.timestamp,
                wallclock,
                pkt.payload.to_vec(),
            )
            .marker(pkt.marker)
            .ext_vals(ext_vals)
            .nackable(nackable),
        );
        t.stats.packets += 1;
        t.stats.bytes += len as u64;
        t.rate.add(now, len, &mut t.stats);
        Ok(())
    }

    /// Records the origin's latest sender report for a track of ours.
    pub(crate) fn set_origin_report(
        &mut self,
        now: Instant,
        id: TrackId,
        report: SenderReport,
    ) -> Result<u32, crate::Error> {
        let t = self.local.get_mut(&id).ok_or(crate::Error::UnknownTrack)?;
        t.origin_report = Some(report);
        if self.anchor.is_none() {
            self.anchor = Some((now, report.ntp));
        }
        t.layers
            .first()
            .map(|l| l.leg.ssrc)
            .ok_or(crate::Error::UnknownTrack)
    }

    /// A packet arrived on a remote track.
    pub(crate) fn on_rtp(&mut self, pkt: str0m::rtp::RtpPacket) -> Option<Vec<crate::Event>> {
        let ssrc: u32 = *pkt.header.ssrc;
        let (id, layer_index) = *self.rx_by_ssrc.get(&ssrc)?;
        let t = self.remote.get_mut(&id)?;
        let now = pkt.timestamp;
        let mut out = Vec::new();
        if t.inactive {
            t.inactive = false;
            out.push(crate::Event::TrackActive(id));
        }
        t.last_rtp = Some(now);
        let ext = *pkt.seq_no;
        let layer = t.layers.get_mut(layer_index)?;
        layer.first_seq.get_or_insert(ext);
        layer.max_seq = layer.max_seq.max(ext);
        layer.packets += 1;
        t.stats.packets += 1;
        t.stats.bytes += pkt.payload.len() as u64;
        t.stats.lost = t
            .layers
            .iter()
            .filter_map(|l| {
                let first = l.first_seq?;
                Some((l.max_seq.saturating_sub(first) + 1).saturating_sub(l.packets))
            })
            .sum();
        // RFC 3550 interarrival jitter, in clock units, on arrival times
        // relative to the track's first packet.
        let rate = t.codec.clock_rate.max(1) as f64;
        let base = *t.first_arrival.get_or_insert(now);
        let arrival_units = now.saturating_duration_since(base).as_secs_f64() * rate;
        let transit = arrival_units - pkt.header.timestamp as f64;
        if let Some(prev) = t.last_transit {
            let mut d = transit - prev;
            // Timestamps wrap at 2^32 units.
            if d.abs() > 2f64.powi(31) {
                d -= d.signum() * 2f64.powi(32);
            }
            t.jitter += (d.abs() - t.jitter) / 16.0;
            t.stats.jitter = Duration::from_secs_f64((t.jitter / rate).max(0.0));
        }
        t.last_transit = Some(transit);
        t.rate.add(now, pkt.payload.len(), &mut t.stats);
        out.push(crate::Event::Rtp(Box::new(RtpIn {
            track: id,
            layer: layer_index as u8,
            ssrc,
            payload_type: if *pkt.header.payload_type == t.leg_pt {
                t.codec.payload_type
            } else {
                *pkt.header.payload_type
            },
            sequence_number: pkt.header.sequence_number,
            extended_sequence_number: ext,
            timestamp: pkt.header.timestamp,
            marker: pkt.header.marker,
            header_extensions: hdrext::from_leg(&t.ext_ids, &pkt.header.ext_vals),
            extensions: pkt.header.ext_vals.clone(),
            payload: pkt.payload.clone(),
            received: now,
        })));
        Some(out)
    }

    /// The remote asked for a keyframe on one of our tracks (str0m names
    /// the mid, each track has its own, and the rid of a simulcast layer).
    pub(crate) fn on_keyframe_request(
        &mut self,
        mid: Mid,
        rid: Option<Rid>,
        kind: KeyframeRequestKind,
    ) -> Option<crate::Event> {
        let id = *self.tx_by_mid.get(&mid)?;
        let t = self.local.get_mut(&id)?;
        t.stats.keyframe_requests += 1;
        let layer = t
            .layers
            .iter()
            .position(|l| l.leg.rid.as_deref().map(Rid::from) == rid)
            .unwrap_or(0) as u8;
        let kind = match kind {
            KeyframeRequestKind::Fir => KeyframeKind::Fir,
            _ => KeyframeKind::Pli,
        };
        Some(crate::Event::KeyframeRequest {
            track: id,
            layer,
            kind,
        })
    }

    /// Asks for a keyframe on a remote track (every layer), at most once per
    /// `interval`; requests within it are merged into one sent when it ends.
    pub(crate) fn request_keyframe(
        &mut self,
        rtc: &mut Rtc,
        now: Instant,
        id: TrackId,
        kind: KeyframeKind,
        interval: Duration,
        fir_allowed: bool,
    ) -> Result<(), crate::Error> {
        let t = self.remote.get_mut(&id).ok_or(crate::Error::UnknownTrack)?;
        let kind = if fir_allowed { kind } else { KeyframeKind::Pli };
        match t.last_keyframe_request {
            Some(last) if now < later(last, interval) => {
                t.stats.keyframe_requests_merged += 1;
                // FIR wins over PLI when both are waiting.
                if t.pending_keyframe != Some(KeyframeKind::Fir) {
                    t.pending_keyframe = Some(kind);
                }
            }
            _ => send_keyframe_request(rtc, t, now, kind),
        }
        Ok(())
    }

    /// Records an in-band origin report for a remote track.
    pub(crate) fn on_origin_report(&mut self, ssrc: u32, report: SenderReport) -> Option<TrackId> {
        let (id, _) = *self.rx_by_ssrc.get(&ssrc)?;
        self.remote.get_mut(&id)?.report = Some(report);
        Some(id)
    }

    /// The origin NTP time of an RTP timestamp on a remote track.
    pub(crate) fn ntp_of(&self, id: TrackId, rtp: u32) -> Option<u64> {
        let t = self.remote.get(&id)?;
        t.report?.ntp_of(rtp, t.codec.clock_rate)
    }

    pub(crate) fn stats(&self, id: TrackId) -> Option<TrackStats> {
        self.local
            .get(&id)
            .map(|t| t.stats.clone())
            .or_else(|| self.remote.get(&id).map(|t| t.stats.clone()))
    }

    /// The next time merged keyframe requests or inactivity need attention.
    pub(crate) fn poll_timeout(
        &self,
        inactive_after: Option<Duration>,
        interval: Duration,
    ) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for t in self.remote.values() {
            let mut consider = |at: Instant| next = Some(next.map_or(at, |n| n.min(at)));
            if t.pending_keyframe.is_some()
                && let Some(last) = t.last_keyframe_request
            {
                consider(later(last, interval));
            }
            if let (Some(after), Some(last), false) = (inactive_after, t.last_rtp, t.inactive) {
                consider(later(last, after));
            }
        }
        next
    }

    /// Sends merged keyframe requests and reports tracks gone silent.
    pub(crate) fn handle_timeout(
        &mut self,
        rtc: &mut Rtc,
        now: Instant,
        inactive_after: Option<Duration>,
        interval: Duration,
    ) -> Vec<crate::Event> {
        let mut events = Vec::new();
        let mut ids: Vec<TrackId> = self.remote.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let Some(t) = self.remote.get_mut(&id) else {
                continue;
            };
            if let (Some(kind), Some(last)) = (t.pending_keyframe, t.last_keyframe_request)
                && now >= later(last, interval)
            {
                t.pending_keyframe = None;
                send_keyframe_request(rtc, t, now, kind);
            }
            if let (Some(after), Some(last), false) = (inactive_after, t.last_rtp, t.inactive)
                && now >= later(last, after)
            {
                t.inactive = true;
                events.push(crate::Event::TrackInactive(id));
            }
        }
        events
    }
}

fn send_keyframe_request(rtc: &mut Rtc, t: &mut RemoteTrack, now: Instant, kind: KeyframeKind) {
    let kind = match kind {
        KeyframeKind::Fir => KeyframeRequestKind::Fir,
        KeyframeKind::Pli => KeyframeRequestKind::Pli,
    };
    let mut api = rtc.direct_api();
    let mut sent = false;
    for l in &t.layers {
        if let Some(stream) = api.stream_rx(&Ssrc::from(l.leg.ssrc)) {
            stream.request_keyframe(kind);
            sent = true;
        }
    }
    if sent {
        t.stats.keyframe_requests += 1;
        t.last_keyframe_request = Some(now);
    }
}

fn media_kind(codec: &TrackCodec) -> MediaKind {
    match codec.kind() {
        Some(TrackKind::Audio) => MediaKind::Audio,
        _ => MediaKind::Video,
    }
}

/// The extended sequence number nearest to `prev` whose low 16 bits are `seq`.
fn extend_seq(prev: u64, seq: u16) -> u64 {
    let base = prev & !0xffff;
    let candidates = [base.wrapping_sub(0x1_0000), base, base + 0x1_0000];
    candidates
        .into_iter()
        .map(|b| b | seq as u64)
        .filter(|c| *c < (1 << 48))
        .min_by_key(|c| c.abs_diff(prev))
        .unwrap_or(seq as u64)
}

/// The Instant at which the origin's clock read `ntp`, given one pairing.
fn instant_of_ntp(at: Instant, anchor_ntp: u64, ntp: u64) -> Option<Instant> {
    match ntp_offset(anchor_ntp, ntp) {
        (d, true) => at.checked_add(d),
        (d, false) => at.checked_sub(d),
    }
}

/// How far `ntp` lies from `anchor_ntp` (both 32.32 NTP), and whether it is
/// later.
fn ntp_offset(anchor_ntp: u64, ntp: u64) -> (Duration, bool) {
    let to_dur = |d: u64| Duration::from_nanos(((d as u128 * 1_000_000_000) >> 32) as u64);
    if ntp >= anchor_ntp {
        (to_dur(ntp - anchor_ntp), true)
    } else {
        (to_dur(anchor_ntp - ntp), false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_extend_across_wrap_and_back() {
        assert_eq!(extend_seq(65_530, 65_535), 65_535);
        assert_eq!(extend_seq(65_535, 2), 65_538);
        assert_eq!(extend_seq(65_538, 65_534), 65_534);
        assert_eq!(extend_seq(10, 65_535), 65_535);
    }

    #[test]
    fn ntp_offsets_in_both_directions() {
        let one_sec = 1u64 << 32;
        assert_eq!(
            ntp_offset(10 * one_sec, 11 * one_sec),
            (Duration::from_secs(1), true)
        );
        assert_eq!(
            ntp_offset(10 * one_sec, 10 * one_sec - one_sec / 2),
            (Duration::from_millis(500), false)
        );
    }
}
