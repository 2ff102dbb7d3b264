//! Media-track handles: ours to write, the remote's to read.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::queue::{Rx, TrySendError, Tx};
use relay_proto::{
    HeaderExtension, KeyframeKind, RtpIn, RtpOut, SenderReport, TrackCodec, TrackId, TrackMeta,
    TrackStats, payload_type_is_carried,
};

use crate::driver::{Command, Control};
use crate::error::Error;
use crate::peer::{Shared, call};

/// The remote asks for a keyframe on one of our tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct KeyframeRequest {
    /// The simulcast layer asked for (an index into the track's layers; 0
    /// with one encoding).
    pub layer: u8,
    /// PLI or FIR.
    pub kind: KeyframeKind,
}

/// A track of ours that the remote accepted, from
/// [`Peer::add_track`](crate::Peer::add_track): write its RTP, hear its
/// keyframe requests.
///
/// Dropping it removes the track (as [`LocalTrack::remove`] does, without
/// waiting). Share it between a writing task and one that answers keyframe
/// requests with an `Arc`.
pub struct LocalTrack {
    id: TrackId,
    meta: TrackMeta,
    codec: TrackCodec,
    layers: Vec<String>,
    keyframes: Rx<KeyframeRequest>,
    commands: Tx<Command>,
    control: Tx<Control>,
    shared: Arc<Shared>,
    removed: AtomicBool,
    payload_limit: Option<(usize, usize)>,
}

impl std::fmt::Debug for LocalTrack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTrack")
            .field("id", &self.id)
            .field("meta", &self.meta)
            .field("codec", &self.codec.mime_type)
            .field("layers", &self.layers)
            .finish_non_exhaustive()
    }
}

/// What the driver needs to hand a [`LocalTrack`] out once it is accepted.
pub(crate) struct LocalParts {
    pub(crate) meta: TrackMeta,
    pub(crate) codec: TrackCodec,
    pub(crate) layers: Vec<String>,
    /// The largest payload the core takes ([`relay_proto::Peer::track_payload_limit`]),
    /// and the largest datagram it stands for.
    pub(crate) payload_limit: Option<(usize, usize)>,
}

impl LocalTrack {
    pub(crate) fn new(
        id: TrackId,
        parts: LocalParts,
        keyframes: Rx<KeyframeRequest>,
        commands: Tx<Command>,
        control: Tx<Control>,
        shared: Arc<Shared>,
    ) -> Self {
        LocalTrack {
            id,
            meta: parts.meta,
            codec: parts.codec,
            layers: parts.layers,
            keyframes,
            commands,
            control,
            shared,
            removed: AtomicBool::new(false),
            payload_limit: parts.payload_limit,
        }
    }

    /// The track's id on this peer.
    pub fn id(&self) -> TrackId {
        self.id
    }

    /// The stream and track ids it was added with.
    pub fn meta(&self) -> &TrackMeta {
        &self.meta
    }

    /// Its codec.
    pub fn codec(&self) -> &TrackCodec {
        &self.codec
    }

    /// Its simulcast layers by RTP stream id; empty for one encoding.
    pub fn layers(&self) -> &[String] {
        &self.layers
    }

