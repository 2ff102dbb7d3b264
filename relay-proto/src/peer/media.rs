//! The track half of the peer's API (PROTOCOL.md A.4 and our extensions),
//! and what the remote's track messages become.

use std::time::Instant;

use bytes::Bytes;
use tracing::{info, warn};

use super::{Peer, Role};
use crate::error::Error;
use crate::event::{Event, RequestError};
use crate::hdrext;
use crate::media::{
    HeaderExtension, KeyframeKind, RtpOut, SenderReport, TrackCodec, TrackId, TrackMeta,
    TrackOptions, TrackStats, payload_type_is_carried,
};
use crate::tracks::{LegLayer, TrackSetup, codecs};
use crate::wire::{
    Envelope, Extension, FEATURE_FIR, FEATURE_HEADER_EXTENSIONS, FEATURE_SENDER_REPORT,
    FEATURE_SIMULCAST, FEATURE_TRACK_REMOVE, HeaderExtensionMap, LayerEncoding, OriginReport,
    SENDER_REPORT_EVENT, TRACK_EVENT, TRACK_REMOVE_EVENT, TrackExtensions, TrackRemove,
    TrackSignal,
};

impl Peer {
    /// Adds a track to relay: sends its signal (`ion_relay_request`,
    /// PROTOCOL.md A.4) and returns its id. [`Event::TrackAdded`] follows
    /// when the remote accepts it, or [`Event::TrackFailed`] (timed out
    /// after [`Config::track_request_timeout`](crate::Config::track_request_timeout),
    /// or closed). RTP written before acceptance is refused with
    /// [`Error::TrackNotAccepted`].
    ///
    /// The codec's payload type is carried unchanged and must be in
    /// 0..=63 or 96..=127. Then poll the outputs.
    pub fn add_track(
        &mut self,
        now: Instant,
        meta: TrackMeta,
        codec: TrackCodec,
    ) -> Result<TrackId, Error> {
        self.add_track_with(now, meta, codec, TrackOptions::default())
    }

    /// [`Peer::add_track`] with simulcast layers and the origin's header
    /// extensions (our extensions: both need the remote to announce them,
    /// else the add fails with [`Error::ExtensionNotNegotiated`]).
    pub fn add_track_with(
        &mut self,
        now: Instant,
        meta: TrackMeta,
        codec: TrackCodec,
        options: TrackOptions,
    ) -> Result<TrackId, Error> {
        self.check_open()?;
        if !payload_type_is_carried(codec.payload_type) {
            return Err(Error::PayloadType(codec.payload_type));
        }
        if codec.kind().is_none() {
            return Err(Error::MimeType(codec.mime_type));
        }
        if self.role.is_none() {
            return Err(Error::SignalState(
                "make or accept an offer before adding tracks",
            ));
        }
        if !options.simulcast.is_empty() && !self.feature_enabled(FEATURE_SIMULCAST) {
            return Err(Error::ExtensionNotNegotiated(FEATURE_SIMULCAST));
        }
        if !options.header_extensions.is_empty() && !self.feature_enabled(FEATURE_HEADER_EXTENSIONS)
        {
            return Err(Error::ExtensionNotNegotiated(FEATURE_HEADER_EXTENSIONS));
        }
        if options.header_extensions.len() > hdrext::SLOT_IDS.len() {
            return Err(Error::TooManyHeaderExtensions(
                options.header_extensions.len(),
            ));
        }
        self.advance(now);
        // With `rtx` the leg carries the track on a type that has a resend
        // type, and each encoding gets a retransmission SSRC (Go's own
        // `rtx.ssrc` field).
        let (leg_pt, rtx_pt) = if self.tracks.rtx_leg {
            codecs::leg_payload_type(&codec)
        } else {
            (codec.payload_type, None)
        };
        let rids: Vec<Option<String>> = if options.simulcast.is_empty() {
            vec![None]
        } else {
            options.simulcast.iter().cloned().map(Some).collect()
        };
        let layers: Vec<LegLayer> = rids
            .into_iter()
            .map(|rid| LegLayer {
                rid,
                ssrc: self.tracks.ids.new_ssrc(&mut self.ssrc_rng),
                rtx: rtx_pt.map(|_| self.tracks.ids.new_ssrc(&mut self.ssrc_rng)),
            })
            .collect();
        let first = &layers[0];
        let mut signal =
            TrackSignal::new(first.ssrc, meta.stream_id, meta.track_id, codec.to_wire());
        signal.encodings.payload_type = leg_pt;
        signal.encodings.rtx.ssrc = first.rtx.unwrap_or(0);
        signal.encodings.rid = first.rid.clone().unwrap_or_default();
        if !options.simulcast.is_empty() || !options.header_extensions.is_empty() {
            signal.relay = Some(TrackExtensions {
                header_extensions: options
                    .header_extensions
                    .iter()
                    .map(|h| HeaderExtensionMap {
                        uri: h.uri.clone(),
                        id: h.id,
                    })
                    .collect(),
                layers: if options.simulcast.is_empty() {
                    Vec::new()
                } else {
                    layers
                        .iter()
                        .map(|l| LayerEncoding {
                            rid: l.rid.clone().unwrap_or_default(),
                            ssrc: l.ssrc,
                            rtx: l.rtx.unwrap_or(0),
                        })
                        .collect()
                },
            });
        }
        let limit = self.remote_max_message_size();
        let request = match self.signalling.request(
            self.last_now,
            TRACK_EVENT,
            Some(Bytes::from(signal.encode())),
            self.config.track_request_timeout,
            limit,
            &mut self.stats,
        ) {
            Ok(r) => r,
            Err(e) => {
                self.tracks.ids.release(&layers);
                return Err(e);
            }
        };
        let setup = TrackSetup {
            codec,
            layers,
            leg_pt,
            ext_ids: options.header_extensions.iter().map(|h| h.id).collect(),
        };
        let prefix = self.mid_prefix();
        let (id, ops) = self
            .tracks
            .local
            .add(&mut self.tracks.ids, setup, request, prefix);
        self.ops.extend(ops);
        self.drain();
        Ok(id)
    }

