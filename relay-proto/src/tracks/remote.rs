//! The remote's tracks: reception set up from their signals, each packet
//! counted and handed on, keyframe requests merged, silence noticed.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use str0m::media::{KeyframeRequestKind, Mid, Rid};
use str0m::rtp::RtpPacket;

use super::{Ids, LegLayer, RateWindow, TrackSetup, media_kind};
use crate::error::Error;
use crate::event::Event;
use crate::hdrext;
use crate::media::{
    KeyframeKind, RtpIn, SenderReport, SharedPayload, TrackCodec, TrackId, TrackStats,
    payload_type_is_carried,
};
use crate::ops::RtcOp;
use crate::time::later;

/// Why a track request from the remote was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    PayloadType(u8),
    Kind(String),
    SsrcInUse(u32),
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

/// What one received packet amounts to.
pub(crate) struct Received {
    /// The track was reported inactive and is active again.
    pub(crate) reactivated: Option<TrackId>,
    pub(crate) packet: RtpIn,
}

#[derive(Debug, Default)]
pub(crate) struct RemoteTracks {
    tracks: HashMap<TrackId, RemoteTrack>,
    /// Every layer's SSRC: (track, layer index).
    by_ssrc: HashMap<u32, (TrackId, usize)>,
    by_mid: HashMap<Mid, TrackId>,
}

