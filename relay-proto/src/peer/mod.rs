//! The relay peer: one connection to one remote relay.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use str0m::channel::{
    ChannelConfig, ChannelId as RtcChannelId, Reliability as RtcReliability, SctpInitData,
};
use str0m::ice::IceCreds;
use str0m::net::{Protocol, Receive};
use str0m::{
    Candidate, Event as RtcEvent, IceConnectionState, Input, Output, Rtc, RtcConfig, RtcError,
};
use tracing::{debug, info, trace, warn};

use crate::candidates;
use crate::config::{Config, PeerMeta};
use crate::error::{ChannelError, Error};
use crate::event::{ChannelId, CloseReason, Event, InboundRequest, RequestError, RequestId};
use crate::framing::{self, Joined, Joiner};
use crate::media::{
    KeyframeKind, RtpOut, SenderReport, TrackCodec, TrackId, TrackMeta, TrackStats,
    payload_type_is_carried,
};
use crate::requests::{Outbound, Unanswered};
use crate::stats::{PeerState, Stats};
use crate::tracks::{self, Tracks};
mod channels;
mod media_api;

use media_api::ntp_of_system_time;

use crate::wire::{
    Announcement, BASE_MAX_MESSAGE_SIZE, DtlsParameters, DtlsRole, Envelope, IceParameters,
    SctpCapabilities, Signal, SignalCandidate, TrackSignal,
};

/// Label of the signalling data channel (PROTOCOL.md A.3).
pub const SIGNAL_LABEL: &str = "ion_sfu_relay_signaler";

/// Version of our extension announcement (PROTOCOL.md B.1).
pub const EXTENSION_VERSION: u32 = 1;

/// Extension features this build implements, announced in offer/answer
/// (wire forms in `docs/protocol.md`).
pub const FEATURES: &[&str] = &[
    FEATURE_FAST_SETUP,
    FEATURE_RTX,
    FEATURE_HEADER_EXTENSIONS,
    FEATURE_SIMULCAST,
    FEATURE_TRACK_REMOVE,
    FEATURE_SENDER_REPORT,
    FEATURE_FIR,
];

/// Feature: SCTP starts from INIT chunks exchanged in offer and answer, and
/// the signalling channel is pre-negotiated on a fixed stream (no DCEP).
pub const FEATURE_FAST_SETUP: &str = "fast-setup";
/// Feature: retransmission on the relay leg. Tracks are remapped onto leg
/// payload types that have resend types, and get an RTX SSRC.
pub const FEATURE_RTX: &str = "rtx";
/// Feature: the origin's header extensions cross with their values.
pub const FEATURE_HEADER_EXTENSIONS: &str = "header-extensions";
/// Feature: tracks with several simulcast layers.
pub const FEATURE_SIMULCAST: &str = "simulcast";
/// SCTP stream of the signalling channel with fast setup.
const SIGNAL_STREAM_FAST: u16 = 0;

/// Feature: the remote learns at once that a track was removed.
pub const FEATURE_TRACK_REMOVE: &str = "track-remove";
/// Feature: the origin's sender report travels in band, for exact lip sync.
pub const FEATURE_SENDER_REPORT: &str = "sender-report";
/// Feature: keyframe requests may be FIR, not only PLI.
pub const FEATURE_FIR: &str = "fir";

/// Event name of a track signal (PROTOCOL.md A.4).
pub const TRACK_EVENT: &str = "ion_relay_request";
/// Event name of the track-removal message (extension).
const TRACK_REMOVE_EVENT: &str = "relay.track.remove";
/// Event name of the in-band origin sender report (extension).
const SENDER_REPORT_EVENT: &str = "relay.sender-report";

/// Events held back until Ready, at most (a remote that opens channels and
/// floods them before its signalling channel is open cannot grow memory).
const MAX_PRE_READY_EVENTS: usize = 1024;

/// `t + d`, saturating: durations come from the application (a timeout of
/// `Duration::MAX` means "never"), and `Instant` addition panics on
/// overflow.
pub(crate) fn later(t: Instant, d: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    t.checked_add(d.min(CENTURY))
        .or_else(|| t.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(t)
}

/// The SCTP stream a Go peer's second and later channels all take.
const GO_COUNTER_STREAM: u16 = 1;

/// Datagrams kept from before the answer, at most (see `Peer::early`).
const MAX_EARLY: usize = 16;

/// The smallest step the peer asks to be woken after `now`: str0m may name
/// a deadline at or before the time just handled, and a driver that obeyed
/// it literally would spin without time moving.
const MIN_WAKE: Duration = Duration::from_millis(1);

/// One datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The local address to send from (one of [`Config::local_addrs`]).
    pub source: SocketAddr,
    /// Where to send it.
    pub destination: SocketAddr,
    /// The datagram.
    pub contents: Vec<u8>,
}

