//! The task that owns a peer's core and is its only driver.
//!
//! It loops: drain the core's outputs (datagrams to the socket, outcomes to
//! the waiting calls, events to the application's queue, the next
//! deadline), then wait for exactly one of a datagram, a call from a handle,
//! or the deadline, and apply it. It never awaits the application: events
//! go into bounded queues with `try_send`, and callbacks run in another task.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_channel::{Receiver, Sender};
use bytes::Bytes;
use futures_lite::future;
use relay_proto::{
    ChannelError, ChannelId, ChannelOptions, CloseReason, Event as CoreEvent, KeyframeKind,
    RequestError, RequestId, RtpIn, RtpOut, SenderReport, TrackCodec, TrackId, TrackMeta,
    TrackOptions, TrackStats,
};
use tracing::{debug, info, trace, warn};

use crate::channel::{ChannelMessage, DataChannel};
use crate::endpoint::{Datagram, EndpointInner};
use crate::error::Error;
use crate::peer::{Event, Shared, Stats};
use crate::request::Request;
use crate::rt;
use crate::track::{
    KeyframeRequest, LocalParts, LocalTrack, RemoteParts, RemoteState, RemoteTrack,
};

/// Keyframe requests held per track of ours until the application takes
/// them; the remote repeats a request it still needs.
const KEYFRAME_QUEUE: usize = 16;

/// Where the driver sends a call's result.
pub(crate) type Done<T> = Sender<Result<T, Error>>;

/// A call from a handle, over the bounded command queue.
pub(crate) enum Command {
    Offer(Done<Vec<u8>>),
    Answer(Vec<u8>, Done<()>),
    Emit {
        event: String,
        payload: Option<Bytes>,
        done: Done<()>,
    },
    Request {
        token: u64,
        event: String,
        payload: Option<Bytes>,
        timeout: Option<Duration>,
        done: Done<Option<Bytes>>,
    },
    Reply {
        id: u64,
        payload: Option<Bytes>,
        done: Done<()>,
    },
    CreateChannel {
        label: String,
        options: ChannelOptions,
        done: Done<DataChannel>,
    },
    Write {
        channel: ChannelId,
        binary: bool,
        data: Bytes,
        done: Done<()>,
    },
    CloseChannel {
        channel: ChannelId,
        done: Done<()>,
    },
    AddTrack {
        meta: TrackMeta,
        codec: TrackCodec,
        options: TrackOptions,
        done: Done<LocalTrack>,
    },
    /// No reply: the handle checked what it could, the rest is counted.
    WriteRtp {
        track: TrackId,
        packet: RtpOut,
    },
    RequestKeyframe {
        track: TrackId,
        kind: KeyframeKind,
        done: Done<()>,
    },
    OriginSenderReport {
        track: TrackId,
        report: SenderReport,
        done: Done<()>,
    },
    RemoveTrack {
        track: TrackId,
        done: Done<()>,
    },
    TrackStats {
        track: TrackId,
        done: Done<TrackStats>,
    },
    OriginNtpTime {
        track: TrackId,
        rtp: u32,
        done: Done<Option<u64>>,
    },
    Close(Done<()>),
    Stats(Done<Stats>),
}

/// What a `Drop` sends: never blocks (unbounded, and each message stands for
/// a pending request or the one peer handle, so their number is bounded).
pub(crate) enum Control {
    /// A request future was dropped before its outcome.
    Cancel(u64),
    /// The last [`Peer`](crate::Peer) handle was dropped: close.
    HandleDropped,
    /// A [`LocalTrack`] was dropped without being removed.
    RemoveTrack(TrackId),
}

pub(crate) struct Write {
    binary: bool,
    data: Bytes,
    done: Done<()>,
}

pub(crate) struct Slot {
    open: bool,
    incoming: Sender<ChannelMessage>,
    pending: VecDeque<Write>,
}

/// A track of ours waiting for the remote to accept it.
pub(crate) struct PendingTrack {
    parts: LocalParts,
    done: Done<LocalTrack>,
}

pub(crate) struct RemoteSlot {
    rtp: Sender<RtpIn>,
    state: Arc<RemoteState>,
}

enum Wake {
    Datagram(Datagram),
    Command(Command),
    Control(Control),
    Timeout,
}

