//! The browser side: one str0m `Rtc` per publisher (WHIP) or watcher
//! (WHEP), each driven by a task of its own on a UDP socket of its own.
//!
//! The `Rtc`s run in RTP mode: packets cross this server as the publisher
//! sent them (payload, timestamp, marker), so they can go on to a relay peer
//! unchanged. Later changes (a track added by a publisher, a publisher
//! arriving for a watcher) are negotiated over the data channel every
//! browser opens: `{"type":"offer"|"answer","sdp":...}`, and
//! `{"type":"message","text":...}` for publishers' messages.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use relay_tokio::{TrackCodec, TrackMeta};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::ChannelId;
use str0m::format::{Codec, FormatParams, PayloadParams};
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpPacket, RtpWrite};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::session::{Member, Notice, Origin, Packet, Session, Track};

/// At most one keyframe request per track per this interval goes to a
/// publisher's browser.
const KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);

/// Why a WHIP or WHEP offer was refused.
pub type OfferError = String;

/// A browser-facing `Rtc` with its socket: the part publishers and watchers
/// share.
struct Conn {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    buf: Vec<u8>,
    channel: Option<ChannelId>,
}

/// What woke a connection's task up (moved once, so its size does not
/// matter).
#[allow(clippy::large_enum_variant)]
enum Wake<C> {
    Event(Event),
    Command(C),
    Closed,
}

impl Conn {
    /// Binds a socket on `ip`, accepts the browser's offer, and returns the
    /// connection with the SDP answer (which carries our one candidate).
    async fn accept(ip: IpAddr, offer: &str) -> Result<(Conn, String), OfferError> {
        let offer = SdpOffer::from_sdp_string(offer).map_err(|e| format!("bad SDP offer: {e}"))?;
        let socket = UdpSocket::bind((ip, 0))
            .await
            .map_err(|e| format!("cannot bind a UDP socket on {ip}: {e}"))?;
        let local = socket.local_addr().map_err(|e| e.to_string())?;
        let mut rtc = Rtc::builder()
            .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_vp8(true)
            .enable_h264(true)
            .enable_opus(true, false)
            .build(Instant::now());
        let candidate = Candidate::host(local, "udp").map_err(|e| e.to_string())?;
        rtc.add_local_candidate(candidate);
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| format!("offer refused: {e}"))?;
        let conn = Conn {
            rtc,
            socket,
            local,
            buf: vec![0; 2000],
            channel: None,
        };
        Ok((conn, answer.to_sdp_string()))
    }

    /// Drives the `Rtc` (datagrams out and in, timers) until it has an event
    /// for us, a command arrives, or it is done.
    async fn next<C>(&mut self, commands: &mut mpsc::UnboundedReceiver<C>) -> Wake<C> {
        loop {
            if !self.rtc.is_alive() {
                return Wake::Closed;
            }
            let deadline = match self.rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    let _ = self.socket.send_to(&t.contents, t.destination).await;
                    continue;
                }
                Ok(Output::Event(Event::IceConnectionStateChange(
                    IceConnectionState::Disconnected,
                ))) => {
                    self.rtc.disconnect();
                    return Wake::Closed;
                }
                Ok(Output::Event(e)) => return Wake::Event(e),
                Ok(Output::Timeout(t)) => t,
                Err(e) => {
                    tracing::warn!("rtc failed: {e}");
                    self.rtc.disconnect();
                    return Wake::Closed;
                }
            };
            let woke = tokio::select! {
                r = self.socket.recv_from(&mut self.buf) => r.ok(),
                _ = tokio::time::sleep_until(deadline.into()) => None,
                c = commands.recv() => return c.map_or(Wake::Closed, Wake::Command),
            };
            let now = Instant::now();
            let input = match woke {
                Some((n, source)) => match self.buf[..n].try_into() {
                    Ok(contents) => Input::Receive(
                        now,
                        Receive {
                            proto: Protocol::Udp,
                            source,
                            destination: self.local,
                            contents,
                        },
                    ),
                    Err(_) => continue,
                },
                None => Input::Timeout(now),
            };
            if let Err(e) = self.rtc.handle_input(input) {
                tracing::warn!("rtc failed: {e}");
                self.rtc.disconnect();
            }
        }
    }

    /// Sends a JSON message on the browser's data channel.
    fn send(&mut self, message: &serde_json::Value) {
        let Some(mut channel) = self.channel.and_then(|id| self.rtc.channel(id)) else {
            return;
        };
        if let Err(e) = channel.write(false, message.to_string().as_bytes()) {
            tracing::debug!("data channel write failed: {e}");
        }
    }

    /// Answers an offer the browser sent on the data channel.
    fn renegotiate(&mut self, sdp: &str) {
        let answer = SdpOffer::from_sdp_string(sdp)
            .map_err(|e| e.to_string())
            .and_then(|o| {
                self.rtc
                    .sdp_api()
                    .accept_offer(o)
                    .map_err(|e| e.to_string())
            });
        match answer {
            Ok(answer) => {
                self.send(&serde_json::json!({"type": "answer", "sdp": answer.to_sdp_string()}))
            }
            Err(e) => tracing::warn!("renegotiation refused: {e}"),
        }
    }
}

