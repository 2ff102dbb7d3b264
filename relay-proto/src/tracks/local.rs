//! Our tracks: declared on the leg, pending the remote's acceptance, then
//! written packet by packet.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::Rtc;
use str0m::media::{KeyframeRequestKind, Mid, Pt, Rid};
use str0m::rtp::{RtpWrite, SeqNo, Ssrc};

use super::codecs::is_identity_in_rtx_table;
use super::{Ids, LegLayer, RateWindow, TrackSetup, media_kind};
use crate::error::Error;
use crate::event::Event;
use crate::hdrext;
use crate::media::{KeyframeKind, RtpOut, SenderReport, TrackCodec, TrackId, TrackStats};
use crate::ops::RtcOp;

/// RTP's fixed header.
const RTP_HEADER: usize = 12;
/// The largest SRTP trailer: AEAD_AES_128_GCM's 16-byte tag (the
/// HMAC-SHA1-80 profile adds 10).
const SRTP_OVERHEAD: usize = 16;
/// A retransmission carries the original sequence number in front of the
/// payload (RFC 4588).
const RTX_OVERHEAD: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Awaiting the reply to this request id.
    Pending(u64),
    Accepted,
}

#[derive(Debug)]
struct TxLayer {
    leg: LegLayer,
    last_ext_seq: Option<u64>,
}

#[derive(Debug)]
struct LocalTrack {
    layers: Vec<TxLayer>,
    leg_pt: u8,
    ext_ids: Vec<u8>,
    mid: Mid,
    codec: TrackCodec,
    state: State,
    origin_report: Option<SenderReport>,
    stats: TrackStats,
    rate: RateWindow,
}

#[derive(Debug, Default)]
pub(crate) struct LocalTracks {
    tracks: HashMap<TrackId, LocalTrack>,
    by_mid: HashMap<Mid, TrackId>,
    /// Track requests awaiting their reply, by envelope id.
    requests: HashMap<u64, TrackId>,
    /// An Instant paired with an origin NTP time, so that write wallclocks
    /// follow the origin's clock (str0m's sender reports then keep the
    /// origin's relation between tracks, with the NTP origin rebased).
    anchor: Option<(Instant, u64)>,
}

