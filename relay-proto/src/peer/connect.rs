//! The one round trip: making and taking offers and answers, and the
//! `Rtc` they configure.

use std::time::{Duration, Instant};

use bytes::Bytes;
use str0m::channel::{ChannelConfig, Reliability as RtcReliability, SctpInitData};
use str0m::ice::IceCreds;
use str0m::{Candidate, Rtc, RtcConfig};
use tracing::{debug, info};

use super::{GO_COUNTER_STREAM, Peer, Role};
use crate::candidates;
use crate::cert::Certificate;
use crate::config::Config;
use crate::error::Error;
use crate::ops::RtcOp;
use crate::time::later;
use crate::tracks::codecs;
use crate::wire::{
    Announcement, DtlsParameters, DtlsRole, EXTENSION_VERSION, FEATURE_FAST_SETUP, FEATURE_RTX,
    FEATURES, IceParameters, SIGNAL_LABEL, SIGNAL_STREAM_FAST, SctpCapabilities, Signal,
    SignalCandidate,
};

impl Peer {
    /// Offering side, step 1: the offer to hand to the signal function.
    ///
    /// Then pass the answer to [`Peer::accept_answer`], and drain the
    /// outputs. A second call, or a call on a peer that answered, fails.
    pub fn create_offer(&mut self, now: Instant) -> Result<Vec<u8>, Error> {
        self.check_open()?;
        if self.role.is_some() {
            return Err(Error::SignalState(
                "this peer already made an offer or answered one",
            ));
        }
        self.advance(now);
        self.role = Some(Role::Offerer);
        self.mutate(|rtc| rtc.direct_api().set_ice_controlling(true));
        let mut announcement = self.own_announcement();
        if let Some(a) = announcement.as_mut() {
            let mut snap = SctpInitData::new();
            match snap.local_init_chunk() {
                Ok(init) => {
                    a.sctp_init = Some(Bytes::from(init));
                    self.snap = Some(snap);
                }
                Err(e) => {
                    debug!("no SCTP init data, fast setup off: {e}");
                    a.features.retain(|f| f != FEATURE_FAST_SETUP);
                }
            }
        }
        let signal = self.local_signal(announcement)?;
        self.phase.offered(later(now, self.config.connect_timeout));
        info!(peer = %self.meta.peer_id, session = %self.meta.session_id, "offer created");
        Ok(signal.encode())
    }

