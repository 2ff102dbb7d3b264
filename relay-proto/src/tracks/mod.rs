//! Media tracks: the codec table ([`codecs`]), our tracks ([`local`]) and
//! the remote's ([`remote`]). A sub-machine the peer drives. It changes
//! str0m only by returning [`RtcOp`]s for the peer to apply one at a time,
//! except for one RTP write per [`Peer::write_rtp`](crate::Peer::write_rtp)
//! call, which is itself one mutation.

pub(crate) mod codecs;
pub(crate) mod local;
pub(crate) mod remote;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use str0m::media::{MediaKind, Mid};

use crate::media::{TrackCodec, TrackId, TrackKind, TrackStats};

pub(crate) use local::LocalTracks;
pub(crate) use remote::RemoteTracks;

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

/// What a new track is made of, on either side.
#[derive(Debug)]
pub(crate) struct TrackSetup {
    pub(crate) codec: TrackCodec,
    pub(crate) layers: Vec<LegLayer>,
    /// The payload type on the relay leg (the origin's unless remapped).
    pub(crate) leg_pt: u8,
    /// The origin's header-extension ids, in slot order.
    pub(crate) ext_ids: Vec<u8>,
}

/// Ids, mids and SSRCs, unique across both halves.
#[derive(Debug, Default)]
pub(crate) struct Ids {
    next_id: u64,
    next_mid: u64,
    /// Every SSRC in use by a track of ours or the remote's.
    ssrcs: HashSet<u32>,
}

impl Ids {
    fn track(&mut self) -> TrackId {
        self.next_id += 1;
        TrackId(self.next_id)
    }

    /// Mids must not clash between the two ends (str0m may send its mid in
    /// a header extension): each end names its own with its own prefix.
    fn mid(&mut self, prefix: char) -> Mid {
        self.next_mid += 1;
        Mid::from(format!("{prefix}{}", self.next_mid).as_str())
    }

    /// A fresh SSRC, reserved until [`Ids::release`].
    pub(crate) fn new_ssrc(&mut self, rng: &mut fastrand::Rng) -> u32 {
        loop {
            let s = rng.u32(1..);
            if self.ssrcs.insert(s) {
                return s;
            }
        }
    }

    pub(crate) fn in_use(&self, ssrc: u32) -> bool {
        self.ssrcs.contains(&ssrc)
    }

    fn reserve(&mut self, layers: &[LegLayer]) {
        for l in layers {
            self.ssrcs.insert(l.ssrc);
            self.ssrcs.extend(l.rtx);
        }
    }

    /// Gives back the SSRCs of a track that is gone (or was never made).
    pub(crate) fn release(&mut self, layers: &[LegLayer]) {
        for l in layers {
            self.ssrcs.remove(&l.ssrc);
            if let Some(rtx) = l.rtx {
                self.ssrcs.remove(&rtx);
            }
        }
    }
}

/// Tracks of one peer, both directions.
#[derive(Debug, Default)]
pub(crate) struct Tracks {
    /// The `Rtc` has the `rtx` codec table: tracks are remapped onto leg
    /// types.
    pub(crate) rtx_leg: bool,
    pub(crate) ids: Ids,
    pub(crate) local: LocalTracks,
    pub(crate) remote: RemoteTracks,
}

impl Tracks {
    /// Counters of one track (sent for ours, received for the remote's).
    pub(crate) fn stats(&self, id: TrackId) -> Option<TrackStats> {
        self.local.stats(id).or_else(|| self.remote.stats(id))
    }
}

/// Bit rate over the last full second.
#[derive(Debug, Default)]
pub(crate) struct RateWindow {
    start: Option<Instant>,
    bytes: u64,
}

impl RateWindow {
    pub(crate) fn add(&mut self, now: Instant, bytes: usize, stats: &mut TrackStats) {
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

pub(crate) fn media_kind(codec: &TrackCodec) -> MediaKind {
    match codec.kind() {
        Some(TrackKind::Audio) => MediaKind::Audio,
        _ => MediaKind::Video,
    }
}