pub(crate) struct Driver {
    pub(crate) core: relay_proto::Peer,
    pub(crate) key: u64,
    pub(crate) endpoint: Arc<EndpointInner>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) datagrams: Receiver<Datagram>,
    pub(crate) commands: Receiver<Command>,
    /// Handed to the handles the driver creates (requests, channels).
    pub(crate) commands_tx: Sender<Command>,
    /// Handed to the track handles (their drop removes the track).
    pub(crate) control_tx: Sender<Control>,
    pub(crate) control: Receiver<Control>,
    pub(crate) events: Sender<Event>,
    pub(crate) channel_queue: usize,
    pub(crate) track_queue: usize,
    pub(crate) requests: HashMap<RequestId, (u64, Done<Option<Bytes>>)>,
    pub(crate) tokens: HashMap<u64, RequestId>,
    pub(crate) channels: HashMap<ChannelId, Slot>,
    pub(crate) pending_tracks: HashMap<TrackId, PendingTrack>,
    /// Our accepted tracks: where their keyframe requests go.
    pub(crate) local_tracks: HashMap<TrackId, Sender<KeyframeRequest>>,
    pub(crate) remote_tracks: HashMap<TrackId, RemoteSlot>,
    pub(crate) closed: bool,
}

/// Inputs taken without waiting after each wake-up, at most.
const BATCH: usize = 64;

impl Driver {
    pub(crate) async fn run(mut self) {
        info!("peer task started");
        loop {
            self.drain().await;
            if self.closed {
                break;
            }
            let wake = self.wait().await;
            self.handle(wake);
            // Take what else is already waiting before sending and
            // reporting: one wake-up then serves a burst of datagrams or
            // calls, not one each.
            for _ in 0..BATCH {
                let next = if let Ok(d) = self.datagrams.try_recv() {
                    Wake::Datagram(d)
                } else if let Ok(c) = self.commands.try_recv() {
                    Wake::Command(c)
                } else {
                    break;
                };
                self.handle(next);
            }
            // A steady stream of inputs wins every race against the timer:
            // serve a deadline that has passed here too.
            let now = rt::now();
            if self.core.poll_timeout().is_some_and(|t| t <= now) {
                self.core.handle_timeout(now);
            }
        }
        self.finish();
        info!("peer task stopped");
    }

    /// Applies one input to the core.
    fn handle(&mut self, wake: Wake) {
        let now = rt::now();
        {
            match wake {
                Wake::Datagram(d) => {
                    trace!(from = %d.source, len = d.data.len(), "datagram in");
                    self.core
                        .handle_datagram(now, d.source, d.destination, &d.data);
                }
                Wake::Command(c) => self.apply(c),
                Wake::Control(Control::Cancel(token)) => {
                    if let Some(id) = self.tokens.remove(&token) {
                        self.core.cancel_request(now, id);
                    }
                }
                Wake::Control(Control::HandleDropped) => {
                    debug!("last handle dropped: closing");
                    self.core.close(now);
                }
                Wake::Control(Control::RemoveTrack(track)) => {
                    debug!(?track, "track handle dropped: removing the track");
                    let _ = self.remove_local(track);
                }
                Wake::Timeout => self.core.handle_timeout(now),
            }
        }
    }

    /// Exactly one input; fair among those ready.
    async fn wait(&self) -> Wake {
        let deadline = self.core.poll_timeout();
        let datagram = async {
            match self.datagrams.recv().await {
                Ok(d) => Wake::Datagram(d),
                Err(_) => future::pending().await,
            }
        };
        let command = async {
            match self.commands.recv().await {
                Ok(c) => Wake::Command(c),
                Err(_) => future::pending().await,
            }
        };
        let control = async {
            match self.control.recv().await {
                Ok(c) => Wake::Control(c),
                Err(_) => future::pending().await,
            }
        };
        let timer = async {
            match deadline {
                Some(t) => rt::sleep_until(t).await,
                None => future::pending().await,
            }
            Wake::Timeout
        };
        future::race(
            future::race(datagram, command),
            future::race(control, timer),
        )
        .await
    }

    /// Sends what the core queued and hands out what it reported, until
    /// neither is left.
    async fn drain(&mut self) {
        loop {
            let mut idle = true;
            while let Some(t) = self.core.poll_transmit() {
                idle = false;
                self.endpoint.send(&t).await;
            }
            while let Some(e) = self.core.poll_event() {
                idle = false;
                self.on_event(e);
            }
            if idle {
                return;
            }
        }
    }