    /// `true` once the track is removed or the peer closed: writes fail and
    /// no keyframe request comes any more.
    pub fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Relaxed) || self.keyframes.is_closed()
    }

    /// Checks what can be checked here, so that a packet handed to the
    /// peer's task is one the core takes.
    fn check(&self, packet: &RtpOut) -> Result<(), Error> {
        if self.is_removed() {
            return Err(if self.shared.is_closed() {
                self.shared.closed_error()
            } else {
                Error::TrackClosed
            });
        }
        if !payload_type_is_carried(packet.payload_type) {
            return Err(relay_proto::Error::PayloadType(packet.payload_type).into());
        }
        if usize::from(packet.layer) >= self.layers.len().max(1) {
            return Err(relay_proto::Error::UnknownLayer(packet.layer).into());
        }
        if let Some((limit, datagram)) = self.payload_limit
            && packet.payload.len() > limit
        {
            self.shared.count_rtp_too_large();
            return Err(relay_proto::Error::PacketTooLarge {
                len: packet.payload.len() + (datagram - limit),
                limit: datagram,
            }
            .into());
        }
        Ok(())
    }

    /// The largest payload [`LocalTrack::write_rtp`] takes (for a packet of
    /// the track's own type without header-extension values): the peer's
    /// largest datagram less the headers and the SRTP tag. A larger one is
    /// refused with [`relay_proto::Error::PacketTooLarge`] and counted in
    /// [`Stats::rtp_refused_too_large`](crate::Stats::rtp_refused_too_large).
    pub fn payload_limit(&self) -> Option<usize> {
        self.payload_limit.map(|(limit, _)| limit)
    }

    /// Writes one RTP packet, as forwarded from its origin (payload type,
    /// sequence number, timestamp, marker and payload cross unchanged).
    ///
    /// Waits only for room in the peer's command queue
    /// ([`Config::command_queue`](crate::Config::command_queue)), not for
    /// the packet to be sent: packets are written in order, and this applies
    /// backpressure when the peer's task falls behind. Fails at once when the
    /// track was removed, the peer is closed, or the payload type or layer
    /// cannot be carried. A packet the core still refuses later (a payload
    /// type the relay leg cannot remap) is logged and counted in
    /// [`Stats::rtp_writes_failed`](crate::Stats::rtp_writes_failed).
    pub async fn write_rtp(&self, packet: RtpOut) -> Result<(), Error> {
        self.check(&packet)?;
        let track = self.id;
        self.commands
            .send(Command::WriteRtp { track, packet })
            .await
            .map_err(|_| self.shared.closed_error())
    }

    /// [`LocalTrack::write_rtp`] that never waits: fails with
    /// [`Error::QueueFull`] when the command queue has no room (the caller
    /// usually drops the packet then, as a congested network would).
    pub fn try_write_rtp(&self, packet: RtpOut) -> Result<(), Error> {
        self.check(&packet)?;
        let track = self.id;
        match self.commands.try_send(Command::WriteRtp { track, packet }) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(Error::QueueFull),
            Err(TrySendError::Closed(_)) => Err(self.shared.closed_error()),
        }
    }

    /// The next keyframe request from the remote; `None` once the track is
    /// removed or the peer closed. Requests wait in a small queue; when it is
    /// full newer ones are dropped and counted in
    /// [`Stats::keyframe_requests_dropped`](crate::Stats::keyframe_requests_dropped)
    /// (the remote asks again if it still needs one).
    pub async fn keyframe_request(&self) -> Option<KeyframeRequest> {
        self.keyframes.recv().await
    }

    /// Gives the origin's latest sender report for this track, so the
    /// remote keeps the origin's timing (see
    /// [`relay_proto::Peer::set_origin_sender_report`]).
    pub async fn set_origin_sender_report(&self, report: SenderReport) -> Result<(), Error> {
        let track = self.id;
        self.call(|done| Command::OriginSenderReport {
            track,
            report,
            done,
        })
        .await
    }

    /// Counters of the track (what was sent).
    pub async fn stats(&self) -> Result<TrackStats, Error> {
        let track = self.id;
        self.call(|done| Command::TrackStats { track, done }).await
    }

    /// Stops relaying the track. A peer of ours sees it removed at once; a
    /// base (Go) peer sees it go silent. Packets written before are handed
    /// to the core first, but the removal may overtake those still in
    /// flight. Idempotent.
    pub async fn remove(&self) -> Result<(), Error> {
        if self.removed.swap(true, Ordering::Relaxed) {
            return Ok(());
        }
        let track = self.id;
        let removed = call(&self.commands, &self.shared, |done| Command::RemoveTrack {
            track,
            done,
        });
        match removed.await {
            Err(Error::Closed(_)) | Err(Error::TrackClosed) => Ok(()),
            r => r,
        }
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(crate::driver::Done<T>) -> Command,
    ) -> Result<T, Error> {
        if self.is_removed() && !self.shared.is_closed() {
            return Err(Error::TrackClosed);
        }
        call(&self.commands, &self.shared, make).await
    }
}

impl Drop for LocalTrack {
    fn drop(&mut self) {
        if !self.removed.swap(true, Ordering::Relaxed) && !self.keyframes.is_closed() {
            // Unbounded, and at most one per track.
            let _ = self.control.try_send(Control::RemoveTrack(self.id));
        }
    }
}

/// State of a remote track that its handle reads without asking the
/// peer's task.
#[derive(Debug)]
pub(crate) struct RemoteState {
    pub(crate) active: AtomicBool,
    /// Packets dropped because [`RemoteTrack::read_rtp`] fell behind.
    pub(crate) dropped: AtomicU64,
}

