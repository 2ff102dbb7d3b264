//! The relay peer: one connection to one remote relay.
//!
//! `Peer` composes the sub-machines (the connection [`Phase`], the
//! [`Signalling`] traffic, the application's [`Channels`], the
//! [`Tracks`], [`Liveness`]) around one str0m `Rtc`, which only this file
//! changes: one mutation, then a full drain of its output ([`Peer::drain`]),
//! as str0m requires. The API is split by topic: [`messages`] (emit,
//! request, reply), [`channels`] (data channels), [`media`] (tracks).

mod channels;
mod connect;
mod media;
mod messages;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use str0m::channel::{ChannelId as RtcChannelId, SctpInitData};
use str0m::ice::IceCreds;
use str0m::net::{Protocol, Receive};
use str0m::rtp::Ssrc;
use str0m::{Event as RtcEvent, IceConnectionState, Input, Output, Rtc, RtcError};
use tracing::{debug, info, trace, warn};

use crate::cert::Certificate;
use crate::channels::{Channels, Opened};
use crate::config::{Config, PeerMeta};
use crate::error::Error;
use crate::event::{CloseReason, Event, RequestError};
use crate::liveness::{Liveness, PathChange};
use crate::media::SenderReport;
use crate::ops::RtcOp;
use crate::path::Path;
use crate::phase::Phase;
use crate::signalling::{Limits, Signalling};
use crate::stats::{PeerState, Stats};
use crate::time::{earliest, ntp_of_system_time};
use crate::tracks::Tracks;
use crate::wire::{Announcement, BASE_MAX_MESSAGE_SIZE, FEATURES, SIGNAL_LABEL};
use connect::build_rtc;

/// Events held back until Ready, at most (a remote that opens channels and
/// floods them before its signalling channel is open cannot grow memory).
const MAX_PRE_READY_EVENTS: usize = 1024;

/// The SCTP stream a Go peer's second and later channels all take.
const GO_COUNTER_STREAM: u16 = 1;

/// The smallest step the peer asks to be woken after `now`: str0m may name
/// a deadline at or before the time just handled, and a driver that obeyed
/// it literally would spin without time moving.
const MIN_WAKE: Duration = Duration::from_millis(1);

/// How many deadlines at or before the time just handled one poll of the
/// `Rtc` serves at once, after RTP was written, before falling back to
/// [`MIN_WAKE`].
const MAX_DUE_NOW: u32 = 4;

/// Packets a track's retransmission cache holds, at most, and for how
/// long: str0m 0.25's own defaults, restated because setting the share cap
/// ([`Config::max_retransmission_share`]) sets them too.
const RTX_CACHE_PACKETS: usize = 2000;
const RTX_CACHE_AGE: Duration = Duration::from_secs(3);

/// Send-buffer level under which str0m reports room on the signalling
/// channel, and on the application's channels.
const SIGNAL_LOW_WATER: usize = 64 * 1024;
const CHANNEL_LOW_WATER: usize = 32 * 1024;

/// One datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transmit {
    /// The local address to send from (one of [`Config::local_addrs`]).
    pub source: SocketAddr,
    /// Where to send it.
    pub destination: SocketAddr,
    /// The datagram.
    pub contents: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Offerer,
    Answerer,
}