impl RemoteTracks {
    /// Sets up reception of a track the remote announced; the ops declare
    /// it on the leg.
    pub(crate) fn add(
        &mut self,
        ids: &mut Ids,
        setup: TrackSetup,
        mid_prefix: char,
    ) -> Result<(TrackId, Vec<RtcOp>), Refusal> {
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
                if s == 0 || ids.in_use(s) || !seen.insert(s) {
                    return Err(Refusal::SsrcInUse(s));
                }
            }
        }
        if setup.layers.is_empty() {
            return Err(Refusal::SsrcInUse(0));
        }
        let id = ids.track();
        let mid = ids.mid(mid_prefix);
        ids.reserve(&setup.layers);
        let mut ops = vec![RtcOp::DeclareMedia {
            mid,
            kind: media_kind(codec),
        }];
        for (i, l) in setup.layers.iter().enumerate() {
            // NACK only where a retransmission stream exists: a base peer
            // ignores NACKs (and has no RTX).
            ops.push(RtcOp::ExpectRx {
                ssrc: l.ssrc,
                rtx: l.rtx,
                mid,
                rid: l.rid.as_deref().map(Rid::from),
                nack: l.rtx.is_some(),
            });
            self.by_ssrc.insert(l.ssrc, (id, i));
        }
        self.by_mid.insert(mid, id);
        self.tracks.insert(
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
        Ok((id, ops))
    }

    /// Forgets a track (the remote removed it): the op that takes it off
    /// the leg.
    pub(crate) fn remove(&mut self, ids: &mut Ids, id: TrackId) -> Option<RtcOp> {
        let t = self.tracks.remove(&id)?;
        for l in &t.layers {
            self.by_ssrc.remove(&l.leg.ssrc);
        }
        let legs: Vec<LegLayer> = t.layers.into_iter().map(|l| l.leg).collect();
        ids.release(&legs);
        self.by_mid.remove(&t.mid);
        Some(RtcOp::RemoveMedia(t.mid))
    }

    /// The track one of whose layers has this SSRC.
    pub(crate) fn by_ssrc(&self, ssrc: u32) -> Option<TrackId> {
        self.by_ssrc.get(&ssrc).map(|(id, _)| *id)
    }

    pub(crate) fn by_mid(&self, mid: Mid) -> Option<TrackId> {
        self.by_mid.get(&mid).copied()
    }

    pub(crate) fn first_ssrc(&self, id: TrackId) -> Option<u32> {
        self.tracks.get(&id)?.layers.first().map(|l| l.leg.ssrc)
    }

    pub(crate) fn stats(&self, id: TrackId) -> Option<TrackStats> {
        self.tracks.get(&id).map(|t| t.stats.clone())
    }

    /// str0m's count of NACKs sent for a media; `false` if not a remote
    /// track's.
    pub(crate) fn set_nacks(&mut self, mid: Mid, nacks: u64) -> bool {
        match self.by_mid.get(&mid).and_then(|id| self.tracks.get_mut(id)) {
            Some(t) => {
                t.stats.nacks = nacks;
                true
            }
            None => false,
        }
    }

    /// A packet arrived on a remote track. Nothing is allocated here but
    /// the `Bytes` handle that shares str0m's payload (and the header
    /// extensions' list, when the track has any).
    pub(crate) fn on_rtp(&mut self, pkt: RtpPacket) -> Option<Received> {
        let ssrc: u32 = *pkt.header.ssrc;
        let (id, layer_index) = *self.by_ssrc.get(&ssrc)?;
        let t = self.tracks.get_mut(&id)?;
        let now = pkt.timestamp;
        let reactivated = std::mem::take(&mut t.inactive).then_some(id);
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
        let header_extensions = hdrext::from_leg(&t.ext_ids, &pkt.header.ext_vals);
        let shared = pkt.payload;
        Some(Received {
            reactivated,
            packet: RtpIn {
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
                header_extensions,
                payload: Bytes::from_owner(shared.clone()),
                received: now,
                shared: SharedPayload(Some(shared)),
            },
        })
    }

    /// Asks for a keyframe on a remote track (every layer), at most once per
    /// `interval`; requests within it are merged into one sent when it ends.
    pub(crate) fn request_keyframe(
        &mut self,
        now: Instant,
        id: TrackId,
        kind: KeyframeKind,
        interval: Duration,
        fir_allowed: bool,
    ) -> Result<Vec<RtcOp>, Error> {
        let t = self.tracks.get_mut(&id).ok_or(Error::UnknownTrack)?;
        let kind = if fir_allowed { kind } else { KeyframeKind::Pli };
        match t.last_keyframe_request {
            Some(last) if now < later(last, interval) => {
                t.stats.keyframe_requests_merged += 1;
                // FIR wins over PLI when both are waiting.
                if t.pending_keyframe != Some(KeyframeKind::Fir) {
                    t.pending_keyframe = Some(kind);
                }
                Ok(Vec::new())
            }
            _ => Ok(keyframe_ops(t, now, kind)),
        }
    }

    /// Records an in-band origin report for a remote track.
    pub(crate) fn on_origin_report(&mut self, ssrc: u32, report: SenderReport) -> Option<TrackId> {
        let (id, _) = *self.by_ssrc.get(&ssrc)?;
        self.tracks.get_mut(&id)?.report = Some(report);
        Some(id)
    }

    /// The origin NTP time of an RTP timestamp on a remote track.
    pub(crate) fn ntp_of(&self, id: TrackId, rtp: u32) -> Option<u64> {
        let t = self.tracks.get(&id)?;
        t.report?.ntp_of(rtp, t.codec.clock_rate)
    }

    /// The next time merged keyframe requests or inactivity need attention.
    pub(crate) fn poll_timeout(
        &self,
        inactive_after: Option<Duration>,
        interval: Duration,
    ) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for t in self.tracks.values() {
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

    /// Merged keyframe requests that are due (as ops) and tracks gone
    /// silent (as events).
    pub(crate) fn handle_timeout(
        &mut self,
        now: Instant,
        inactive_after: Option<Duration>,
        interval: Duration,
    ) -> (Vec<Event>, Vec<RtcOp>) {
        let mut events = Vec::new();
        let mut ops = Vec::new();
        let mut ids: Vec<TrackId> = self.tracks.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let Some(t) = self.tracks.get_mut(&id) else {
                continue;
            };
            if let (Some(kind), Some(last)) = (t.pending_keyframe, t.last_keyframe_request)
                && now >= later(last, interval)
            {
                t.pending_keyframe = None;
                ops.extend(keyframe_ops(t, now, kind));
            }
            if let (Some(after), Some(last), false) = (inactive_after, t.last_rtp, t.inactive)
                && now >= later(last, after)
            {
                t.inactive = true;
                events.push(Event::TrackInactive(id));
            }
        }
        (events, ops)
    }
}

/// One request per layer, recorded as sent now.
fn keyframe_ops(t: &mut RemoteTrack, now: Instant, kind: KeyframeKind) -> Vec<RtcOp> {
    let kind = match kind {
        KeyframeKind::Fir => KeyframeRequestKind::Fir,
        KeyframeKind::Pli => KeyframeRequestKind::Pli,
    };
    t.stats.keyframe_requests += 1;
    t.last_keyframe_request = Some(now);
    t.layers
        .iter()
        .map(|l| RtcOp::KeyframeRequest {
            ssrc: l.leg.ssrc,
            kind,
        })
        .collect()
}