    fn apply(&mut self, command: Command) {
        let now = rt::now();
        match command {
            Command::Offer(done) => {
                let result = self
                    .core
                    .create_offer(now)
                    .map_err(Error::from)
                    .and_then(|offer| {
                        let ufrag =
                            relay_proto::ufrag_of(&offer).map_err(relay_proto::Error::from)?;
                        if !self.endpoint.route_ufrag(self.key, &ufrag) {
                            return Err(relay_proto::Error::Config(
                                "ICE ufrag already in use on this endpoint".into(),
                            )
                            .into());
                        }
                        Ok(offer)
                    });
                let _ = done.try_send(result);
            }
            Command::Answer(answer, done) => {
                let result = self.core.accept_answer(now, &answer).map_err(Error::from);
                if result.is_ok() {
                    self.endpoint.route_remote(self.key, &answer);
                }
                let _ = done.try_send(result);
            }
            Command::Emit {
                event,
                payload,
                done,
            } => {
                let _ = done.try_send(self.core.emit(now, &event, payload).map_err(Error::from));
            }
            Command::Request {
                token,
                event,
                payload,
                timeout,
                done,
            } => {
                if done.is_closed() {
                    return; // The caller gave up before we got here.
                }
                match self.core.request(now, &event, payload, timeout) {
                    Ok(id) => {
                        self.requests.insert(id, (token, done));
                        self.tokens.insert(token, id);
                    }
                    Err(e) => {
                        let _ = done.try_send(Err(e.into()));
                    }
                }
            }
            Command::Reply { id, payload, done } => {
                let _ = done.try_send(
                    self.core
                        .reply(now, relay_proto::InboundRequestId(id), payload)
                        .map_err(Error::from),
                );
            }
            Command::CreateChannel {
                label,
                options,
                done,
            } => {
                let result = self
                    .core
                    .create_data_channel(now, &label, options)
                    .map(|id| self.new_slot(id, label, false));
                let _ = done.try_send(result.map_err(Error::from));
            }
            Command::Write {
                channel,
                binary,
                data,
                done,
            } => {
                let Some(slot) = self.channels.get_mut(&channel) else {
                    let _ = done.try_send(Err(Error::ChannelClosed));
                    return;
                };
                slot.pending.push_back(Write { binary, data, done });
                self.flush_writes(channel);
            }
            Command::CloseChannel { channel, done } => {
                let result = match self.core.close_data_channel(now, channel) {
                    Err(relay_proto::Error::Channel(ChannelError::Unknown)) => Ok(()),
                    r => r.map_err(Error::from),
                };
                let _ = done.try_send(result);
            }
            Command::AddTrack {
                meta,
                codec,
                options,
                done,
            } => {
                if done.is_closed() {
                    return; // The caller gave up before we got here.
                }
                let parts = LocalParts {
                    meta: meta.clone(),
                    codec: codec.clone(),
                    layers: options.simulcast.clone(),
                };
                match self.core.add_track_with(now, meta, codec, options) {
                    Ok(id) => {
                        self.pending_tracks.insert(id, PendingTrack { parts, done });
                    }
                    Err(e) => {
                        let _ = done.try_send(Err(e.into()));
                    }
                }
            }
            Command::WriteRtp { track, packet } => {
                if let Err(e) = self.core.write_rtp(now, track, packet) {
                    debug!(?track, "RTP write refused: {e}");
                    self.shared.count_rtp_write_failure();
                }
            }
            Command::RequestKeyframe { track, kind, done } => {
                let result = self.core.request_keyframe(now, track, kind);
                let _ = done.try_send(result.map_err(track_error));
            }
            Command::OriginSenderReport {
                track,
                report,
                done,
            } => {
                let result = self.core.set_origin_sender_report(now, track, report);
                let _ = done.try_send(result.map_err(track_error));
            }
            Command::RemoveTrack { track, done } => {
                let _ = done.try_send(self.remove_local(track));
            }
            Command::TrackStats { track, done } => {
                let result = self.core.track_stats(track).ok_or(Error::TrackClosed);
                let _ = done.try_send(result);
            }
            Command::OriginNtpTime { track, rtp, done } => {
                let _ = done.try_send(Ok(self.core.origin_ntp_time(track, rtp)));
            }
            Command::Close(done) => {
                self.core.close(now);
                let _ = done.try_send(Ok(()));
            }
            Command::Stats(done) => {
                let _ = done.try_send(Ok(self.shared.stats(self.core.stats().clone())));
            }
        }
    }