/// Delivery of a data channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Reliability {
    /// Every message arrives (the default).
    #[default]
    Reliable,
    /// A message is given up after this many retransmissions.
    MaxRetransmits(u16),
    /// A message is given up after this lifetime (milliseconds precision, at
    /// most 65.5 s).
    MaxLifetime(Duration),
}

/// Options of a data channel this side opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelOptions {
    /// Deliver in order (default `true`).
    pub ordered: bool,
    /// Delivery guarantee.
    pub reliability: Reliability,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        ChannelOptions {
            ordered: true,
            reliability: Reliability::Reliable,
        }
    }
}

impl ChannelOptions {
    /// Unordered delivery with the given reliability.
    pub fn unordered(reliability: Reliability) -> Self {
        ChannelOptions {
            ordered: false,
            reliability,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Offerer,
    Answerer,
}

#[derive(Debug)]
struct UserChannel {
    label: String,
    options: ChannelOptions,
    /// str0m's id once str0m knows the channel (after Ready for ours).
    rtc_id: Option<RtcChannelId>,
    open: bool,
    /// The remote opened it.
    remote: bool,
    /// A write found the buffer full; report when there is room.
    blocked: bool,
    /// Ours, not open yet: when to give up on it.
    open_deadline: Option<Instant>,
}

/// The remote side as its signal described it.
#[derive(Debug, Clone)]
struct Remote {
    /// Its extension announcement; `None` for a base (Go) peer.
    announcement: Option<Announcement>,
}

/// A relay peer: ICE, DTLS, SCTP and the signalling channel to one remote,
/// as a sans-IO state machine. See the [crate docs](crate) for the loop that
/// drives it.
pub struct Peer {
    meta: PeerMeta,
    config: Config,
    rtc: Rtc,
    role: Option<Role>,
    remote: Option<Remote>,
    state: PeerState,
    /// The answer was applied (offerer) or made (answerer).
    signalled: bool,
    /// str0m's id of the signalling channel, once created or seen.
    signal_id: Option<RtcChannelId>,
    /// The signalling channel is open and the peer is Ready: messages flow.
    signal_open: bool,
    /// str0m reported the signalling channel open.
    signal_channel_open: bool,
    /// str0m reported ICE and DTLS up.
    dtls_connected: bool,
    send_queue: VecDeque<Vec<u8>>,
    send_queue_bytes: usize,
    joiner: Joiner,
    outbound: Outbound,
    unanswered: Unanswered,
    channels: HashMap<u64, UserChannel>,
    by_rtc_id: HashMap<RtcChannelId, u64>,
    next_channel: u64,
    events: VecDeque<Event>,
    pre_ready: VecDeque<Event>,
    transmits: VecDeque<Transmit>,
    rtc_deadline: Option<Instant>,
    last_now: Instant,
    connect_deadline: Option<Instant>,
    disconnected_since: Option<Instant>,
    stats: Stats,
    tracks: Tracks,
    ssrc_rng: fastrand::Rng,
    /// Our SCTP INIT, made for the offer, until the answer says whether it
    /// is used (fast setup).
    snap: Option<SctpInitData>,
    cert: crate::DtlsCert,
    ice_creds: IceCreds,
    /// Datagrams that reached the offerer before the answer: the answerer's
    /// first connectivity checks usually beat its answer. If the `Rtc` is
    /// rebuilt (the `rtx` table) they are fed to the new one, else the
    /// answerer waits for its retransmission (250 ms).
    early: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    /// The channel that holds stream 1 away from our signalling channel
    /// when we offer to a base peer; its events are not reported.
    placeholder: Option<RtcChannelId>,
    /// The remote sent a DTLS ClientHello although we are the DTLS client.
    dtls_role_clash: bool,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("meta", &self.meta)
            .field("state", &self.state)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// A DTLS certificate to share among many peers
/// ([`Config::dtls_cert`]); generating one costs about 1.5 ms.
pub fn generate_certificate() -> Result<crate::DtlsCert, Error> {
    str0m::crypto::from_feature_flags()
        .dtls_provider
        .generate_certificate()
        .ok_or_else(|| Error::Rtc("the crypto provider cannot generate certificates".into()))
}

impl Peer {
    /// A new peer. `now` is the time the peer starts; every later input
    /// carries its own time.
    ///
    /// Fails when the configuration cannot work: no local address, or an
    /// unspecified one (`0.0.0.0`, `::`).
    pub fn new(meta: PeerMeta, config: Config, now: Instant) -> Result<Peer, Error> {
        if config.local_addrs.is_empty() {
            return Err(Error::Config(
                "at least one local address is required".into(),
            ));
        }
        for a in &config.local_addrs {
            if a.ip().is_unspecified() || a.port() == 0 {
                return Err(Error::Config(format!(
                    "local address {a} must name a concrete IP and port (bind first, then pass the bound address)"
                )));
            }
        }
        for a in &config.announced_addrs {
            if !config.local_addrs.contains(&a.local) {
                return Err(Error::Config(format!(
                    "announced address {} maps to {}, which is not a local address",
                    a.public, a.local
                )));
            }
        }
        // Kept so the `Rtc` can be rebuilt with another codec table once
        // the remote's announcement is known, with the same identity.
        let cert = match &config.dtls_cert {
            Some(cert) => cert.clone(),
            None => generate_certificate()?,
        };
        let ice_creds = IceCreds::new();
        let rtc = build_rtc(&config, &cert, &ice_creds, false, now);
        let outbound = Outbound::new(config.seed);
        let unanswered = Unanswered::new(config.max_unanswered_requests);
        Ok(Peer {
            meta,
            rtc,
            role: None,
            remote: None,
            state: PeerState::New,
            signalled: false,
            signal_id: None,
            signal_open: false,
            signal_channel_open: false,
            dtls_connected: false,
            send_queue: VecDeque::new(),
            send_queue_bytes: 0,
            joiner: Joiner::default(),
            outbound,
            unanswered,
            channels: HashMap::new(),
            by_rtc_id: HashMap::new(),
            next_channel: 0,
            events: VecDeque::new(),
            pre_ready: VecDeque::new(),
            transmits: VecDeque::new(),
            rtc_deadline: None,
            last_now: now,
            connect_deadline: None,
            disconnected_since: None,
            stats: Stats::default(),
            tracks: Tracks::default(),
            ssrc_rng: fastrand::Rng::with_seed(config.seed ^ 0x5eed_55c5),
            snap: None,
            cert,
            ice_creds,
            early: Vec::new(),
            placeholder: None,
            dtls_role_clash: false,
            config,
        })
    }

    /// The metadata given at creation.
    pub fn meta(&self) -> &PeerMeta {
        &self.meta
    }

    /// Where the peer is in its life.
    pub fn state(&self) -> PeerState {
        self.state
    }

    /// Counters; cheap to call at any time.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// `true` once both ends announced our extensions (PROTOCOL.md B.1).
    pub fn remote_speaks_extensions(&self) -> bool {
        self.remote
            .as_ref()
            .is_some_and(|r| r.announcement.is_some())
            && self.config.announce_extensions
    }

    /// `true` when both ends announced an extension feature.
    pub fn feature_enabled(&self, feature: &str) -> bool {
        self.remote_speaks_extensions()
            && FEATURES.contains(&feature)
            && self
                .remote
                .as_ref()
                .and_then(|r| r.announcement.as_ref())
                .is_some_and(|a| a.features.iter().any(|f| f == feature))
    }

    /// The largest envelope the remote reads: its announced maximum, or
    /// 65,535 bytes for a base peer (and until its signal is known).
    pub fn remote_max_message_size(&self) -> usize {
        match self.remote.as_ref().and_then(|r| r.announcement.as_ref()) {
            Some(a) if self.config.announce_extensions && a.max_message_size > 0 => {
                a.max_message_size as usize
            }
            _ => BASE_MAX_MESSAGE_SIZE,
        }
    }

    // ---------------------------------------------------------------- signal

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
        self.rtc.direct_api().set_ice_controlling(true);
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
        self.state = PeerState::Connecting;
        self.connect_deadline = Some(later(now, self.config.connect_timeout));
        info!(peer = %self.meta.peer_id, session = %self.meta.session_id, "offer created");
        self.drain();
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
        match (self.role, self.signalled) {
            (Some(Role::Offerer), false) => {}
            (Some(Role::Offerer), true) => {
                return Err(Error::SignalState("an answer was already accepted"));
            }
            (Some(Role::Answerer), _) => {
                return Err(Error::SignalState("the answering side takes no answer"));
            }
            (None, _) => return Err(Error::SignalState("create an offer first")),
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
        if rtx {
            self.rebuild_for_rtx()?;
            self.add_local_candidates()?;
        }
        self.apply_remote(prepared, signal.relay)?;
        let early = std::mem::take(&mut self.early);
        if rtx {
            for (source, destination, data) in early {
                if let Ok(r) = Receive::new(Protocol::Udp, source, destination, &data)
                    && let Err(e) = self.rtc.handle_input(Input::Receive(self.last_now, r))
                {
                    self.on_rtc_error(e);
                }
            }
        }
        let fast = snap.is_some();
        let mut api = self.rtc.direct_api();
        // PROTOCOL.md A.2: the ICE-controlling offerer is the DTLS server.
        api.start_dtls(false)
            .map_err(|e| Error::Rtc(e.to_string()))?;
        match snap {
            Some(snap) => api
                .start_sctp_with_snap(true, snap)
                .map_err(|e| Error::UnusableSignal(format!("SCTP init data: {e}")))?,
            None => api.start_sctp(sctp_client),
        }
        if !ours_both && !sctp_client {
            // A Go answerer numbers its channels 0, 1, 1, 1... (its counter
            // never passes 1), and str0m, as SCTP server, would open our
            // signalling channel on stream 1: the Go side's second channel
            // would then take it over and end the relay. Hold stream 1 with
            // a pre-negotiated channel (no DCEP is sent for it) so the
            // signalling channel lands on stream 3.
            self.placeholder = Some(api.create_data_channel(ChannelConfig {
                label: String::new(),
                ordered: true,
                reliability: RtcReliability::Reliable,
                negotiated: Some(GO_COUNTER_STREAM),
                protocol: String::new(),
            }));
        }
        // The offerer opens the signalling channel in band (A.3), or both
        // ends declare it on a fixed stream with fast setup.
        let id = api.create_data_channel(signal_channel_config(fast));
        self.signal_id = Some(id);
        self.signalled = true;
        info!(peer = %self.meta.peer_id, extensions = ours_both, "answer accepted");
        self.drain();
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
        self.rtc.direct_api().set_ice_controlling(false);
        if self.config.announce_extensions
            && signal
                .relay
                .as_ref()
                .is_some_and(|a| a.features.iter().any(|f| f == FEATURE_RTX))
        {
            self.rebuild_for_rtx()?;
        }
        let announcement = match (&signal.relay, self.own_announcement()) {
            (Some(theirs), Some(mut ours)) => {
                ours.features.retain(|f| theirs.features.contains(f));
                Some(ours)
            }
            _ => None,
        };
        let answer = self.local_signal(announcement)?;
        // Base peer: answer its INIT; our peer: the answerer is the server.
        // One of ours offering to us while we do not announce sees a base
        // answer and waits for our INIT: then we are the client.
        let sctp_client = !self.config.announce_extensions && signal.relay.is_some();
        // Fast setup (B.5) when the offer asks for it and carries its INIT.
        let mut answer = answer;
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
        self.apply_remote(prepared, signal.relay)?;
        let mut api = self.rtc.direct_api();
        api.start_dtls(true)
            .map_err(|e| Error::Rtc(e.to_string()))?;
        match snap {
            Some(snap) => {
                api.start_sctp_with_snap(false, snap)
                    .map_err(|e| Error::UnusableSignal(format!("SCTP init data: {e}")))?;
                let id = api.create_data_channel(signal_channel_config(true));
                self.signal_id = Some(id);
            }
            None => api.start_sctp(sctp_client),
        }
        self.signalled = true;
        self.state = PeerState::Connecting;
        self.connect_deadline = Some(later(now, self.config.connect_timeout));
        info!(peer = %self.meta.peer_id, session = %self.meta.session_id, "offer accepted");
        self.drain();
        Ok(answer.encode())
    }

    /// Swaps in an `Rtc` with the `rtx` codec table, before anything was
    /// sent: same certificate, ICE credentials and candidates, so the offer
    /// or answer already made stays true.
    fn rebuild_for_rtx(&mut self) -> Result<(), Error> {
        self.rtc = build_rtc(
            &self.config,
            &self.cert,
            &self.ice_creds,
            true,
            self.last_now,
        );
        self.rtc
            .direct_api()
            .set_ice_controlling(self.role == Some(Role::Offerer));
        self.tracks.rtx_leg = true;
        Ok(())
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

    /// Gives str0m our candidates; returns them in wire form.
    fn add_local_candidates(&mut self) -> Result<Vec<SignalCandidate>, Error> {
        let mut wire = Vec::new();
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
        for c in locals {
            match self.rtc.add_local_candidate(c) {
                Some(added) => wire.push(candidates::to_wire(added)),
                None => debug!("local candidate not accepted by str0m"),
            }
        }
        if wire.is_empty() {
            return Err(Error::Config("no usable local candidate".into()));
        }
        Ok(wire)
    }

    fn apply_remote(
        &mut self,
        p: PreparedRemote,
        relay: Option<Announcement>,
    ) -> Result<(), Error> {
        let mut api = self.rtc.direct_api();
        api.set_remote_ice_credentials(p.creds);
        api.set_remote_fingerprint(p.fingerprint);
        for c in p.candidates {
            self.rtc.add_remote_candidate(c);
        }
        self.remote = Some(Remote {
            announcement: relay,
        });
        Ok(())
    }

    // ------------------------------------------------------------- messages

    /// Sends a fire-and-forget message. Queued until Ready when called
    /// before it. Drain the outputs afterwards.
    pub fn emit(&mut self, now: Instant, event: &str, payload: Option<Bytes>) -> Result<(), Error> {
        self.check_open()?;
        self.advance(now);
        self.enqueue_message(event, payload)?;
        self.stats.emits_sent += 1;
        self.drain();
        Ok(())
    }

    /// Sends a request; its outcome arrives later as [`Event::Reply`] or
    /// [`Event::RequestFailed`] under the returned id. `timeout` defaults to
    /// [`Config::request_timeout`]. Queued until Ready when called before it
    /// (the timeout runs from now). Drain the outputs afterwards.
    pub fn request(
        &mut self,
        now: Instant,
        event: &str,
        payload: Option<Bytes>,
        timeout: Option<Duration>,
    ) -> Result<RequestId, Error> {
        self.check_open()?;
        self.advance(now);
        let timeout = timeout.unwrap_or(self.config.request_timeout);
        let id = self.send_request(event, payload, timeout)?;
        self.drain();
        Ok(RequestId(id))
    }

    fn send_request(
        &mut self,
        event: &str,
        payload: Option<Bytes>,
        timeout: Duration,
    ) -> Result<u64, Error> {
        if self.outbound.len() >= self.config.max_pending_requests {
            return Err(Error::TooManyRequests(self.config.max_pending_requests));
        }
        let id = self.enqueue_message(event, payload)?;
        self.outbound.insert(id, later(self.last_now, timeout));
        self.stats.requests_sent += 1;
        Ok(id)
    }

    /// Reports a request that ended without a reply, to the track it was
    /// for or to the application.
    fn request_failed(&mut self, id: u64, reason: RequestError) {
        match reason {
            RequestError::TimedOut => self.stats.requests_timed_out += 1,
            _ => self.stats.requests_failed += 1,
        }
        if let Some(track) = self.tracks.take_request(id) {
            self.tracks.drop_local(&mut self.rtc, track);
            self.events.push_back(Event::TrackFailed { track, reason });
        } else {
            self.events.push_back(Event::RequestFailed {
                id: RequestId(id),
                reason,
            });
        }
    }

    /// Withdraws a pending request: [`Event::RequestFailed`] with
    /// [`RequestError::Cancelled`] follows, and a late reply is dropped.
    /// Returns `false` when the request is no longer pending.
    pub fn cancel_request(&mut self, now: Instant, id: RequestId) -> bool {
        self.advance(now);
        if self.outbound.complete(id.0) {
            self.request_failed(id.0, RequestError::Cancelled);
            true
        } else {
            false
        }
    }

    /// Answers an inbound request ([`Event::Request`]) once. Drain the
    /// outputs afterwards.
    pub fn reply(&mut self, now: Instant, id: u64, payload: Option<Bytes>) -> Result<(), Error> {
        self.check_open()?;
        self.advance(now);
        let Some(event) = self.unanswered.take(id) else {
            return Err(Error::UnknownRequest(id));
        };
        let envelope = Envelope {
            id,
            reply: true,
            event,
            payload,
        };
        if let Err(e) = self.enqueue(&envelope) {
            // Keep it answerable (with a smaller payload, say).
            self.stats.drops.unanswered_evicted += self.unanswered.insert(id, envelope.event);
            return Err(e);
        }
        self.stats.replies_sent += 1;
        self.drain();
        Ok(())
    }

    /// Testing only: queues raw bytes as one signalling-channel message,
    /// bypassing the envelope codec, so tests and fuzzers can show how the
    /// remote copes with what a broken or hostile peer sends.
    #[doc(hidden)]
    pub fn send_raw_signal_message_for_testing(&mut self, now: Instant, data: Vec<u8>) {
        self.advance(now);
        self.send_queue_bytes += data.len();
        self.send_queue.push_back(data);
        self.drain();
    }

    /// Queues a message that is not a reply under a fresh id.
    fn enqueue_message(&mut self, event: &str, payload: Option<Bytes>) -> Result<u64, Error> {
        let id = self.outbound.next_id();
        self.enqueue(&Envelope {
            id,
            reply: false,
            event: event.to_string(),
            payload,
        })?;
        Ok(id)
    }

    fn enqueue(&mut self, envelope: &Envelope) -> Result<(), Error> {
        let len = envelope.encoded_len();
        let limit = self.remote_max_message_size();
        if len > limit {
            return Err(Error::MessageTooLarge { len, limit });
        }
        if self.send_queue_bytes + len > self.config.max_send_queue_bytes {
            return Err(Error::SendQueueFull);
        }
        let bytes = envelope.encode();
        self.stats.messages_out += 1;
        self.stats.bytes_out += bytes.len() as u64;
        self.send_queue_bytes += bytes.len();
        self.send_queue.extend(framing::split(bytes));
        Ok(())
    }

    /// Hands queued signalling messages to SCTP while it has room.
    /// Returns whether anything was written.
    fn flush_signal(&mut self) -> bool {
        if !self.signal_open {
            return false;
        }
        let Some(id) = self.signal_id else {
            return false;
        };
        let mut wrote = false;
        while let Some(front) = self.send_queue.front() {
            let Some(mut ch) = self.rtc.channel(id) else {
                break;
            };
            match ch.write(true, front) {
                Ok(true) => {
                    let msg = self.send_queue.pop_front().unwrap_or_default();
                    // Fragments carry one tag byte each on top of the envelope.
                    let body = match msg.first() {
                        Some(&framing::TAG_MORE) | Some(&framing::TAG_LAST) => msg.len() - 1,
                        _ => msg.len(),
                    };
                    self.send_queue_bytes = self.send_queue_bytes.saturating_sub(body);
                    wrote = true;
                }
                Ok(false) => break,
                Err(e) => {
                    warn!("signalling channel write failed: {e}");
                    break;
                }
            }
        }
        wrote
    }

    // ------------------------------------------------------------ lifecycle

    /// Closes the peer: the remote is told at once (DTLS close_notify, SCTP
    /// shutdown), pending requests fail with [`RequestError::Closed`], and
    /// [`Event::Closed`] with [`CloseReason::Local`] follows. Idempotent.
    /// Drain the outputs afterwards (the close goes out as transmits).
    pub fn close(&mut self, now: Instant) {
        self.advance(now);
        self.close_with(CloseReason::Local);
        self.drain();
    }

    fn close_with(&mut self, reason: CloseReason) {
        if self.state == PeerState::Closed {
            return;
        }
        info!(peer = %self.meta.peer_id, %reason, "closed");
        self.state = PeerState::Closed;
        if self.rtc.is_alive()
            && let Err(e) = self.rtc.close()
        {
            debug!("str0m close: {e}");
        }
        for id in self.outbound.drain() {
            self.request_failed(id, RequestError::Closed);
        }
        self.pre_ready.clear();
        self.send_queue.clear();
        self.send_queue_bytes = 0;
        self.events.push_back(Event::Closed(reason));
    }

    fn check_open(&self) -> Result<(), Error> {
        if self.state == PeerState::Closed {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    // ----------------------------------------------------------------- drive

    /// Feeds one received UDP datagram. `destination` is the local address it
    /// arrived on (one of [`Config::local_addrs`]). Garbage is dropped and
    /// counted. Then pull transmits, events and the next timeout.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        self.advance(now);
        self.stats.datagrams_in += 1;
        if !self.rtc.is_alive() {
            self.stats.drops.after_close += 1;
            return;
        }
        let receive = match Receive::new(Protocol::Udp, source, destination, data) {
            Ok(r) => r,
            Err(e) => {
                trace!("dropped datagram from {source}: {e}");
                self.stats.drops.bad_datagrams += 1;
                return;
            }
        };
        if let Err(e) = self
            .rtc
            .handle_input(Input::Receive(self.last_now, receive))
        {
            self.on_rtc_error(e);
        }
        // A ClientHello (DTLS handshake record, message type 1) reaching the
        // answerer, which is the DTLS client: the remote is a client too.
        // str0m ignores it silently and nothing can connect; the connect
        // timeout then says why. (Only then: one spoofed datagram must not
        // end a peer.)
        if self.role == Some(Role::Answerer)
            && !self.dtls_connected
            && data.first() == Some(&22)
            && data.get(13) == Some(&1)
        {
            self.dtls_role_clash = true;
        }
        if self.role == Some(Role::Offerer) && !self.signalled && self.early.len() < MAX_EARLY {
            self.early.push((source, destination, data.to_vec()));
        }
        self.drain();
    }

    /// `true` when a datagram belongs to this peer (for many peers sharing
    /// one socket): STUN by its username, the rest by the remote address.
    pub fn accepts(&self, source: SocketAddr, destination: SocketAddr, data: &[u8]) -> bool {
        match Receive::new(Protocol::Udp, source, destination, data) {
            Ok(r) => self.rtc.accepts(&Input::Receive(self.last_now, r)),
            Err(_) => false,
        }
    }

    /// Advances the peer's timers to `now`. Call it when the deadline from
    /// [`Peer::poll_timeout`] passes; then pull outputs again.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        let now = self.last_now;
        if self.rtc.is_alive()
            && let Err(e) = self.rtc.handle_input(Input::Timeout(now))
        {
            self.on_rtc_error(e);
        }
        for id in self.outbound.handle_timeout(now) {
            self.request_failed(id, RequestError::TimedOut);
        }
        if self.state != PeerState::Closed {
            self.expire_channel_opens(now);
            let events = self.tracks.handle_timeout(
                &mut self.rtc,
                now,
                self.config.track_inactive_after,
                self.config.keyframe_request_interval,
            );
            for e in events {
                self.push_event(e);
            }
        }
        if self.state != PeerState::Closed {
            if self.connect_deadline.is_some_and(|t| t <= now) {
                self.close_with(if self.dtls_role_clash {
                    CloseReason::Dtls(
                        "role mismatch: the remote acts as DTLS client too (the offerer must be the DTLS server)"
                            .into(),
                    )
                } else {
                    CloseReason::ConnectTimeout
                });
            } else if self
                .disconnected_since
                .is_some_and(|t| later(t, self.config.disconnect_grace) <= now)
            {
                self.close_with(CloseReason::Unreachable);
            }
        }
        self.drain();
    }

    /// The next datagram to send, if any.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Peer::handle_timeout`] must be called next; `None` when nothing
    /// is scheduled (a closed peer that has sent its goodbyes).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next = if self.rtc.is_alive() {
            self.rtc_deadline
        } else {
            None
        };
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        consider(self.outbound.poll_timeout());
        if self.state != PeerState::Closed {
            consider(self.channels.values().filter_map(|c| c.open_deadline).min());
            consider(self.tracks.poll_timeout(
                self.config.track_inactive_after,
                self.config.keyframe_request_interval,
            ));
            if self.state != PeerState::Ready {
                consider(self.connect_deadline);
            }
            consider(
                self.disconnected_since
                    .map(|t| later(t, self.config.disconnect_grace)),
            );
        }
        next
    }

    /// Time only moves forward, whatever the caller passes.
    fn advance(&mut self, now: Instant) {
        if now > self.last_now {
            self.last_now = now;
        }
    }

    /// str0m's rule: after every change, poll until it names a timeout.
    /// Then hand queued signalling messages to SCTP, which is a change too.
    fn drain(&mut self) {
        loop {
            // Bounded: a str0m that keeps erroring while alive cannot spin us.
            let mut errors = 0;
            loop {
                match self.rtc.poll_output() {
                    Ok(Output::Transmit(t)) => {
                        self.stats.datagrams_out += 1;
                        self.transmits.push_back(Transmit {
                            source: t.source,
                            destination: t.destination,
                            contents: t.contents.into(),
                        });
                    }
                    Ok(Output::Event(e)) => self.on_rtc_event(e),
                    Ok(Output::Timeout(t)) => {
                        let floor = self.last_now + MIN_WAKE;
                        self.rtc_deadline = Some(if t < floor { floor } else { t });
                        break;
                    }
                    Err(e) => {
                        self.on_rtc_error(e);
                        errors += 1;
                        if !self.rtc.is_alive() || errors > 8 {
                            self.rtc_deadline = Some(self.last_now + MIN_WAKE);
                            break;
                        }
                    }
                }
            }
            if !self.flush_signal() {
                break;
            }
        }
    }

    fn on_rtc_error(&mut self, e: RtcError) {
        if self.rtc.is_alive() {
            // str0m rejected one input but carries on: a bad datagram.
            debug!("input rejected: {e}");
            self.stats.drops.bad_datagrams += 1;
            return;
        }
        let reason = match &e {
            RtcError::RemoteSdp(msg) if msg.contains("fingerprint") => {
                CloseReason::FingerprintMismatch
            }
            RtcError::Dtls(_) => CloseReason::Dtls(e.to_string()),
            _ => CloseReason::Transport(e.to_string()),
        };
        warn!(peer = %self.meta.peer_id, "connection failed: {e}");
        self.close_with(reason);
    }

    fn on_rtc_event(&mut self, e: RtcEvent) {
        // After Closed nothing more is reported: str0m is only drained of
        // its goodbye datagrams.
        if self.state == PeerState::Closed {
            return;
        }
        match e {
            RtcEvent::IceConnectionStateChange(s) => {
                debug!(peer = %self.meta.peer_id, "ICE {s:?}");
                match s {
                    IceConnectionState::Disconnected if self.disconnected_since.is_none() => {
                        self.disconnected_since = Some(self.last_now);
                    }
                    IceConnectionState::Connected | IceConnectionState::Completed => {
                        self.disconnected_since = None;
                    }
                    _ => {}
                }
            }
            RtcEvent::Connected => {
                debug!(peer = %self.meta.peer_id, "DTLS connected");
                self.dtls_connected = true;
                self.maybe_ready();
            }
            RtcEvent::ChannelOpen(rtc_id, label) => self.on_channel_open(rtc_id, label),
            RtcEvent::ChannelData(d) => {
                if Some(d.id) == self.signal_id && self.signal_open {
                    self.on_signal_message(&d.data);
                } else if let Some(&id) = self.by_rtc_id.get(&d.id) {
                    self.push_event(Event::ChannelData {
                        id: ChannelId(id),
                        binary: d.binary,
                        data: Bytes::from(d.data),
                    });
                } else {
                    self.stats.drops.unknown_channel_data += 1;
                }
            }
            RtcEvent::ChannelBufferedAmountLow(rtc_id) => {
                if let Some(&id) = self.by_rtc_id.get(&rtc_id)
                    && let Some(ch) = self.channels.get_mut(&id)
                    && std::mem::take(&mut ch.blocked)
                {
                    self.push_event(Event::ChannelWritable(ChannelId(id)));
                }
            }
            RtcEvent::ChannelClose(rtc_id) => self.on_channel_close(rtc_id),
            RtcEvent::RtpPacket(pkt) => {
                if self.state == PeerState::Closed {
                    return;
                }
                for e in self.tracks.on_rtp(pkt).unwrap_or_default() {
                    self.push_event(e);
                }
            }
            RtcEvent::KeyframeRequest(req) => {
                if let Some(e) = self.tracks.on_keyframe_request(req.mid, req.rid, req.kind) {
                    self.push_event(e);
                }
            }
            RtcEvent::MediaIngressStats(st) => self.tracks.set_nacks(st.mid, st.nacks),
            RtcEvent::MediaEgressStats(st) => self.tracks.set_nacks(st.mid, st.nacks),
            RtcEvent::SenderFeedback(fb) => {
                if let Some(track) = self.tracks.remote_by_mid(fb.mid) {
                    let info = fb.sender_info;
                    let report = SenderReport {
                        ntp: ntp_of_system_time(info.ntp_time),
                        rtp: info.rtp_time.numer() as u32,
                    };
                    self.push_event(Event::SenderReport {
                        track,
                        report,
                        origin: false,
                    });
                }
            }
            RtcEvent::Closed => self.close_with(CloseReason::Remote),
            _ => {}
        }
    }

    /// Channel events before Ready wait, bounded, so Ready comes first.
    fn push_event(&mut self, e: Event) {
        if self.state == PeerState::Closed {
            return;
        }
        if self.state == PeerState::Ready {
            self.events.push_back(e);
        } else if self.pre_ready.len() < MAX_PRE_READY_EVENTS {
            self.pre_ready.push_back(e);
        } else {
            self.stats.drops.unknown_channel_data += 1;
        }
    }

    fn on_signal_message(&mut self, msg: &[u8]) {
        let fragments = self.remote_speaks_extensions();
        let limit = self.config.max_message_size as usize;
        let joined = self.joiner.push(msg, fragments, limit);
        self.stats.drops.oversized_messages += std::mem::take(&mut self.joiner.broken_runs);
        let bytes = match joined {
            Joined::Envelope(b) => b,
            Joined::Pending => return,
            Joined::Dropped => {
                self.stats.drops.oversized_messages += 1;
                return;
            }
        };
        self.stats.messages_in += 1;
        self.stats.bytes_in += bytes.len() as u64;
        let env = match Envelope::decode(&bytes) {
            Ok(env) => env,
            Err(e) => {
                debug!("bad envelope: {e}");
                self.stats.drops.bad_envelopes += 1;
                return;
            }
        };
        if env.reply {
            if self.outbound.complete(env.id) {
                self.stats.requests_answered += 1;
                if let Some(track) = self.tracks.take_request(env.id) {
                    self.tracks.accepted(track);
                    self.events.push_back(Event::TrackAdded(track));
                } else {
                    self.events.push_back(Event::Reply {
                        id: RequestId(env.id),
                        payload: env.payload,
                    });
                }
            } else {
                self.stats.drops.unknown_replies += 1;
            }
            return;
        }
        if env.event == TRACK_EVENT {
            self.on_track_signal(env);
            return;
        }
        if self.remote_speaks_extensions()
            && (env.event == TRACK_REMOVE_EVENT || env.event == SENDER_REPORT_EVENT)
        {
            self.on_extension_message(&env);
            return;
        }
        self.stats.requests_received += 1;
        self.stats.drops.unanswered_evicted += self.unanswered.insert(env.id, env.event.clone());
        self.events.push_back(Event::Request(InboundRequest {
            id: env.id,
            event: env.event,
            payload: env.payload,
        }));
    }
}

/// An `Rtc` for this peer: every carried payload type registered (with the
/// `rtx` leg table when `rtx_leg`), our certificate and ICE credentials.
fn build_rtc(
    config: &Config,
    cert: &crate::DtlsCert,
    creds: &IceCreds,
    rtx_leg: bool,
    now: Instant,
) -> Rtc {
    tracks::register_payload_types(RtcConfig::new(), rtx_leg)
        .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
        .set_sctp_max_message_size(config.max_message_size.max(256 * 1024))
        .set_sctp_max_buffered_amount(1024 * 1024)
        .set_dtls_cert(cert.clone())
        .set_local_ice_credentials(creds.clone())
        // Per-media counters (NACKs) once a second, for track stats.
        .set_stats_interval(Some(Duration::from_secs(1)))
        .set_extension_map(crate::hdrext::leg_extension_map())
        .build(now)
}

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
struct PreparedRemote {
    creds: IceCreds,
    fingerprint: str0m::config::Fingerprint,
    candidates: Vec<Candidate>,
}

fn prepare_remote(signal: &Signal) -> Result<PreparedRemote, Error> {
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

#[cfg(test)]
mod tests {
    /// Adapters move a peer into the task that drives it.
    #[test]
    fn peer_is_send() {
        fn is_send<T: Send>() {}
        is_send::<super::Peer>();
    }
}
