//! The track half of the peer's API (PROTOCOL.md A.4 and our extensions).

use super::*;
use crate::media::{HeaderExtension, TrackOptions};
use crate::tracks::{LegLayer, TrackSetup};
use crate::wire::{HeaderExtensionMap, LayerEncoding, TrackExtensions};

impl Peer {
    // ---------------------------------------------------------------- tracks

    /// Adds a track to relay: sends its signal (`ion_relay_request`,
    /// PROTOCOL.md A.4) and returns its id. [`Event::TrackAdded`] follows
    /// when the remote accepts it, or [`Event::TrackFailed`] (timed out
    /// after [`Config::track_request_timeout`], or closed). RTP written
    /// before acceptance is refused with [`Error::TrackNotAccepted`].
    ///
    /// The codec's payload type is carried unchanged and must be in
    /// 0..=63 or 96..=127. Drain the outputs afterwards.
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
        if options.header_extensions.len() > crate::hdrext::SLOT_IDS.len() {
            return Err(Error::TooManyHeaderExtensions(
                options.header_extensions.len(),
            ));
        }
        self.advance(now);
        // With `rtx` the leg carries the track on a type that has a resend
        // type, and each encoding gets a retransmission SSRC (Go's own
        // `rtx.ssrc` field).
        let (leg_pt, rtx_pt) = if self.tracks.rtx_leg {
            tracks::leg_payload_type(&codec)
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
                ssrc: self.tracks.new_ssrc(&mut self.ssrc_rng),
                rtx: rtx_pt.map(|_| self.tracks.new_ssrc(&mut self.ssrc_rng)),
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
        let request = match self.send_request(
            TRACK_EVENT,
            Some(Bytes::from(signal.encode())),
            self.config.track_request_timeout,
        ) {
            Ok(r) => r,
            Err(e) => {
                self.tracks.release_ssrcs(&layers);
                return Err(e);
            }
        };
        let prefix = self.mid_prefix();
        let setup = TrackSetup {
            codec,
            layers,
            leg_pt,
            ext_ids: options.header_extensions.iter().map(|h| h.id).collect(),
        };
        let id = self.tracks.add_local(&mut self.rtc, setup, request, prefix);
        self.drain();
        Ok(id)
    }

    /// Writes one RTP packet on a track of ours, as forwarded from its
    /// origin: payload type, sequence number, timestamp, marker and payload
    /// cross unchanged. Drain the outputs afterwards.
    pub fn write_rtp(&mut self, now: Instant, track: TrackId, packet: RtpOut) -> Result<(), Error> {
        self.check_open()?;
        if !payload_type_is_carried(packet.payload_type) {
            return Err(Error::PayloadType(packet.payload_type));
        }
        self.advance(now);
        self.tracks
            .write(&mut self.rtc, self.last_now, track, packet)?;
        self.drain();
        Ok(())
    }

    /// Asks the remote for a keyframe on one of its tracks. At most one
    /// request per track goes out per [`Config::keyframe_request_interval`];
    /// the rest are merged and counted. FIR becomes PLI toward a peer that
    /// does not announce the `fir` feature. Drain the outputs afterwards.
    pub fn request_keyframe(
        &mut self,
        now: Instant,
        track: TrackId,
        kind: KeyframeKind,
    ) -> Result<(), Error> {
        self.check_open()?;
        self.advance(now);
        let fir = self.feature_enabled(FEATURE_FIR);
        self.tracks.request_keyframe(
            &mut self.rtc,
            self.last_now,
            track,
            kind,
            self.config.keyframe_request_interval,
            fir,
        )?;
        self.drain();
        Ok(())
    }