/// Parses a data-channel message: `(type, the message)`.
fn parse(data: &[u8]) -> Option<(String, serde_json::Value)> {
    let v: serde_json::Value = serde_json::from_slice(data).ok()?;
    Some((v.get("type")?.as_str()?.to_string(), v))
}

/// The browsers connected now (publishers and watchers), by id: the
/// resource a WHIP or WHEP `DELETE` ends.
#[derive(Debug, Default)]
pub struct Clients {
    clients: Mutex<HashMap<String, Client>>,
}

#[derive(Debug)]
struct Client {
    session: String,
    stop: mpsc::UnboundedSender<Stop>,
}

/// Asks a client's task to end.
#[derive(Debug)]
struct Stop;

impl Clients {
    fn add(&self, id: &str, session: &str) -> mpsc::UnboundedReceiver<Stop> {
        let (stop, rx) = mpsc::unbounded_channel();
        let client = Client {
            session: session.to_string(),
            stop,
        };
        self.lock().insert(id.to_string(), client);
        rx
    }

    fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Ends the client `id` of `session`; `false` when there is none.
    pub fn stop(&self, session: &str, id: &str) -> bool {
        let mut clients = self.lock();
        match clients.get(id) {
            Some(c) if c.session == session => {
                let _ = c.stop.send(Stop);
                clients.remove(id);
                true
            }
            _ => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Client>> {
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn next_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The relay's description of a codec str0m negotiated.
fn track_codec(params: &PayloadParams) -> TrackCodec {
    let spec = params.spec();
    let pt = *params.pt();
    let base = if spec.codec.is_audio() {
        TrackCodec::opus(pt)
    } else {
        TrackCodec::vp8(pt)
    };
    let kind = if spec.codec.is_audio() {
        "audio"
    } else {
        "video"
    };
    let mut codec = base;
    codec.mime_type = format!("{kind}/{}", spec.codec);
    codec.clock_rate = spec.clock_rate.get();
    codec.channels = spec.channels.unwrap_or(0).into();
    codec.fmtp_line = spec.format.to_string();
    codec
}

/// Our payload type on `rtc` for a track's codec: same codec, and for H.264
/// the closest packetization mode and profile.
fn local_pt(rtc: &Rtc, codec: &TrackCodec) -> Option<Pt> {
    let name = codec.mime_type.split('/').nth(1)?;
    let wanted = Codec::from(name);
    let fmtp = FormatParams::parse_line(&codec.fmtp_line);
    rtc.codec_config()
        .params()
        .iter()
        .filter(|p| p.spec().codec == wanted)
        .max_by_key(|p| {
            let f = p.spec().format;
            2 * u8::from(f.packetization_mode == fmtp.packetization_mode)
                + u8::from(f.profile_level_id == fmtp.profile_level_id)
        })
        .map(|p| p.pt())
}

// ---------------------------------------------------------------------------
// Publishers (WHIP)

/// Commands to a publisher's task.
enum PublisherCommand {
    Keyframe(Mid),
}

/// A track a publisher sends us.
struct Incoming {
    track: Arc<Track>,
    packets: broadcast::Sender<Arc<Packet>>,
    last_keyframe_request: Option<Instant>,
}

/// Accepts a WHIP offer: the browser's tracks join `session` as their first
/// packets arrive. Returns the SDP answer. `server` (this server's name)
/// prefixes the publisher's id, which names its tracks' stream: ids stay
/// apart from other servers' publishers when tracks meet across the relay.
/// Also returns the publisher's id, the WHIP resource a `DELETE` ends.
pub async fn publish(
    ip: IpAddr,
    server: &str,
    session: Arc<Session>,
    clients: Arc<Clients>,
    offer: &str,
) -> Result<(String, String), OfferError> {
    let (conn, answer) = Conn::accept(ip, offer).await?;
    let id = next_id(&format!("{server}-pub"));
    tracing::info!(session = %session.name, publisher = %id, "publisher joined");
    let stop = clients.add(&id, &session.name);
    let member = session.join();
    let task_id = id.clone();
    let server = server.to_string();
    tokio::spawn(async move {
        run_publisher(conn, session, server, task_id.clone(), stop).await;
        clients.remove(&task_id);
        drop(member);
    });
    Ok((answer, id))
}

async fn run_publisher(
    mut conn: Conn,
    session: Arc<Session>,
    server: String,
    id: String,
    mut stop: mpsc::UnboundedReceiver<Stop>,
) {
    let (commands_tx, mut commands) = mpsc::unbounded_channel();
    let mut incoming: HashMap<Mid, Incoming> = HashMap::new();
    loop {
        let wake = tokio::select! {
            wake = conn.next(&mut commands) => wake,
            _ = stop.recv() => {
                tracing::info!(publisher = %id, "ended by DELETE");
                conn.rtc.disconnect();
                Wake::Closed
            }
        };
        match wake {
            Wake::Closed => break,
            Wake::Command(PublisherCommand::Keyframe(mid)) => {
                let Some(track) = incoming.get_mut(&mid) else {
                    continue;
                };
                if track
                    .last_keyframe_request
                    .is_some_and(|t| t.elapsed() < KEYFRAME_INTERVAL)
                {
                    continue;
                }
                track.last_keyframe_request = Some(Instant::now());
                if let Some(rx) = conn.rtc.direct_api().stream_rx_by_mid(mid, None) {
                    rx.request_keyframe(KeyframeRequestKind::Pli);
                    tracing::debug!(publisher = %id, %mid, "keyframe requested");
                }
            }
            Wake::Event(Event::RtpPacket(packet)) => on_publisher_rtp(
                &mut conn,
                &session,
                &server,
                &id,
                &commands_tx,
                &mut incoming,
                packet,
            ),
            Wake::Event(Event::ChannelOpen(channel, _)) => conn.channel = Some(channel),
            Wake::Event(Event::ChannelClose(_)) => break,
            Wake::Event(Event::ChannelData(data)) => match parse(&data.data) {
                Some((t, v)) if t == "offer" => {
                    conn.renegotiate(v["sdp"].as_str().unwrap_or_default())
                }
                Some((t, v)) if t == "message" => {
                    let text = v["text"].as_str().unwrap_or_default();
                    session.message(&id, text, Origin::Local);
                }
                _ => tracing::debug!(publisher = %id, "unknown data-channel message"),
            },
            Wake::Event(_) => {}
        }
    }
    // Dropping the senders ends the tracks for every subscriber.
    for (_, t) in incoming {
        session.remove_track(t.track.id);
    }
    tracing::info!(session = %session.name, publisher = %id, "publisher left");
}

fn on_publisher_rtp(
    conn: &mut Conn,
    session: &Session,
    server: &str,
    publisher: &str,
    commands: &mpsc::UnboundedSender<PublisherCommand>,
    incoming: &mut HashMap<Mid, Incoming>,
    packet: RtpPacket,
) {
    let Some(mid) = conn
        .rtc
        .direct_api()
        .stream_rx(&packet.header.ssrc)
        .map(|s| s.mid())
    else {
        return;
    };
    let track = match incoming.entry(mid) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(e) => {
            // The first packet names the codec the browser picked.
            let pt = packet.header.payload_type;
            let Some(params) = conn.rtc.codec_config().find(|p| p.pt() == pt) else {
                return;
            };
            let codec = track_codec(params);
            let kind = if params.spec().codec.is_audio() {
                "audio"
            } else {
                "video"
            };
            // Track ids name the publisher too: a browser watching two publishers
            // must not see two tracks with one id (its msid).
            let meta = TrackMeta::new(publisher, format!("{publisher}-{kind}-{mid}"));
            let commands = commands.clone();
            let (track, packets) = Track::new(
                meta,
                codec,
                Origin::Local,
                vec![server.to_string()],
                move || {
                    let _ = commands.send(PublisherCommand::Keyframe(mid));
                },
            );
            session.add_track(track.clone());
            e.insert(Incoming {
                track,
                packets,
                last_keyframe_request: None,
            })
        }
    };
    if packet.payload.is_empty() {
        return; // padding
    }
    let _ = track.packets.send(Arc::new(Packet {
        seq: *packet.seq_no,
        timestamp: packet.header.timestamp,
        marker: packet.header.marker,
        payload: packet.payload,
        received: packet.timestamp,
    }));
}

// ---------------------------------------------------------------------------
// Watchers (WHEP)

/// Commands to a watcher's task.
enum WatcherCommand {
    Notice(Notice),
    Rtp(u64, Arc<Packet>),
}

/// A session track sent to one watcher.
struct Outgoing {
    track: Arc<Track>,
    mid: Mid,
    /// Set once negotiated: the payload type and the task that feeds packets.
    open: Option<(Pt, JoinHandle<()>)>,
    /// The first sequence number sent: this watcher's numbering starts at 1
    /// whenever it joins (its SRTP expects rollover count 0).
    first_seq: Option<u64>,
}

impl Drop for Outgoing {
    fn drop(&mut self) {
        if let Some((_, feeder)) = &self.open {
            feeder.abort();
        }
    }
}

struct Watcher {
    conn: Conn,
    session: Arc<Session>,
    id: String,
    commands: mpsc::UnboundedSender<WatcherCommand>,
    outgoing: HashMap<u64, Outgoing>,
    pending: Option<SdpPendingOffer>,
}

/// Accepts a WHEP offer. The offer needs a data channel: the session's
/// tracks are offered to the browser over it, now and whenever they change.
/// Returns the SDP answer.
/// Also returns the watcher's id, the WHEP resource a `DELETE` ends.
pub async fn watch(
    ip: IpAddr,
    session: Arc<Session>,
    clients: Arc<Clients>,
    offer: &str,
) -> Result<(String, String), OfferError> {
    if !offer.contains("m=application") {
        return Err("the offer needs a data channel: tracks are offered over it".into());
    }
    let (conn, answer) = Conn::accept(ip, offer).await?;
    let id = next_id("watch");
    tracing::info!(session = %session.name, watcher = %id, "watcher joined");
    let (commands, inbox) = mpsc::unbounded_channel();
    // Session notices come in through the command queue.
    let mut notices = session.subscribe();
    let tx = commands.clone();
    let notices_task = tokio::spawn(async move {
        loop {
            let notice = match notices.recv().await {
                Ok(n) => n,
                Err(broadcast::error::RecvError::Lagged(_)) => Notice::TracksChanged,
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if tx.send(WatcherCommand::Notice(notice)).is_err() {
                return;
            }
        }
    });
    let watcher = Watcher {
        conn,
        session,
        id,
        commands,
        outgoing: HashMap::new(),
        pending: None,
    };
    let stop = clients.add(&watcher.id, &watcher.session.name);
    let member: Member = watcher.session.join_watcher();
    let id = watcher.id.clone();
    let task_id = id.clone();
    tokio::spawn(async move {
        watcher.run(inbox, stop).await;
        notices_task.abort();
        clients.remove(&task_id);
        drop(member);
    });
    Ok((answer, id))
}

impl Watcher {
    async fn run(
        mut self,
        mut inbox: mpsc::UnboundedReceiver<WatcherCommand>,
        mut stop: mpsc::UnboundedReceiver<Stop>,
    ) {
        loop {
            let wake = tokio::select! {
                wake = self.conn.next(&mut inbox) => wake,
                _ = stop.recv() => {
                    tracing::info!(watcher = %self.id, "ended by DELETE");
                    self.conn.rtc.disconnect();
                    Wake::Closed
                }
            };
            match wake {
                Wake::Closed => break,
                Wake::Command(WatcherCommand::Rtp(track, packet)) => self.write(track, &packet),
                Wake::Command(WatcherCommand::Notice(Notice::TracksChanged)) => self.sync(),
                Wake::Command(WatcherCommand::Notice(Notice::Message { from, text, .. })) => {
                    let m = serde_json::json!({"type": "message", "from": from, "text": text});
                    self.conn.send(&m);
                }
                Wake::Event(Event::ChannelOpen(channel, _)) => {
                    self.conn.channel = Some(channel);
                    self.sync();
                }
                Wake::Event(Event::ChannelClose(_)) => break,
                Wake::Event(Event::ChannelData(data)) => match parse(&data.data) {
                    Some((t, v)) if t == "answer" => {
                        self.answered(v["sdp"].as_str().unwrap_or_default())
                    }
                    Some((t, v)) if t == "offer" => {
                        self.conn.renegotiate(v["sdp"].as_str().unwrap_or_default())
                    }
                    _ => tracing::debug!(watcher = %self.id, "unknown data-channel message"),
                },
                Wake::Event(Event::KeyframeRequest(req)) => {
                    if let Some(out) = self.outgoing.values().find(|o| o.mid == req.mid) {
                        out.track.request_keyframe();
                    }
                }
                Wake::Event(_) => {}
            }
        }
        tracing::info!(session = %self.session.name, watcher = %self.id, "watcher left");
    }

    /// Offers the browser the session's new tracks and stops the gone ones,
    /// unless an offer is already out (then again once it is answered).
    fn sync(&mut self) {
        if self.conn.channel.is_none() || self.pending.is_some() {
            return;
        }
        let tracks = self.session.tracks();
        let gone: Vec<u64> = (self.outgoing.keys())
            .filter(|id| !tracks.iter().any(|t| t.id == **id))
            .copied()
            .collect();
        let mut change = self.conn.rtc.sdp_api();
        for id in gone {
            if let Some(out) = self.outgoing.remove(&id) {
                change.stop_media(out.mid);
            }
        }
        for track in tracks {
            if self.outgoing.contains_key(&track.id) {
                continue;
            }
            let mid = change.add_media(
                track.kind,
                Direction::SendOnly,
                Some(track.meta.stream_id.clone()),
                Some(track.meta.track_id.clone()),
                None,
            );
            let out = Outgoing {
                track: track.clone(),
                mid,
                open: None,
                first_seq: None,
            };
            self.outgoing.insert(track.id, out);
        }
        if !change.has_changes() {
            return;
        }
        let Some((offer, pending)) = change.apply() else {
            return;
        };
        self.pending = Some(pending);
        let offer = serde_json::json!({"type": "offer", "sdp": offer.to_sdp_string()});
        self.conn.send(&offer);
    }

    /// The browser answered our offer: start sending the new tracks.
    fn answered(&mut self, sdp: &str) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        let accepted = SdpAnswer::from_sdp_string(sdp)
            .map_err(|e| e.to_string())
            .and_then(|a| {
                (self.conn.rtc.sdp_api())
                    .accept_answer(pending, a)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = accepted {
            tracing::warn!(watcher = %self.id, "answer refused: {e}");
            self.conn.rtc.disconnect();
            return;
        }
        for (id, out) in &mut self.outgoing {
            if out.open.is_some() {
                continue;
            }
            let Some(pt) = local_pt(&self.conn.rtc, &out.track.codec) else {
                tracing::warn!(watcher = %self.id, codec = %out.track.codec.mime_type, "no matching codec");
                continue;
            };
            let Some(mut packets) = out.track.subscribe() else {
                continue; // ended meanwhile; the next sync stops it
            };
            let (id, commands) = (*id, self.commands.clone());
            let feeder = tokio::spawn(async move {
                loop {
                    match packets.recv().await {
                        Ok(p) => {
                            if commands.send(WatcherCommand::Rtp(id, p)).is_err() {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            });
            out.open = Some((pt, feeder));
            // Start the picture now rather than at the source's next keyframe.
            if out.track.kind == MediaKind::Video {
                out.track.request_keyframe();
            }
        }
        self.sync();
    }

    fn write(&mut self, track: u64, packet: &Packet) {
        let Some(out) = self.outgoing.get_mut(&track) else {
            return;
        };
        let Some((pt, _)) = &out.open else {
            return;
        };
        let first = *out.first_seq.get_or_insert(packet.seq);
        if packet.seq < first {
            return; // reordered before the first one we sent
        }
        let seq = packet.seq - first + 1;
        let mut api = self.conn.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(out.mid, None) else {
            return;
        };
        let write = RtpWrite::new(
            *pt,
            seq.into(),
            packet.timestamp,
            packet.received,
            packet.payload.clone(),
        )
        .marker(packet.marker)
        .nackable(out.track.kind == MediaKind::Video);
        tx.write_rtp(write);
    }
}