    /// Removes a track of ours from the core and ends its handle.
    fn remove_local(&mut self, track: TrackId) -> Result<(), Error> {
        self.local_tracks.remove(&track);
        match self.core.remove_track(rt::now(), track) {
            Err(relay_proto::Error::UnknownTrack) => Ok(()),
            r => r.map_err(Error::from),
        }
    }

    /// A slot for a channel and the handle that reads it.
    fn new_slot(&mut self, id: ChannelId, label: String, open: bool) -> DataChannel {
        let (tx, rx) = async_channel::bounded(self.channel_queue.max(1));
        self.channels.insert(
            id,
            Slot {
                open,
                incoming: tx,
                pending: VecDeque::new(),
            },
        );
        DataChannel::new(id, label, rx, self.commands_tx.clone(), self.shared.clone())
    }

    /// Writes queued messages in order until the channel has no room.
    fn flush_writes(&mut self, id: ChannelId) {
        let Some(slot) = self.channels.get_mut(&id) else {
            return;
        };
        if !slot.open {
            return;
        }
        while let Some(w) = slot.pending.front() {
            match self.core.channel_write(rt::now(), id, w.binary, &w.data) {
                Err(relay_proto::Error::Channel(ChannelError::Full | ChannelError::NotOpen)) => {
                    return;
                }
                result => {
                    let w = slot.pending.pop_front().expect("front was Some");
                    let _ = w.done.try_send(result.map_err(Error::from));
                }
            }
        }
    }

    /// Delivers an event unless the queue is full. One slot stays free for
    /// `Closed`, which is therefore never dropped.
    fn deliver(&mut self, event: Event) {
        let cap = self.events.capacity().unwrap_or(usize::MAX);
        if self.events.len() + 1 >= cap {
            warn!("event queue full: {} dropped", event.kind());
            self.shared.count_event_drop();
            if let Event::Request(r) = event {
                r.settle();
            }
            return;
        }
        if let Err(e) = self.events.try_send(event)
            && let Event::Request(r) = e.into_inner()
        {
            // Nobody reads events any more; the application chose that.
            r.settle();
        }
    }