    /// Offering side, step 2: apply the remote's answer. Starts ICE, DTLS
    /// (as DTLS server), SCTP and the signalling channel; drain the outputs
    /// afterwards.
    ///
    /// A malformed or unusable answer is an error and leaves the peer waiting
    /// for a good one (or for its connect timeout).
    pub fn accept_answer(&mut self, now: Instant, answer: &[u8]) -> Result<(), Error> {
        self.check_open()?;
        match self.role {
            Some(Role::Offerer) if self.phase.awaits_answer() => {}
            Some(Role::Offerer) => {
                return Err(Error::SignalState("an answer was already accepted"));
            }
            Some(Role::Answerer) => {
                return Err(Error::SignalState("the answering side takes no answer"));
            }
            None => return Err(Error::SignalState("create an offer first")),
        }
        self.advance(now);
        let signal = Signal::decode(answer)?;
        let prepared = prepare_remote(&signal)?;
        let ours_both = self.config.announce_extensions && signal.relay.is_some();
        // Facing a base peer we answer its SCTP INIT; between two of ours
        // the offerer is the client (B.1). With announcements off we act as
        // a base peer does, as a client, so that one of ours that does
        // announce (and so answers INITs) can still connect to us.
        let sctp_client = ours_both || !self.config.announce_extensions;
        // Fast setup (B.5): the answer accepted it and carries its INIT.
        let remote_init = signal
            .relay
            .as_ref()
            .filter(|a| ours_both && a.features.iter().any(|f| f == FEATURE_FAST_SETUP))
            .and_then(|a| a.sctp_init.clone());
        let snap = match (self.snap.take(), remote_init) {
            (Some(mut snap), Some(init)) => {
                snap.set_remote_init_chunk(init.to_vec());
                Some(snap)
            }
            _ => None,
        };
        let rtx = ours_both
            && signal
                .relay
                .as_ref()
                .is_some_and(|a| a.features.iter().any(|f| f == FEATURE_RTX));
        let early = self.phase.connecting(now);
        // Built for a peer of ours (the `rtx` table); a base peer's answer
        // means the base table, and the answerer's first datagrams again.
        let rebuilt = rtx != self.tracks.rtx_leg;
        if rebuilt {
            self.rebuild(rtx);
            self.add_local_candidates()?;
        }
        self.apply_remote(prepared, signal.relay);
        {
            // A rebuilt `Rtc` never saw them, and the one that did could not
            // check them without the remote's credentials: feed them again,
            // one at a time, drained (a check answered twice is harmless).
            self.ops.extend(early.into_iter().map(|e| RtcOp::Receive {
                source: e.source,
                destination: e.destination,
                data: e.data,
            }));
            self.drain();
        }
        let fast = snap.is_some();
        // PROTOCOL.md A.2: the ICE-controlling offerer is the DTLS server.
        self.mutate(|rtc| rtc.direct_api().start_dtls(false))
            .map_err(|e| Error::Rtc(e.to_string()))?;
        match snap {
            Some(snap) => self
                .mutate(|rtc| rtc.direct_api().start_sctp_with_snap(true, snap))
                .map_err(|e| Error::UnusableSignal(format!("SCTP init data: {e}")))?,
            None => self.mutate(|rtc| rtc.direct_api().start_sctp(sctp_client)),
        }
        if !ours_both && !sctp_client {
            // A Go answerer numbers its channels 0, 1, 1, 1... (its counter
            // never passes 1), and str0m, as SCTP server, would open our
            // signalling channel on stream 1: the Go side's second channel
            // would then take it over and end the relay. Hold stream 1 with
            // a pre-negotiated channel (no DCEP is sent for it) so the
            // signalling channel lands on stream 3.
            // Known before the drain, which may already report it open.
            let held = self.rtc.direct_api().create_data_channel(ChannelConfig {
                label: String::new(),
                ordered: true,
                reliability: RtcReliability::Reliable,
                negotiated: Some(GO_COUNTER_STREAM),
                protocol: String::new(),
            });
            self.channels.set_placeholder(held);
            self.drain();
        }
        // The offerer opens the signalling channel in band (A.3), or both
        // ends declare it on a fixed stream with fast setup.
        // Known before the drain: a pre-negotiated channel may be reported
        // open in it.
        let id = self
            .rtc
            .direct_api()
            .create_data_channel(signal_channel_config(fast));
        self.signal_channel = Some(id);
        self.drain();
        info!(peer = %self.meta.peer_id, extensions = ours_both, "answer accepted");
        Ok(())
    }