impl LocalTracks {
    /// A track of ours (SSRCs from [`Ids::new_ssrc`]), pending the reply to
    /// `request`; the ops declare it on the leg.
    pub(crate) fn add(
        &mut self,
        ids: &mut Ids,
        setup: TrackSetup,
        request: u64,
        mid_prefix: char,
    ) -> (TrackId, Vec<RtcOp>) {
        let id = ids.track();
        let mid = ids.mid(mid_prefix);
        let mut ops = vec![RtcOp::DeclareMedia {
            mid,
            kind: media_kind(&setup.codec),
        }];
        ops.extend(setup.layers.iter().map(|l| RtcOp::DeclareTx {
            ssrc: l.ssrc,
            rtx: l.rtx,
            mid,
            rid: l.rid.as_deref().map(Rid::from),
        }));
        self.by_mid.insert(mid, id);
        self.requests.insert(request, id);
        self.tracks.insert(
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
                state: State::Pending(request),
                origin_report: None,
                stats: TrackStats::default(),
                rate: RateWindow::default(),
            },
        );
        (id, ops)
    }

    /// The track a request id belongs to, if it was a track request.
    pub(crate) fn take_request(&mut self, request: u64) -> Option<TrackId> {
        self.requests.remove(&request)
    }

    /// The request a track still awaits the reply to, if any.
    pub(crate) fn pending_request(&self, id: TrackId) -> Option<u64> {
        match self.tracks.get(&id)?.state {
            State::Pending(request) => Some(request),
            State::Accepted => None,
        }
    }

    /// The remote accepted the track: RTP may flow.
    pub(crate) fn accepted(&mut self, id: TrackId) {
        if let Some(t) = self.tracks.get_mut(&id) {
            t.state = State::Accepted;
        }
    }

    /// Forgets a track (refused, failed or removed): its first SSRC and the
    /// op that takes it off the leg.
    pub(crate) fn remove(&mut self, ids: &mut Ids, id: TrackId) -> Option<(u32, RtcOp)> {
        let t = self.tracks.remove(&id)?;
        if let State::Pending(req) = t.state {
            self.requests.remove(&req);
        }
        self.by_mid.remove(&t.mid);
        let legs: Vec<LegLayer> = t.layers.into_iter().map(|l| l.leg).collect();
        ids.release(&legs);
        Some((
            legs.first().map_or(0, |l| l.ssrc),
            RtcOp::RemoveMedia(t.mid),
        ))
    }

    pub(crate) fn contains(&self, id: TrackId) -> bool {
        self.tracks.contains_key(&id)
    }

    /// The largest payload a packet of the track's own type, with no header
    /// extension values, may carry within `max_datagram`.
    pub(crate) fn payload_limit(&self, id: TrackId, max_datagram: usize) -> Option<usize> {
        let t = self.tracks.get(&id)?;
        let rtx = t.layers.iter().any(|l| l.leg.rtx.is_some());
        let overhead = RTP_HEADER
            + hdrext::block_len(&Default::default())
            + SRTP_OVERHEAD
            + if rtx { RTX_OVERHEAD } else { 0 };
        Some(max_datagram.saturating_sub(overhead))
    }

    pub(crate) fn first_ssrc(&self, id: TrackId) -> Option<u32> {
        self.tracks.get(&id)?.layers.first().map(|l| l.leg.ssrc)
    }

    pub(crate) fn stats(&self, id: TrackId) -> Option<TrackStats> {
        self.tracks.get(&id).map(|t| t.stats.clone())
    }

    /// Checks one packet and writes it: one mutation of `rtc`. The caller
    /// checked the payload type is carried. A packet whose datagram would
    /// exceed `max_datagram` is refused and counted on the track.
    pub(crate) fn write(
        &mut self,
        rtc: &mut Rtc,
        rtx_leg: bool,
        max_datagram: usize,
        now: Instant,
        id: TrackId,
        pkt: RtpOut,
    ) -> Result<(), Error> {
        let anchor = self.anchor;
        let t = self.tracks.get_mut(&id).ok_or(Error::UnknownTrack)?;
        if t.state != State::Accepted {
            return Err(Error::TrackNotAccepted);
        }
        let layer = t
            .layers
            .get_mut(pkt.layer as usize)
            .ok_or(Error::UnknownLayer(pkt.layer))?;
        // The track's own type crosses on its leg type (remapped with
        // `rtx`); another type crosses as is where the table has it.
        let (wire_pt, nackable) = if pkt.payload_type == t.codec.payload_type {
            (t.leg_pt, layer.leg.rtx.is_some())
        } else if !rtx_leg || is_identity_in_rtx_table(pkt.payload_type) {
            (pkt.payload_type, false)
        } else {
            return Err(Error::PayloadType(pkt.payload_type));
        };
        let ext_vals = hdrext::to_leg(&t.ext_ids, &pkt.header_extensions);
        let len = RTP_HEADER
            + pkt.payload.len()
            + hdrext::block_len(&ext_vals)
            + SRTP_OVERHEAD
            + if nackable { RTX_OVERHEAD } else { 0 };
        if len > max_datagram {
            t.stats.refused_too_large += 1;
            return Err(Error::PacketTooLarge {
                len,
                limit: max_datagram,
            });
        }
        // Extend the origin's 16-bit number from ROC 0 on this leg, so the
        // receiver (which assumes ROC 0) decrypts a stream joined anywhere.
        let ext = match layer.last_ext_seq {
            None => pkt.sequence_number as u64,
            Some(prev) => extend_seq(prev, pkt.sequence_number),
        };
        if layer.last_ext_seq.is_none_or(|p| ext > p) {
            layer.last_ext_seq = Some(ext);
        }
        let wallclock = match (anchor, t.origin_report) {
            (Some((at, anchor_ntp)), Some(report)) => report
                .ntp_of(pkt.timestamp, t.codec.clock_rate)
                .and_then(|ntp| instant_of_ntp(at, anchor_ntp, ntp))
                .unwrap_or(now),
            _ => now,
        };
        let (timestamp, marker, size) = (pkt.timestamp, pkt.marker, pkt.payload.len());
        let payload: Arc<[u8]> = pkt.into_shared_payload();
        let mut api = rtc.direct_api();
        let stream = api
            .stream_tx(&Ssrc::from(layer.leg.ssrc))
            .ok_or(Error::UnknownTrack)?;
        stream.write_rtp(
            RtpWrite::new(
                Pt::from(wire_pt),
                SeqNo::from(ext),
                timestamp,
                wallclock,
                payload,
            )
            .marker(marker)
            .ext_vals(ext_vals)
            .nackable(nackable),
        );
        t.stats.packets += 1;
        t.stats.bytes += size as u64;
        t.rate.add(now, size, &mut t.stats);
        Ok(())
    }

    /// Records the origin's latest sender report for a track; returns the
    /// track's first SSRC.
    pub(crate) fn set_origin_report(
        &mut self,
        now: Instant,
        id: TrackId,
        report: SenderReport,
    ) -> Result<u32, Error> {
        let t = self.tracks.get_mut(&id).ok_or(Error::UnknownTrack)?;
        t.origin_report = Some(report);
        if self.anchor.is_none() {
            self.anchor = Some((now, report.ntp));
        }
        t.layers
            .first()
            .map(|l| l.leg.ssrc)
            .ok_or(Error::UnknownTrack)
    }

    /// The remote asked for a keyframe on one of our tracks (str0m names
    /// the mid, each track has its own, and the rid of a simulcast layer).
    pub(crate) fn on_keyframe_request(
        &mut self,
        mid: Mid,
        rid: Option<Rid>,
        kind: KeyframeRequestKind,
    ) -> Option<Event> {
        let id = *self.by_mid.get(&mid)?;
        let t = self.tracks.get_mut(&id)?;
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
        Some(Event::KeyframeRequest {
            track: id,
            layer,
            kind,
        })
    }

    /// str0m's count of NACKs received for a media; `false` if not ours.
    pub(crate) fn set_nacks(&mut self, mid: Mid, nacks: u64) -> bool {
        match self.by_mid.get(&mid).and_then(|id| self.tracks.get_mut(id)) {
            Some(t) => {
                t.stats.nacks = nacks;
                true
            }
            None => false,
        }
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