    /// Gives the origin's latest sender report for a track of ours, so the
    /// remote keeps the origin's timing: our RTP writes take their wall
    /// clock from it (so the relay leg's sender reports follow the origin's
    /// clock, rebased), and a peer of ours also gets the report itself in
    /// band (`sender-report` feature). Drain the outputs afterwards.
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
            .set_origin_report(self.last_now, track, report)?;
        if self.feature_enabled(FEATURE_SENDER_REPORT) {
            let body = format!(
                "{{\"ssrc\":{ssrc},\"ntp\":{},\"rtp\":{}}}",
                report.ntp, report.rtp
            );
            self.enqueue_message(SENDER_REPORT_EVENT, Some(Bytes::from(body)))?;
            self.drain();
        }
        Ok(())
    }

    /// Stops relaying a track of ours. A peer of ours learns at once
    /// ([`Event::TrackRemoved`], `track-remove` feature); a base peer just
    /// sees the track go silent. Drain the outputs afterwards.
    pub fn remove_track(&mut self, now: Instant, track: TrackId) -> Result<(), Error> {
        self.check_open()?;
        self.advance(now);
        if !self.tracks.is_local(track) {
            return Err(Error::UnknownTrack);
        }
        let ssrc = self.tracks.local_ssrc(track);
        // A track the remote has not accepted yet: its add ends here, once
        // (TrackFailed, cancelled). The remote may still accept it; the
        // removal below tells it not to wait for RTP.
        if let Some(request) = self.tracks.pending_request(track)
            && self.outbound.complete(request)
        {
            self.request_failed(request, RequestError::Cancelled);
        }
        self.tracks.drop_local(&mut self.rtc, track);
        if let Some(ssrc) = ssrc
            && self.feature_enabled(FEATURE_TRACK_REMOVE)
        {
            self.enqueue_message(
                TRACK_REMOVE_EVENT,
                Some(Bytes::from(format!("{{\"ssrc\":{ssrc}}}"))),
            )?;
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
        self.tracks.ntp_of(track, rtp_timestamp)
    }

    /// The SSRC of a track on the relay leg (ours or the remote's).
    pub fn track_ssrc(&self, track: TrackId) -> Option<u32> {
        self.tracks
            .local_ssrc(track)
            .or_else(|| self.tracks.remote_ssrc(track))
    }

    /// Mids must not clash between the two ends (str0m sends its mid in a
    /// header extension): each end names its own with its own prefix.
    pub(super) fn mid_prefix(&self) -> char {
        match self.role {
            Some(Role::Answerer) => 'a',
            _ => 'o',
        }
    }

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
        let rtx_of = |r: u32| (self.tracks.rtx_leg && r != 0).then_some(r);
        let leg_pt = if self.tracks.rtx_leg {
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
                    .take(crate::hdrext::SLOT_IDS.len())
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
        match self.tracks.add_remote(&mut self.rtc, setup, prefix) {
            Ok(track) => {
                info!(peer = %self.meta.peer_id, ssrc, mime = %codec.mime_type, "remote track");
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
                // The reply tells the sender it may start RTP, so it goes
                // after the Track event: no RTP can precede it.
                let reply = Envelope {
                    id: env.id,
                    reply: true,
                    event: env.event,
                    payload: None,
                };
                if let Err(e) = self.enqueue(&reply) {
                    warn!("track reply not sent: {e}");
                }
            }
            Err(why) => {
                warn!(peer = %self.meta.peer_id, ?why, "remote track refused");
                self.stats.drops.refused_tracks += 1;
            }
        }
    }

    pub(super) fn on_extension_message(&mut self, env: &Envelope) {
        let parsed: Option<serde_json::Value> = env
            .payload
            .as_deref()
            .and_then(|p| serde_json::from_slice(p).ok());
        let field = |k: &str| {
            parsed
                .as_ref()
                .and_then(|v| v.get(k))
                .and_then(|v| v.as_u64())
        };
        let Some(ssrc) = field("ssrc").and_then(|s| u32::try_from(s).ok()) else {
            self.stats.drops.bad_extension_messages += 1;
            return;
        };
        if env.event == TRACK_REMOVE_EVENT {
            match self.tracks.remote_by_ssrc(ssrc) {
                Some(track) => {
                    self.tracks.drop_remote(&mut self.rtc, track);
                    self.push_event(Event::TrackRemoved(track));
                }
                None => self.stats.drops.bad_extension_messages += 1,
            }
            return;
        }
        let (Some(ntp), Some(rtp)) = (
            field("ntp"),
            field("rtp").and_then(|r| u32::try_from(r).ok()),
        ) else {
            self.stats.drops.bad_extension_messages += 1;
            return;
        };
        let report = SenderReport { ntp, rtp };
        match self.tracks.on_origin_report(ssrc, report) {
            Some(track) => self.push_event(Event::SenderReport {
                track,
                report,
                origin: true,
            }),
            None => self.stats.drops.bad_extension_messages += 1,
        }
    }
}

/// 64-bit NTP time (32.32) of a system time.
pub(super) fn ntp_of_system_time(t: std::time::SystemTime) -> u64 {
    const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() + NTP_UNIX_OFFSET;
    let frac = ((d.subsec_nanos() as u64) << 32) / 1_000_000_000;
    (secs << 32) | frac
}