    /// Answering side: apply the remote's offer and return the answer to send
    /// back. Starts ICE, DTLS (as DTLS client) and SCTP; drain the outputs
    /// afterwards. The offerer opens the signalling channel.
    pub fn accept_offer(&mut self, now: Instant, offer: &[u8]) -> Result<Vec<u8>, Error> {
        self.check_open()?;
        if self.role.is_some() {
            return Err(Error::SignalState(
                "this peer already made an offer or answered one",
            ));
        }
        self.advance(now);
        let signal = Signal::decode(offer)?;
        let prepared = prepare_remote(&signal)?;
        self.role = Some(Role::Answerer);
        let rtx = self.config.announce_extensions
            && signal
                .relay
                .as_ref()
                .is_some_and(|a| a.features.iter().any(|f| f == FEATURE_RTX));
        if rtx != self.tracks.rtx_leg {
            self.rebuild(rtx);
        }
        self.mutate(|rtc| rtc.direct_api().set_ice_controlling(false));
        let announcement = match (&signal.relay, self.own_announcement()) {
            (Some(theirs), Some(mut ours)) => {
                ours.features.retain(|f| theirs.features.contains(f));
                Some(ours)
            }
            _ => None,
        };
        let mut answer = self.local_signal(announcement)?;
        // Base peer: answer its INIT; our peer: the answerer is the server.
        // One of ours offering to us while we do not announce sees a base
        // answer and waits for our INIT: then we are the client.
        let sctp_client = !self.config.announce_extensions && signal.relay.is_some();
        // Fast setup (B.5) when the offer asks for it and carries its INIT.
        let mut snap = None;
        if let (Some(ours), Some(theirs)) = (answer.relay.as_mut(), signal.relay.as_ref())
            && ours.features.iter().any(|f| f == FEATURE_FAST_SETUP)
            && let Some(init) = &theirs.sctp_init
        {
            let mut data = SctpInitData::new();
            match data.local_init_chunk() {
                Ok(local) => {
                    ours.sctp_init = Some(Bytes::from(local));
                    data.set_remote_init_chunk(init.to_vec());
                    snap = Some(data);
                }
                Err(e) => {
                    debug!("no SCTP init data, fast setup off: {e}");
                    ours.features.retain(|f| f != FEATURE_FAST_SETUP);
                }
            }
        } else if let Some(ours) = answer.relay.as_mut() {
            ours.features.retain(|f| f != FEATURE_FAST_SETUP);
        }
        self.phase
            .connecting(later(now, self.config.connect_timeout));
        self.apply_remote(prepared, signal.relay);
        self.mutate(|rtc| rtc.direct_api().start_dtls(true))
            .map_err(|e| Error::Rtc(e.to_string()))?;
        match snap {
            Some(snap) => {
                self.mutate(|rtc| rtc.direct_api().start_sctp_with_snap(false, snap))
                    .map_err(|e| Error::UnusableSignal(format!("SCTP init data: {e}")))?;
                let id = self
                    .rtc
                    .direct_api()
                    .create_data_channel(signal_channel_config(true));
                self.signal_channel = Some(id);
                self.drain();
            }
            None => self.mutate(|rtc| rtc.direct_api().start_sctp(sctp_client)),
        }
        info!(peer = %self.meta.peer_id, session = %self.meta.session_id, "offer accepted");
        Ok(answer.encode())
    }

    /// Swaps in an `Rtc` with the other codec table (`rtx` or base) before
    /// anything but the first connectivity checks was sent: same
    /// certificate, ICE credentials and candidates, so the offer or answer
    /// already made stays true. Building one costs about a millisecond,
    /// so a peer starts with the table a peer of ours needs and rebuilds
    /// only for a base (Go) peer.
    fn rebuild(&mut self, rtx_leg: bool) {
        self.rtc = build_rtc(
            &self.config,
            &self.cert,
            &self.ice_creds,
            rtx_leg,
            self.last_now,
        );
        self.rtc_deadline = None;
        let controlling = self.role == Some(Role::Offerer);
        self.mutate(|rtc| rtc.direct_api().set_ice_controlling(controlling));
        self.tracks.rtx_leg = rtx_leg;
    }

    fn own_announcement(&self) -> Option<Announcement> {
        self.config.announce_extensions.then(|| Announcement {
            version: EXTENSION_VERSION,
            features: FEATURES.iter().map(|f| f.to_string()).collect(),
            max_message_size: self.config.max_message_size,
            sctp_init: None,
        })
    }

    /// Adds our candidates (after the ICE role is set) and builds our signal.
    fn local_signal(&mut self, relay: Option<Announcement>) -> Result<Signal, Error> {
        let wire = self.add_local_candidates()?;
        let api = self.rtc.direct_api();
        let creds = api.local_ice_credentials();
        let fp = candidates::fingerprint_to_wire(api.local_dtls_fingerprint());
        Ok(Signal {
            ice_candidates: wire,
            ice_parameters: IceParameters {
                username_fragment: creds.ufrag,
                password: creds.pass,
                ice_lite: false,
            },
            dtls_parameters: DtlsParameters {
                role: DtlsRole::Auto,
                fingerprints: Some(vec![fp]),
            },
            sctp_capabilities: SctpCapabilities {
                max_message_size: 0,
            },
            relay,
        })
    }

    /// Gives str0m our candidates, one mutation each; returns them in wire
    /// form.
    fn add_local_candidates(&mut self) -> Result<Vec<SignalCandidate>, Error> {
        let mut locals = Vec::new();
        for a in &self.config.local_addrs {
            locals.push(
                Candidate::host(*a, "udp")
                    .map_err(|e| Error::Config(format!("local address {a}: {e}")))?,
            );
        }
        for a in &self.config.announced_addrs {
            locals.push(
                Candidate::server_reflexive(a.public, a.local, "udp")
                    .map_err(|e| Error::Config(format!("announced address {}: {e}", a.public)))?,
            );
        }
        let mut wire = Vec::new();
        for c in locals {
            match self.mutate(|rtc| rtc.add_local_candidate(c).map(candidates::to_wire)) {
                Some(added) => wire.push(added),
                None => debug!("local candidate not accepted by str0m"),
            }
        }
        if wire.is_empty() {
            return Err(Error::Config("no usable local candidate".into()));
        }
        Ok(wire)
    }