    /// Writes one RTP packet on a track of ours, as forwarded from its
    /// origin: payload type, sequence number, timestamp, marker and payload
    /// cross unchanged. A packet whose datagram would exceed
    /// [`Config::max_datagram_size`](crate::Config::max_datagram_size) is
    /// refused ([`Error::PacketTooLarge`]) and counted. Then poll the
    /// outputs: packets written one after the other leave together at the
    /// next poll, each in its own datagram.
    pub fn write_rtp(&mut self, now: Instant, track: TrackId, packet: RtpOut) -> Result<(), Error> {
        self.check_open()?;
        if !payload_type_is_carried(packet.payload_type) {
            return Err(Error::PayloadType(packet.payload_type));
        }
        self.advance(now);
        let written = self.tracks.local.write(
            &mut self.rtc,
            self.tracks.rtx_leg,
            self.config.max_datagram_size,
            self.last_now,
            track,
            packet,
        );
        match written {
            Ok(()) => {
                // Drained at the next poll, once for all the packets
                // written before it: str0m only queues a written packet,
                // and every drain polls SCTP as well.
                self.media_written = true;
                Ok(())
            }
            Err(e @ Error::PacketTooLarge { .. }) => {
                self.stats.rtp_refused_too_large += 1;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Asks the remote for a keyframe on one of its tracks. At most one
    /// request per track goes out per
    /// [`Config::keyframe_request_interval`](crate::Config::keyframe_request_interval);
    /// the rest are merged and counted. FIR becomes PLI toward a peer that
    /// does not announce the `fir` feature. Then poll the outputs.
    pub fn request_keyframe(
        &mut self,
        now: Instant,
        track: TrackId,
        kind: KeyframeKind,
    ) -> Result<(), Error> {
        self.check_open()?;
        self.advance(now);
        let fir = self.feature_enabled(FEATURE_FIR);
        let ops = self.tracks.remote.request_keyframe(
            self.last_now,
            track,
            kind,
            self.config.keyframe_request_interval,
            fir,
        )?;
        self.ops.extend(ops);
        self.drain();
        Ok(())
    }

    /// Gives the origin's latest sender report for a track of ours, so the
    /// remote keeps the origin's timing: our RTP writes take their wall
    /// clock from it (so the relay leg's sender reports follow the origin's
    /// clock, rebased), and a peer of ours also gets the report itself in
    /// band (`sender-report` feature). Then poll the outputs.
    pub fn set_origin_sender_report(
        &mut self,
        now: Instant,
        track: TrackId,
        report: SenderReport,
    ) -> Result<(), Error> {
        self.check_open()?;
        self.advance(now);
        let ssrc = self
            .tracks
            .local
            .set_origin_report(self.last_now, track, report)?;
        if self.feature_enabled(FEATURE_SENDER_REPORT) {
            let body = OriginReport {
                ssrc,
                ntp: report.ntp,
                rtp: report.rtp,
            }
            .encode();
            let limit = self.remote_max_message_size();
            self.signalling.enqueue_message(
                SENDER_REPORT_EVENT,
                Some(Bytes::from(body)),
                limit,
                &mut self.stats,
            )?;
        }
        Ok(())
    }

    /// Stops relaying a track of ours. A peer of ours learns at once
    /// ([`Event::TrackRemoved`], `track-remove` feature); a base peer just
    /// sees the track go silent. Then poll the outputs.
    pub fn remove_track(&mut self, now: Instant, track: TrackId) -> Result<(), Error> {
        self.check_open()?;
        self.advance(now);
        if !self.tracks.local.contains(track) {
            return Err(Error::UnknownTrack);
        }
        // A track the remote has not accepted yet: its add ends here, once
        // (TrackFailed, cancelled). The remote may still accept it; the
        // removal below tells it not to wait for RTP.
        if let Some(request) = self.tracks.local.pending_request(track)
            && self.signalling.complete(request)
        {
            self.request_failed(request, RequestError::Cancelled);
        }
        if let Some((ssrc, op)) = self.tracks.local.remove(&mut self.tracks.ids, track) {
            self.ops.push_back(op);
            if self.feature_enabled(FEATURE_TRACK_REMOVE) {
                let limit = self.remote_max_message_size();
                let body = TrackRemove { ssrc }.encode();
                if let Err(e) = self.signalling.enqueue_message(
                    TRACK_REMOVE_EVENT,
                    Some(Bytes::from(body)),
                    limit,
                    &mut self.stats,
                ) {
                    // The track is gone here either way; the remote then
                    // sees it go silent.
                    warn!(peer = %self.meta.peer_id, "track removal not sent: {e}");
                }
            }
        }
        self.drain();
        Ok(())
    }

    /// Counters of one track (sent for ours, received for the remote's).
    pub fn track_stats(&self, track: TrackId) -> Option<TrackStats> {
        self.tracks.stats(track)
    }

    /// The origin's NTP time (32.32 fixed point) of an RTP timestamp on a
    /// remote track, from the last origin sender report received in band;
    /// `None` before one arrived. Tracks of one origin map onto one clock,
    /// so this is what lip sync needs.
    pub fn origin_ntp_time(&self, track: TrackId, rtp_timestamp: u32) -> Option<u64> {
        self.tracks.remote.ntp_of(track, rtp_timestamp)
    }

    /// The largest payload [`Peer::write_rtp`] takes on a track of ours
    /// (for a packet of its own payload type without header-extension
    /// values): [`Config::max_datagram_size`](crate::Config::max_datagram_size)
    /// less the RTP header, the extension block, the SRTP tag and, with
    /// retransmission, the RTX header. 1,428 bytes toward a Go peer with
    /// the defaults.
    pub fn track_payload_limit(&self, track: TrackId) -> Option<usize> {
        self.tracks
            .local
            .payload_limit(track, self.config.max_datagram_size)
    }

    /// The SSRC of a track on the relay leg (ours or the remote's).
    pub fn track_ssrc(&self, track: TrackId) -> Option<u32> {
        self.tracks
            .local
            .first_ssrc(track)
            .or_else(|| self.tracks.remote.first_ssrc(track))
    }

    /// Each end names its mids with its own prefix (see `tracks::Ids`).
    fn mid_prefix(&self) -> char {
        match self.role {
            Some(Role::Answerer) => 'a',
            _ => 'o',
        }
    }

    /// A track signal from the remote: reception is set up, the application
    /// hears of the track, and only then the reply (which lets the sender
    /// start RTP) is queued.
    pub(super) fn on_track_signal(&mut self, env: Envelope) {
        let signal = match env.payload.as_deref().map(TrackSignal::decode) {
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                warn!(peer = %self.meta.peer_id, "unparsable track signal: {e}");
                self.stats.drops.refused_tracks += 1;
                return;
            }
            None => {
                self.stats.drops.refused_tracks += 1;
                return;
            }
        };
        let codec = TrackCodec::from_wire(&signal.track_info.codec_parameters);
        let ssrc = signal.encodings.ssrc;
        // A base peer's leg type is the origin's and it has no RTX; with
        // `rtx` the encodings name the leg type and the RTX SSRC.
        let rtx_leg = self.tracks.rtx_leg;
        let rtx_of = |r: u32| (rtx_leg && r != 0).then_some(r);
        let leg_pt = if rtx_leg {
            signal.encodings.payload_type
        } else {
            codec.payload_type
        };
        let extras = signal
            .relay
            .clone()
            .filter(|_| self.remote_speaks_extensions())
            .unwrap_or_default();
        let layers: Vec<LegLayer> =
            if extras.layers.is_empty() || !self.feature_enabled(FEATURE_SIMULCAST) {
                vec![LegLayer {
                    rid: None,
                    ssrc,
                    rtx: rtx_of(signal.encodings.rtx.ssrc),
                }]
            } else {
                extras
                    .layers
                    .iter()
                    .map(|l| LegLayer {
                        rid: Some(l.rid.clone()),
                        ssrc: l.ssrc,
                        rtx: rtx_of(l.rtx),
                    })
                    .collect()
            };
        let header_extensions: Vec<HeaderExtension> =
            if self.feature_enabled(FEATURE_HEADER_EXTENSIONS) {
                extras
                    .header_extensions
                    .iter()
                    .take(hdrext::SLOT_IDS.len())
                    .map(|h| HeaderExtension {
                        id: h.id,
                        uri: h.uri.clone(),
                    })
                    .collect()
            } else {
                Vec::new()
            };
        let rids: Vec<String> = layers.iter().filter_map(|l| l.rid.clone()).collect();
        let setup = TrackSetup {
            codec: codec.clone(),
            layers,
            leg_pt,
            ext_ids: header_extensions.iter().map(|h| h.id).collect(),
        };
        let prefix = self.mid_prefix();
        match self.tracks.remote.add(&mut self.tracks.ids, setup, prefix) {
            Ok((track, ops)) => {
                info!(peer = %self.meta.peer_id, ssrc, mime = %codec.mime_type, "remote track");
                self.ops.extend(ops);
                self.push_event(Event::Track {
                    track,
                    meta: TrackMeta {
                        stream_id: signal.track_info.stream_id,
                        track_id: signal.track_info.track_id,
                    },
                    codec,
                    ssrc,
                    layers: rids,
                    header_extensions,
                });
                // The drain loop applies the ops above before it writes any
                // message, so reception is set up before the reply leaves.
                let limit = self.remote_max_message_size();
                if let Err(e) =
                    self.signalling
                        .reply_to_track(env.id, env.event, limit, &mut self.stats)
                {
                    warn!("track reply not sent: {e}");
                }
            }
            Err(why) => {
                warn!(peer = %self.meta.peer_id, ?why, "remote track refused");
                self.stats.drops.refused_tracks += 1;
            }
        }
    }

    /// An extension message from a peer of ours.
    pub(super) fn on_extension(&mut self, ext: Extension) {
        match ext {
            Extension::TrackRemove(TrackRemove { ssrc }) => {
                match self.tracks.remote.by_ssrc(ssrc) {
                    Some(track) => {
                        if let Some(op) = self.tracks.remote.remove(&mut self.tracks.ids, track) {
                            self.ops.push_back(op);
                        }
                        self.push_event(Event::TrackRemoved(track));
                    }
                    None => self.stats.drops.bad_extension_messages += 1,
                }
            }
            Extension::OriginReport(OriginReport { ssrc, ntp, rtp }) => {
                let report = SenderReport { ntp, rtp };
                match self.tracks.remote.on_origin_report(ssrc, report) {
                    Some(track) => self.push_event(Event::SenderReport {
                        track,
                        report,
                        origin: true,
                    }),
                    None => self.stats.drops.bad_extension_messages += 1,
                }
            }
        }
    }
}