/// A relay peer: ICE, DTLS, SCTP and the signalling channel to one remote,
/// as a sans-IO state machine. See the [crate docs](crate) for the loop that
/// drives it.
pub struct Peer {
    meta: PeerMeta,
    config: Config,
    rtc: Rtc,
    role: Option<Role>,
    /// The remote's extension announcement, once its signal is applied;
    /// `Some(None)` for a base (Go) peer.
    remote: Option<Option<Announcement>>,
    phase: Phase,
    liveness: Liveness,
    /// The remote's address, followed across a NAT rebinding.
    path: Path,
    signalling: Signalling,
    /// str0m's id of the signalling channel, once created or seen.
    signal_channel: Option<RtcChannelId>,
    channels: Channels,
    tracks: Tracks,
    /// Changes to `rtc` waiting for the drain loop, one at a time.
    ops: VecDeque<RtcOp>,
    events: VecDeque<Event>,
    pre_ready: VecDeque<Event>,
    transmits: VecDeque<Transmit>,
    rtc_deadline: Option<Instant>,
    /// RTP was written to the `Rtc` since it was last polled: its pacer
    /// sends it from a timeout, served at once (see [`MAX_DUE_NOW`]).
    media_written: bool,
    last_now: Instant,
    stats: Stats,
    ssrc_rng: fastrand::Rng,
    /// Our SCTP INIT, made for the offer, until the answer says whether it
    /// is used (fast setup).
    snap: Option<SctpInitData>,
    cert: Certificate,
    ice_creds: IceCreds,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("meta", &self.meta)
            .field("state", &self.phase.state())
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
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
            None => Certificate::generate()?,
        };
        let ice_creds = IceCreds::new();
        // The `rtx` table when we announce it: a peer of ours then needs no
        // rebuild (see `Peer::rebuild`).
        let rtx_leg = config.announce_extensions;
        let rtc = build_rtc(&config, &cert, &ice_creds, rtx_leg, now);
        let limits = Limits {
            max_pending_requests: config.max_pending_requests,
            max_send_queue_bytes: config.max_send_queue_bytes,
            max_message_size: config.max_message_size as usize,
        };
        Ok(Peer {
            meta,
            rtc,
            role: None,
            remote: None,
            phase: Phase::New,
            liveness: Liveness::new(config.disconnect_grace, config.path_quiet_after),
            path: Path::default(),
            signalling: Signalling::new(limits, config.seed, config.max_unanswered_requests),
            signal_channel: None,
            channels: Channels::default(),
            tracks: Tracks {
                rtx_leg,
                ..Tracks::default()
            },
            ops: VecDeque::new(),
            events: VecDeque::new(),
            pre_ready: VecDeque::new(),
            transmits: VecDeque::new(),
            rtc_deadline: None,
            media_written: false,
            last_now: now,
            stats: Stats::default(),
            ssrc_rng: fastrand::Rng::with_seed(config.seed ^ 0x5eed_55c5),
            snap: None,
            cert,
            ice_creds,
            config,
        })
    }

    /// The metadata given at creation.
    pub fn meta(&self) -> &PeerMeta {
        &self.meta
    }

    /// Where the peer is in its life.
    pub fn state(&self) -> PeerState {
        self.phase.state()
    }

    /// Counters; cheap to call at any time.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The remote's announcement, when both ends speak our extensions.
    fn announcement(&self) -> Option<&Announcement> {
        if !self.config.announce_extensions {
            return None;
        }
        self.remote.as_ref()?.as_ref()
    }

    /// `true` once both ends announced our extensions (PROTOCOL.md B.1).
    pub fn remote_speaks_extensions(&self) -> bool {
        self.announcement().is_some()
    }

    /// `true` when both ends announced an extension feature.
    pub fn feature_enabled(&self, feature: &str) -> bool {
        FEATURES.contains(&feature)
            && self
                .announcement()
                .is_some_and(|a| a.features.iter().any(|f| f == feature))
    }

    /// The largest envelope the remote reads: its announced maximum, or
    /// 65,535 bytes for a base peer (and until its signal is known).
    pub fn remote_max_message_size(&self) -> usize {
        match self.announcement() {
            Some(a) if a.max_message_size > 0 => a.max_message_size as usize,
            _ => BASE_MAX_MESSAGE_SIZE,
        }
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
        if self.phase.is_closed() {
            return;
        }
        info!(peer = %self.meta.peer_id, %reason, "closed");
        self.phase = Phase::Closed;
        for id in self.signalling.close() {
            self.request_failed(id, RequestError::Closed);
        }
        self.pre_ready.clear();
        // Nothing queued matters any more but the goodbye.
        self.ops.clear();
        self.ops.push_back(RtcOp::Close);
        self.events.push_back(Event::Closed(reason));
    }

    fn check_open(&self) -> Result<(), Error> {
        if self.phase.is_closed() {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    // ----------------------------------------------------------------- drive

    /// Feeds one received UDP datagram. `destination` is the local address it
    /// arrived on (one of [`Config::local_addrs`]). Garbage is dropped and
    /// counted. Then poll transmits, events and the timeout again.
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
        if self.phase.awaits_answer() {
            self.phase.keep_early(source, destination, data);
        }
        // STUN (first byte 0 or 1): a proven check from a new address of the
        // remote moves where we send.
        if self.phase.is_ready() && data.first().is_some_and(|b| *b < 2) {
            let creds = self.rtc.direct_api().local_ice_credentials();
            if let Some(to) = self.path.observe(source, data, &creds.ufrag, &creds.pass) {
                info!(peer = %self.meta.peer_id, "the remote moved to {to}: sending there");
                self.stats.remote_moves += 1;
            }
        }
        match self
            .rtc
            .handle_input(Input::Receive(self.last_now, receive))
        {
            Ok(()) => {
                let change = self.liveness.heard(self.last_now);
                self.on_path_change(change);
            }
            Err(e) => self.on_rtc_error(e),
        }
        // A ClientHello (DTLS handshake record, message type 1) reaching the
        // answerer, which is the DTLS client: the remote is a client too.
        // str0m ignores it silently and nothing can connect; the connect
        // timeout then says why. (Only then: one spoofed datagram must not
        // end a peer.)
        if self.role == Some(Role::Answerer)
            && self.phase.awaits_dtls()
            && data.first() == Some(&22)
            && data.get(13) == Some(&1)
        {
            self.phase.role_clash();
        }
        self.drain();
    }

    /// Advances the peer's timers to `now`. Call it when the deadline from
    /// [`Peer::poll_timeout`] passes; then poll the outputs again.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        let now = self.last_now;
        if self.rtc.is_alive() {
            if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
                self.on_rtc_error(e);
            }
            self.drain();
        }
        for id in self.signalling.handle_timeout(now) {
            self.request_failed(id, RequestError::TimedOut);
        }
        if !self.phase.is_closed() {
            self.expire_channel_opens(now);
            let (events, ops) = self.tracks.remote.handle_timeout(
                now,
                self.config.track_inactive_after,
                self.config.keyframe_request_interval,
            );
            for e in events {
                self.push_event(e);
            }
            self.ops.extend(ops);
            if let Some(reason) = self.phase.handle_timeout(now) {
                self.close_with(reason);
            } else if self.phase.is_ready() {
                match self.liveness.handle_timeout(now) {
                    Err(()) => {
                        warn!(peer = %self.meta.peer_id, "nothing heard from the remote for {:?}", self.config.disconnect_grace);
                        self.close_with(CloseReason::Unreachable);
                    }
                    Ok(change) => self.on_path_change(change),
                }
            }
        }
        self.drain();
    }

    /// Reports the path's change once Ready (before, the connect timeout
    /// speaks for a path that never worked).
    fn on_path_change(&mut self, change: Option<PathChange>) {
        if !self.phase.is_ready() || self.phase.is_closed() {
            return;
        }
        match change {
            Some(PathChange::Interrupted) => {
                info!(peer = %self.meta.peer_id, "path interrupted: nothing heard for {:?}", self.config.path_quiet_after);
                self.stats.path_interruptions += 1;
                self.push_event(Event::PathInterrupted);
            }
            Some(PathChange::Restored) => {
                info!(peer = %self.meta.peer_id, "path restored");
                self.stats.path_recoveries += 1;
                self.push_event(Event::PathRestored);
            }
            None => {}
        }
    }

    /// The next datagram to send, if any.
    ///
    /// Messages queued by calls since the last poll (emits, requests,
    /// replies) are handed to SCTP here, all together, so that a burst of
    /// calls leaves in as few packets as SCTP can bundle them into.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.flush();
        self.transmits.pop_front()
    }

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.flush();
        self.events.pop_front()
    }

    /// When [`Peer::handle_timeout`] must be called next; `None` when nothing
    /// is scheduled (a closed peer that has sent its goodbyes).
    #[must_use]
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.flush();
        let mut next = if self.rtc.is_alive() {
            self.rtc_deadline
        } else {
            None
        };
        next = earliest(next, self.signalling.poll_timeout());
        if !self.phase.is_closed() {
            next = earliest(next, self.channels.poll_timeout());
            next = earliest(
                next,
                self.tracks.remote.poll_timeout(
                    self.config.track_inactive_after,
                    self.config.keyframe_request_interval,
                ),
            );
            next = earliest(next, self.phase.poll_timeout());
            if self.phase.is_ready() {
                next = earliest(next, self.liveness.poll_timeout());
            }
        }
        next
    }

    /// Hands the signalling messages that calls queued to SCTP, then
    /// drains, as it does after RTP writes not yet drained. Cheap when
    /// there are neither.
    fn flush(&mut self) {
        let signals = self.phase.is_ready()
            && self.signalling.poll_message().is_some()
            && self.write_signal_messages();
        if signals || self.media_written {
            self.drain();
        }
    }

    /// Time only moves forward, whatever the caller passes.
    fn advance(&mut self, now: Instant) {
        if now > self.last_now {
            self.last_now = now;
        }
    }

    // ----------------------------------------------------------------- str0m

    /// One change to the `Rtc` from the API, then the drain str0m asks for.
    /// Never called from within the drain loop (changes asked for there
    /// are queued as [`RtcOp`]s).
    fn mutate<R>(&mut self, change: impl FnOnce(&mut Rtc) -> R) -> R {
        let result = change(&mut self.rtc);
        self.drain();
        result
    }

    /// str0m's rule: after every change, poll until it names a timeout
    /// before changing it again. Changes the sub-machines asked for while
    /// their events were handled wait in `ops` and are applied here one at
    /// a time, each followed by a full poll; then the signalling messages
    /// go to SCTP (see [`Peer::write_signal_messages`] for why they go
    /// together).
    fn drain(&mut self) {
        loop {
            self.poll_rtc();
            if let Some(op) = self.ops.pop_front() {
                self.apply(op);
                continue;
            }
            if !self.write_signal_messages() {
                return;
            }
        }
    }

    /// Polls the `Rtc` until it names its next timeout.
    fn poll_rtc(&mut self) {
        // Bounded: a str0m that keeps erroring while alive cannot spin us.
        let mut errors = 0;
        // Timeouts at or before the time just handled, served at once while
        // connecting and after a write (only then: see MAX_DUE_NOW).
        let written = std::mem::take(&mut self.media_written);
        let connecting = !self.phase.is_ready() && !self.phase.is_closed();
        let mut due_now = if written || connecting {
            MAX_DUE_NOW
        } else {
            0
        };
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    self.stats.datagrams_out += 1;
                    self.liveness.sent(self.last_now, &t.contents);
                    self.path.sent(t.destination, &t.contents);
                    self.transmits.push_back(Transmit {
                        source: t.source,
                        destination: self.path.route(t.destination),
                        contents: t.contents.into(),
                    });
                }
                Ok(Output::Event(e)) => self.on_rtc_event(e),
                Ok(Output::Timeout(t)) => {
                    // str0m's pacer sends media written since its last
                    // timeout only from the next one, and names a deadline
                    // at once for it. Served here, at the time already
                    // handled, a packet leaves in this call rather than a
                    // timer wake-up (1-2 ms) later. Bounded, so a deadline
                    // that stays due cannot spin us; then the floor holds.
                    // The handshake's steps come the same way. Only then:
                    // serving every early deadline at once once connected
                    // (SCTP's and the receive side's too) lost seconds of
                    // video at the start of the fault soak.
                    if t <= self.last_now && due_now > 0 && self.rtc.is_alive() {
                        due_now -= 1;
                        if let Err(e) = self.rtc.handle_input(Input::Timeout(self.last_now)) {
                            self.on_rtc_error(e);
                        }
                        continue;
                    }
                    let floor = self.last_now + MIN_WAKE;
                    self.rtc_deadline = Some(if t < floor { floor } else { t });
                    return;
                }
                Err(e) => {
                    self.on_rtc_error(e);
                    errors += 1;
                    if !self.rtc.is_alive() || errors > 8 {
                        self.rtc_deadline = Some(self.last_now + MIN_WAKE);
                        return;
                    }
                }
            }
        }
    }

    /// Applies one queued change to the `Rtc` (the drain loop polls after).
    fn apply(&mut self, op: RtcOp) {
        if !self.rtc.is_alive() {
            return;
        }
        let now = self.last_now;
        let share_cap = self.config.max_retransmission_share;
        let mut api = self.rtc.direct_api();
        match op {
            RtcOp::DeclareMedia { mid, kind } => {
                api.declare_media(mid, kind);
            }
            RtcOp::DeclareTx {
                ssrc,
                rtx,
                mid,
                rid,
            } => {
                api.declare_stream_tx(Ssrc::from(ssrc), rtx.map(Ssrc::from), mid, rid);
                if rtx.is_some()
                    && let Some(stream) = api.stream_tx(&Ssrc::from(ssrc))
                {
                    // str0m's own cache size and age; our cap on the share.
                    stream.set_rtx_cache(RTX_CACHE_PACKETS, RTX_CACHE_AGE, share_cap);
                }
            }
            RtcOp::ExpectRx {
                ssrc,
                rtx,
                mid,
                rid,
                nack,
            } => {
                api.expect_stream_rx(Ssrc::from(ssrc), rtx.map(Ssrc::from), mid, rid)
                    .suppress_nack(!nack);
            }
            RtcOp::RemoveMedia(mid) => api.remove_media(mid),
            RtcOp::KeyframeRequest { ssrc, kind } => {
                if let Some(stream) = api.stream_rx(&Ssrc::from(ssrc)) {
                    stream.request_keyframe(kind);
                }
            }
            RtcOp::OpenChannel(id) => {
                if let Some(config) = self.channels.rtc_config(id) {
                    let rtc_id = api.create_data_channel(config);
                    self.channels
                        .opening(id, rtc_id, now, self.config.channel_open_timeout);
                }
            }
            RtcOp::CloseChannel(rtc_id) => api.close_data_channel(rtc_id),
            RtcOp::ChannelThreshold { channel, bytes } => {
                if let Some(mut ch) = self.rtc.channel(channel) {
                    ch.set_buffered_amount_low_threshold(bytes);
                }
            }
            RtcOp::Receive {
                source,
                destination,
                data,
            } => {
                if let Ok(r) = Receive::new(Protocol::Udp, source, destination, &data)
                    && let Err(e) = self.rtc.handle_input(Input::Receive(now, r))
                {
                    self.on_rtc_error(e);
                }
            }
            RtcOp::Close => {
                if let Err(e) = self.rtc.close() {
                    debug!("str0m close: {e}");
                }
            }
        }
    }

    /// Hands the queued signalling messages to SCTP while it has room;
    /// `true` when it took any.
    ///
    /// One of the two places where the core changes the `Rtc` more than
    /// once before polling, against the letter of str0m's rule (drain after
    /// every change): a channel write only appends to SCTP's send queue and
    /// makes no output until polled, and str0m's own tests fill a channel
    /// with back-to-back writes (`tests/data-channel.rs`). Polling after
    /// each would cost a scan of SCTP's in-flight chunks per message
    /// (sctp-proto looks for retransmissions on every poll), which halved
    /// requests per second when measured. The other place is
    /// [`Peer::write_rtp`]: str0m 0.25's `StreamTx::write_rtp` only pushes
    /// the packet onto the stream's send queue (and records its time), so
    /// packets written back to back are drained once, at the next poll;
    /// that cut the CPU per relayed packet from 6.7 to about 5 µs.
    fn write_signal_messages(&mut self) -> bool {
        if !self.phase.is_ready() {
            return false;
        }
        let Some(id) = self.signal_channel else {
            return false;
        };
        let mut wrote = false;
        while let Some(msg) = self.signalling.poll_message() {
            let Some(mut ch) = self.rtc.channel(id) else {
                break;
            };
            match ch.write(true, msg) {
                Ok(true) => {
                    self.signalling.message_written();
                    wrote = true;
                }
                // No room: str0m reports room again, and any input retries.
                Ok(false) => break,
                Err(e) => {
                    warn!("signalling channel write failed: {e}");
                    break;
                }
            }
        }
        wrote
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

    /// One of str0m's events, inside the drain loop: nothing here changes
    /// the `Rtc` (changes are queued in `ops`).
    fn on_rtc_event(&mut self, e: RtcEvent) {
        // After Closed nothing more is reported: str0m is only drained of
        // its goodbye datagrams.
        if self.phase.is_closed() {
            return;
        }
        match e {
            RtcEvent::IceConnectionStateChange(s) => {
                debug!(peer = %self.meta.peer_id, "ICE {s:?}");
                let change = match s {
                    IceConnectionState::Disconnected => self.liveness.ice(self.last_now, false),
                    IceConnectionState::Connected | IceConnectionState::Completed => {
                        self.liveness.ice(self.last_now, true)
                    }
                    _ => None,
                };
                self.on_path_change(change);
            }
            RtcEvent::Connected => {
                debug!(peer = %self.meta.peer_id, "DTLS connected");
                if self.phase.dtls_connected() {
                    self.become_ready();
                }
            }
            RtcEvent::ChannelOpen(rtc_id, label) => self.on_channel_open(rtc_id, label),
            RtcEvent::ChannelData(d) => {
                if Some(d.id) == self.signal_channel {
                    if self.phase.is_ready() {
                        self.on_signal_message(&d.data);
                    } else {
                        self.stats.drops.unknown_channel_data += 1;
                    }
                } else if let Some(id) = self.channels.by_rtc(d.id) {
                    self.push_event(Event::ChannelData {
                        id,
                        binary: d.binary,
                        data: Bytes::from(d.data),
                    });
                } else {
                    self.stats.drops.unknown_channel_data += 1;
                }
            }
            RtcEvent::ChannelBufferedAmountLow(rtc_id) => {
                if let Some(id) = self.channels.on_room(rtc_id) {
                    self.push_event(Event::ChannelWritable(id));
                }
            }
            RtcEvent::ChannelClose(rtc_id) => self.on_channel_close(rtc_id),
            RtcEvent::RtpPacket(pkt) => {
                if let Some(received) = self.tracks.remote.on_rtp(pkt) {
                    if let Some(track) = received.reactivated {
                        self.push_event(Event::TrackActive(track));
                    }
                    self.push_event(Event::Rtp(received.packet));
                }
            }
            RtcEvent::KeyframeRequest(req) => {
                if let Some(e) = self
                    .tracks
                    .local
                    .on_keyframe_request(req.mid, req.rid, req.kind)
                {
                    self.push_event(e);
                }
            }
            RtcEvent::MediaIngressStats(st) => {
                self.tracks.remote.set_nacks(st.mid, st.nacks);
            }
            RtcEvent::MediaEgressStats(st) => {
                self.tracks.local.set_nacks(st.mid, st.nacks);
            }
            RtcEvent::SenderFeedback(fb) => {
                if let Some(track) = self.tracks.remote.by_mid(fb.mid) {
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

    /// The signalling channel is open and DTLS is up: messages flow, what
    /// waited for Ready is reported, and our channels that waited open.
    fn become_ready(&mut self) {
        self.phase = Phase::Ready;
        if let Some(channel) = self.signal_channel {
            self.ops.push_back(RtcOp::ChannelThreshold {
                channel,
                bytes: SIGNAL_LOW_WATER,
            });
        }
        info!(peer = %self.meta.peer_id, "ready");
        self.events.push_back(Event::Ready);
        self.events.extend(self.pre_ready.drain(..));
        for id in self.channels.waiting() {
            self.ops.push_back(RtcOp::OpenChannel(id));
        }
    }

    fn on_channel_open(&mut self, rtc_id: RtcChannelId, label: String) {
        let is_signal = self.signal_channel == Some(rtc_id)
            // The answerer waits for the offerer's signalling channel.
            || (self.role == Some(Role::Answerer)
                && self.signal_channel.is_none()
                && label == SIGNAL_LABEL
                && !self.channels.is_placeholder(rtc_id));
        if is_signal {
            self.signal_channel = Some(rtc_id);
            if self.phase.channel_opened() {
                self.become_ready();
            }
            return;
        }
        if let Opened::Open { id, label, remote } = self.channels.on_open(rtc_id, label) {
            self.ops.push_back(RtcOp::ChannelThreshold {
                channel: rtc_id,
                bytes: CHANNEL_LOW_WATER,
            });
            self.push_event(Event::ChannelOpen { id, label, remote });
        }
    }

    fn on_channel_close(&mut self, rtc_id: RtcChannelId) {
        if Some(rtc_id) == self.signal_channel {
            if self.phase.is_ready() {
                // Without its signalling channel the relay cannot go on; a
                // Go peer closes it only when it closes the whole relay.
                self.close_with(CloseReason::Remote);
            } else {
                self.close_with(CloseReason::Transport(
                    "the signalling channel could not be opened".into(),
                ));
            }
            return;
        }
        if let Some(ended) = self.channels.on_close(rtc_id) {
            if ended.open_failed {
                self.push_event(Event::ChannelError {
                    id: ended.id,
                    error: crate::error::ChannelError::OpenFailed,
                });
            }
            self.push_event(Event::ChannelClosed(ended.id));
        }
    }

    /// Events before Ready wait, bounded, so Ready comes first.
    fn push_event(&mut self, e: Event) {
        if self.phase.is_closed() {
            return;
        }
        if self.phase.is_ready() {
            self.events.push_back(e);
        } else if self.pre_ready.len() < MAX_PRE_READY_EVENTS {
            self.pre_ready.push_back(e);
        } else {
            self.stats.drops.unknown_channel_data += 1;
        }
    }
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