    fn on_event(&mut self, event: CoreEvent) {
        match event {
            CoreEvent::Ready => {
                self.shared.set_ready();
                let _ = self.events.try_send(Event::Ready);
            }
            CoreEvent::Request(inbound) => {
                let request = Request::new(inbound, self.commands_tx.clone(), self.shared.clone());
                self.deliver(Event::Request(request));
            }
            CoreEvent::Reply { id, payload } => {
                if let Some((token, done)) = self.requests.remove(&id) {
                    self.tokens.remove(&token);
                    let _ = done.try_send(Ok(payload));
                }
            }
            CoreEvent::RequestFailed { id, reason } => {
                if let Some((token, done)) = self.requests.remove(&id) {
                    self.tokens.remove(&token);
                    let _ = done.try_send(Err(Error::Request(reason)));
                }
            }
            CoreEvent::ChannelOpen { id, label, remote } => {
                if remote {
                    let handle = self.new_slot(id, label, true);
                    self.deliver(Event::DataChannel(handle));
                } else if let Some(slot) = self.channels.get_mut(&id) {
                    slot.open = true;
                    self.flush_writes(id);
                }
            }
            CoreEvent::ChannelData { id, binary, data } => {
                let delivered = self
                    .channels
                    .get(&id)
                    .is_some_and(|s| s.incoming.try_send(ChannelMessage { binary, data }).is_ok());
                if !delivered {
                    self.shared.count_channel_drop();
                }
            }
            CoreEvent::ChannelWritable(id) => self.flush_writes(id),
            CoreEvent::ChannelClosed(id) => self.end_channel(id, || Error::ChannelClosed),
            CoreEvent::ChannelError { id, error } => self.end_channel(id, || {
                Error::Peer(relay_proto::Error::Channel(error.clone()))
            }),
            CoreEvent::TrackAdded(id) => {
                let Some(pending) = self.pending_tracks.remove(&id) else {
                    return;
                };
                let (tx, rx) = async_channel::bounded(KEYFRAME_QUEUE);
                self.local_tracks.insert(id, tx);
                let handle = LocalTrack::new(
                    id,
                    pending.parts,
                    rx,
                    self.commands_tx.clone(),
                    self.control_tx.clone(),
                    self.shared.clone(),
                );
                // A caller that gave up drops the handle here, which
                // removes the track.
                let _ = pending.done.try_send(Ok(handle));
            }
            CoreEvent::TrackFailed { track, reason } => {
                // Closing fails the adds with the close reason instead.
                if reason != RequestError::Closed
                    && let Some(pending) = self.pending_tracks.remove(&track)
                {
                    let _ = pending.done.try_send(Err(Error::TrackFailed(reason)));
                }
            }
            CoreEvent::Track {
                track,
                meta,
                codec,
                ssrc,
                layers,
                header_extensions,
            } => {
                let (tx, rx) = async_channel::bounded(self.track_queue.max(1));
                let state = Arc::new(RemoteState {
                    active: true.into(),
                });
                self.remote_tracks.insert(
                    track,
                    RemoteSlot {
                        rtp: tx,
                        state: state.clone(),
                    },
                );
                let parts = RemoteParts {
                    meta,
                    codec,
                    ssrc,
                    layers,
                    header_extensions,
                };
                let handle = RemoteTrack::new(
                    track,
                    parts,
                    rx,
                    state,
                    self.commands_tx.clone(),
                    self.shared.clone(),
                );
                self.deliver(Event::Track(handle));
            }
            CoreEvent::Rtp(packet) => {
                let delivered = self
                    .remote_tracks
                    .get(&packet.track)
                    .is_some_and(|s| s.rtp.try_send(packet).is_ok());
                if !delivered {
                    self.shared.count_rtp_drop();
                }
            }
            CoreEvent::KeyframeRequest { track, layer, kind } => {
                let delivered = self
                    .local_tracks
                    .get(&track)
                    .is_some_and(|k| k.try_send(KeyframeRequest { layer, kind }).is_ok());
                if !delivered {
                    self.shared.count_keyframe_drop();
                }
            }
            CoreEvent::TrackInactive(track) => {
                if let Some(slot) = self.remote_tracks.get(&track) {
                    slot.state.active.store(false, Ordering::Relaxed);
                }
                self.deliver(Event::TrackInactive(track));
            }
            CoreEvent::TrackActive(track) => {
                if let Some(slot) = self.remote_tracks.get(&track) {
                    slot.state.active.store(true, Ordering::Relaxed);
                }
                self.deliver(Event::TrackActive(track));
            }
            CoreEvent::TrackRemoved(track) => {
                // Dropping the sender ends the reader after what it holds.
                self.remote_tracks.remove(&track);
                self.deliver(Event::TrackRemoved(track));
            }
            CoreEvent::Closed(reason) => self.on_closed(reason),
            // Sender reports stay in the core (`origin_ntp_time`).
            _ => {}
        }
    }

    fn end_channel(&mut self, id: ChannelId, error: impl Fn() -> Error) {
        if let Some(slot) = self.channels.remove(&id) {
            for w in slot.pending {
                let _ = w.done.try_send(Err(error()));
            }
        }
    }

    fn on_closed(&mut self, reason: CloseReason) {
        self.closed = true;
        for (_, slot) in self.channels.drain() {
            for w in slot.pending {
                let _ = w.done.try_send(Err(Error::Closed(reason.clone())));
            }
        }
        for (_, pending) in self.pending_tracks.drain() {
            let _ = pending.done.try_send(Err(Error::Closed(reason.clone())));
        }
        // Ends the keyframe queues and the RTP readers.
        self.local_tracks.clear();
        self.remote_tracks.clear();
        self.shared
            .set_closed(reason.clone(), self.core.stats().clone());
        let _ = self.events.try_send(Event::Closed(reason));
    }

    /// Leaves the endpoint and fails what still waits on the driver.
    fn finish(&mut self) {
        self.endpoint.detach(self.key);
        self.requests.clear();
        self.commands.close();
        self.control.close();
        // Queued calls hold their result senders: drop them so callers wake.
        while self.commands.try_recv().is_ok() {}
        while self.control.try_recv().is_ok() {}
        self.events.close();
    }
}

/// A track call's error: an unknown track is a removed one.
fn track_error(e: relay_proto::Error) -> Error {
    match e {
        relay_proto::Error::UnknownTrack => Error::TrackClosed,
        e => e.into(),
    }
}