/// A track the remote added: read its RTP, ask for keyframes.
///
/// Received packets wait in a queue of
/// [`Config::track_queue`](crate::Config::track_queue) packets; when
/// [`RemoteTrack::read_rtp`] falls that far behind, newer ones are dropped
/// and counted in
/// [`Stats::rtp_packets_dropped`](crate::Stats::rtp_packets_dropped) (as are
/// packets of a track whose handle was dropped).
pub struct RemoteTrack {
    id: TrackId,
    meta: TrackMeta,
    codec: TrackCodec,
    ssrc: u32,
    layers: Vec<String>,
    header_extensions: Vec<HeaderExtension>,
    rtp: Rx<RtpIn>,
    state: Arc<RemoteState>,
    commands: Tx<Command>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RemoteTrack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteTrack")
            .field("id", &self.id)
            .field("meta", &self.meta)
            .field("codec", &self.codec.mime_type)
            .field("ssrc", &self.ssrc)
            .field("layers", &self.layers)
            .finish_non_exhaustive()
    }
}

/// What the core says about a remote track when it appears.
pub(crate) struct RemoteParts {
    pub(crate) meta: TrackMeta,
    pub(crate) codec: TrackCodec,
    pub(crate) ssrc: u32,
    pub(crate) layers: Vec<String>,
    pub(crate) header_extensions: Vec<HeaderExtension>,
}

impl RemoteTrack {
    pub(crate) fn new(
        id: TrackId,
        parts: RemoteParts,
        rtp: Rx<RtpIn>,
        state: Arc<RemoteState>,
        commands: Tx<Command>,
        shared: Arc<Shared>,
    ) -> Self {
        RemoteTrack {
            id,
            meta: parts.meta,
            codec: parts.codec,
            ssrc: parts.ssrc,
            layers: parts.layers,
            header_extensions: parts.header_extensions,
            rtp,
            state,
            commands,
            shared,
        }
    }

    /// Our id for the track.
    pub fn id(&self) -> TrackId {
        self.id
    }

    /// The remote's stream and track ids.
    pub fn meta(&self) -> &TrackMeta {
        &self.meta
    }

    /// Its codec, as the origin negotiated it.
    pub fn codec(&self) -> &TrackCodec {
        &self.codec
    }

    /// Its SSRC on the relay leg (the first layer's with simulcast).
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Simulcast layers by RTP stream id; empty for one encoding.
    pub fn layers(&self) -> &[String] {
        &self.layers
    }

    /// The origin's header extensions its packets carry.
    pub fn header_extensions(&self) -> &[HeaderExtension] {
        &self.header_extensions
    }

    /// `false` while the track has had no RTP for
    /// [`relay_proto::Config::track_inactive_after`] (until RTP flows again).
    pub fn is_active(&self) -> bool {
        self.state.active.load(Ordering::Relaxed)
    }

    /// The next RTP packet, in arrival order; `None` once the remote
    /// removed the track or the peer closed, and every packet before that
    /// was read.
    pub async fn read_rtp(&self) -> Option<RtpIn> {
        self.rtp.recv().await
    }

    /// The next RTP packet if one is waiting; never waits. With
    /// [`RemoteTrack::read_rtp`] for the first packet of a burst, this
    /// takes the rest without a wake-up each.
    pub fn try_read_rtp(&self) -> Option<RtpIn> {
        self.rtp.try_recv()
    }

    /// Packets dropped on this track because its reader fell
    /// [`Config::track_queue`](crate::Config::track_queue) packets behind;
    /// the peer's task and the sender never wait for a reader.
    pub fn dropped(&self) -> u64 {
        self.state.dropped.load(Ordering::Relaxed)
    }

    /// Asks the remote for a keyframe. At most one request per track goes
    /// out per [`relay_proto::Config::keyframe_request_interval`]; the rest
    /// are merged. FIR becomes PLI toward a peer that does not announce it.
    pub async fn request_keyframe(&self, kind: KeyframeKind) -> Result<(), Error> {
        let track = self.id;
        self.call(|done| Command::RequestKeyframe { track, kind, done })
            .await
    }

    /// Counters of the track (what was received).
    pub async fn stats(&self) -> Result<TrackStats, Error> {
        let track = self.id;
        self.call(|done| Command::TrackStats { track, done }).await
    }

    /// The origin's NTP time (32.32 fixed point) of an RTP timestamp of this
    /// track, from the last origin sender report that came in band; `None`
    /// before one came (or from a base peer). Tracks of one origin map onto
    /// one clock: this is what lip sync needs.
    pub async fn origin_ntp_time(&self, rtp_timestamp: u32) -> Result<Option<u64>, Error> {
        let track = self.id;
        self.call(|done| Command::OriginNtpTime {
            track,
            rtp: rtp_timestamp,
            done,
        })
        .await
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(crate::driver::Done<T>) -> Command,
    ) -> Result<T, Error> {
        call(&self.commands, &self.shared, make).await
    }
}