    /// The remote's credentials, fingerprint and candidates, one mutation
    /// each.
    fn apply_remote(&mut self, p: PreparedRemote, relay: Option<Announcement>) {
        self.mutate(|rtc| rtc.direct_api().set_remote_ice_credentials(p.creds));
        self.mutate(|rtc| rtc.direct_api().set_remote_fingerprint(p.fingerprint));
        self.path
            .set_known(p.candidates.iter().map(|c| c.addr()).collect());
        for c in p.candidates {
            self.mutate(|rtc| rtc.add_remote_candidate(c));
        }
        self.remote = Some(relay);
    }
}

/// An `Rtc` for this peer: every carried payload type registered (with the
/// `rtx` leg table when `rtx_leg`), our certificate and ICE credentials.
pub(super) fn build_rtc(
    config: &Config,
    cert: &Certificate,
    creds: &IceCreds,
    rtx_leg: bool,
    now: Instant,
) -> Rtc {
    let mut rtc = codecs::register_payload_types(RtcConfig::new(), rtx_leg)
        .set_crypto_provider(crate::crypto::provider())
        .set_sctp_max_message_size(config.max_message_size.max(256 * 1024))
        .set_sctp_max_buffered_amount(1024 * 1024)
        .set_dtls_cert(cert.to_str0m())
        .set_local_ice_credentials(creds.clone())
        // Per-media counters (NACKs) once a second, for track stats.
        .set_stats_interval(Some(Duration::from_secs(1)))
        .set_extension_map(crate::hdrext::leg_extension_map());
    // A connectivity check on the chosen pair every second (str0m's default
    // is 3 s): a lost check is followed by the next one soon enough for the
    // path to be reported interrupted after 2 s of silence without false
    // alarms at 5 % loss, and a dead remote is noticed sooner. A check is
    // about 100 bytes each way.
    rtc.set_max_stun_rto(ICE_CHECK_INTERVAL);
    rtc.build(now)
}

/// How often ICE checks the chosen pair (str0m's `max_stun_rto`).
pub(crate) const ICE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The signalling channel: opened in band (DCEP) by the offerer, or, with
/// fast setup, declared by both ends on stream 0 (no DCEP round trip).
fn signal_channel_config(negotiated: bool) -> ChannelConfig {
    ChannelConfig {
        label: SIGNAL_LABEL.into(),
        ordered: true,
        reliability: RtcReliability::Reliable,
        negotiated: negotiated.then_some(SIGNAL_STREAM_FAST),
        protocol: String::new(),
    }
}

/// What a remote signal yields for str0m, checked before anything changes.
pub(super) struct PreparedRemote {
    creds: IceCreds,
    fingerprint: str0m::config::Fingerprint,
    candidates: Vec<Candidate>,
}

pub(super) fn prepare_remote(signal: &Signal) -> Result<PreparedRemote, Error> {
    let ice = &signal.ice_parameters;
    if ice.username_fragment.is_empty() || ice.password.is_empty() {
        return Err(Error::UnusableSignal(
            "ICE username fragment and password are required".into(),
        ));
    }
    let fingerprint =
        candidates::fingerprint_from_wire(signal.dtls_parameters.fingerprints.as_deref())?;
    let mut usable = Vec::new();
    let mut reasons = Vec::new();
    for c in &signal.ice_candidates {
        match candidates::from_wire(c) {
            Ok(c) => usable.push(c),
            Err(why) => reasons.push(why),
        }
    }
    if usable.is_empty() {
        return Err(Error::UnusableSignal(if reasons.is_empty() {
            "no ICE candidates".into()
        } else {
            format!("no usable ICE candidate: {}", reasons.join("; "))
        }));
    }
    Ok(PreparedRemote {
        creds: IceCreds {
            ufrag: ice.username_fragment.clone(),
            pass: ice.password.clone(),
        },
        fingerprint,
        candidates: usable,
    })
}
