//! The task that owns a peer's core and is its only driver.
//!
//! One loop per peer: the peer's sockets (or, on a shared endpoint, the
//! batches its router hands over), its timer, and the calls from its
//! handles are all polled by this one task, with the time read once per
//! wake-up. Each turn takes what is waiting from every source (bounded, so
//! no source starves another or the executor), then sends what the core
//! queued, joining equal datagrams into GSO segments, and hands events to
//! the application's queues. It never awaits the application: events go
//! into bounded queues with `try_send`, and callbacks run in another task.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_channel::Sender;
use bytes::Bytes;
use relay_proto::{
    ChannelError, ChannelId, ChannelOptions, CloseReason, Event as CoreEvent, KeyframeKind,
    RequestError, RequestId, RtpIn, RtpOut, SenderReport, TrackCodec, TrackId, TrackMeta,
    TrackOptions, TrackStats,
};
use tracing::{debug, info, trace, warn};

use crate::channel::{ChannelMessage, DataChannel};
use crate::endpoint::{Batch, EndpointInner};
use crate::error::Error;
use crate::peer::{Event, Shared, Stats};
use crate::queue::{self, Rx, Tx};
use crate::request::Request;
use crate::runtime::{AsyncTimer, AsyncUdpSocket, Runtime, UdpSender};
use crate::socket::{self, Outgoing};
use crate::track::{
    KeyframeRequest, LocalParts, LocalTrack, RemoteParts, RemoteState, RemoteTrack,
};

/// Inputs (datagrams, calls) taken in one turn before the outputs go out,
/// at most: enough that a burst leaves as few GSO sends, little enough
/// that replies are not held back long.
const TURN_INPUTS: usize = 64;

/// Turns in one wake-up before the task yields to the executor.
const TURNS_PER_WAKE: usize = 4;

/// Datagrams waiting for a socket that has no room, past which calls from
/// the handles wait (their queue fills, so `write_rtp` waits): the socket's
/// backpressure reaches the application instead of memory.
const OUTGOING_HIGH: usize = 4096;

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
        id: relay_proto::InboundRequestId,
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
    incoming: Tx<ChannelMessage>,
    pending: VecDeque<Write>,
}

/// A track of ours waiting for the remote to accept it.
pub(crate) struct PendingTrack {
    parts: LocalParts,
    done: Done<LocalTrack>,
}

pub(crate) struct RemoteSlot {
    rtp: Tx<RtpIn>,
    state: Arc<RemoteState>,
}

/// How a peer reaches the network.
pub(crate) enum Io {
    /// Sockets of its own, read in this task.
    Own(Vec<OwnSocket>),
    /// Sockets shared with other peers: an endpoint's router reads them and
    /// hands this peer's datagrams over in batches.
    Shared {
        endpoint: Arc<EndpointInner>,
        key: u64,
        batches: Rx<Batch>,
    },
}

pub(crate) struct OwnSocket {
    pub(crate) local: SocketAddr,
    pub(crate) socket: Arc<dyn AsyncUdpSocket>,
    /// Stops being polled after an error that is not transient.
    pub(crate) failed: bool,
}

impl Io {
    fn route_ufrag(&self, ufrag: &str) -> bool {
        match self {
            Io::Own(_) => true,
            Io::Shared { endpoint, key, .. } => endpoint.route_ufrag(*key, ufrag),
        }
    }

    fn route_remote(&self, signal: &[u8]) {
        if let Io::Shared { endpoint, key, .. } = self {
            endpoint.route_remote(*key, signal);
        }
    }
}

/// One local socket's sending side, with what waits for it.
pub(crate) struct Out {
    pub(crate) local: SocketAddr,
    pub(crate) sender: Pin<Box<dyn UdpSender>>,
    pub(crate) queue: VecDeque<Outgoing>,
}

pub(crate) struct Driver {
    pub(crate) runtime: Arc<dyn Runtime>,
    pub(crate) core: relay_proto::Peer,
    pub(crate) io: Io,
    pub(crate) out: Vec<Out>,
    pub(crate) timer: Pin<Box<dyn AsyncTimer>>,
    pub(crate) timer_at: Option<Instant>,
    /// The time of this wake-up, read once.
    pub(crate) now: Instant,
    pub(crate) shared: Arc<Shared>,
    pub(crate) commands: Rx<Command>,
    /// Handed to the handles the driver creates (requests, channels).
    pub(crate) commands_tx: Tx<Command>,
    /// Handed to the track handles (their drop removes the track).
    pub(crate) control_tx: Tx<Control>,
    pub(crate) control: Rx<Control>,
    pub(crate) events: Tx<Event>,
    pub(crate) channel_queue: usize,
    pub(crate) track_queue: usize,
    pub(crate) requests: HashMap<RequestId, (u64, Done<Option<Bytes>>)>,
    pub(crate) tokens: HashMap<u64, RequestId>,
    pub(crate) channels: HashMap<ChannelId, Slot>,
    pub(crate) pending_tracks: HashMap<TrackId, PendingTrack>,
    /// Our accepted tracks: where their keyframe requests go.
    pub(crate) local_tracks: HashMap<TrackId, Tx<KeyframeRequest>>,
    pub(crate) remote_tracks: HashMap<TrackId, RemoteSlot>,
    pub(crate) closed: bool,
    pub(crate) started: bool,
    /// The core's largest datagram, for the track handles' size check.
    pub(crate) max_datagram: usize,
}

impl Future for Driver {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if !this.started {
            this.started = true;
            info!("peer task started");
        }
        for _ in 0..TURNS_PER_WAKE {
            this.now = this.runtime.now();
            let mut budget = TURN_INPUTS;
            this.poll_network(cx, &mut budget);
            if this.backlog() < OUTGOING_HIGH {
                this.poll_commands(cx, &mut budget);
            }
            this.poll_control(cx);
            if this.core.poll_timeout().is_some_and(|t| t <= this.now) {
                this.core.handle_timeout(this.now);
            }
            this.collect();
            this.poll_flush(cx);
            if this.closed && this.backlog() == 0 {
                this.finish();
                info!("peer task stopped");
                return Poll::Ready(());
            }
            let timer_due = this.arm_timer(cx);
            // Every source said Pending (so each will wake us) unless the
            // budget ran out or the timer is already due: go round again.
            if budget > 0 && !timer_due {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Driver {
    /// Datagrams waiting for room in a socket.
    fn backlog(&self) -> usize {
        self.out.iter().map(|o| o.queue.len()).sum()
    }

    /// Hands what the network brought to the core, within `budget`.
    fn poll_network(&mut self, cx: &mut Context<'_>, budget: &mut usize) {
        let now = self.now;
        let core = &mut self.core;
        match &mut self.io {
            Io::Own(sockets) => {
                for s in sockets.iter_mut().filter(|s| !s.failed) {
                    while *budget > 0 {
                        let local = s.local;
                        let got = socket::poll_recv_batch(&*s.socket, cx, *budget, |d| {
                            trace!(from = %d.source, len = d.data.len(), "datagram in");
                            core.handle_datagram(now, d.source, local, d.data);
                        });
                        match got {
                            Poll::Pending => break,
                            Poll::Ready(Ok(n)) => *budget = budget.saturating_sub(n.max(1)),
                            Poll::Ready(Err(e)) if socket::transient(&e) => {
                                debug!("receive on {local}: {e}");
                            }
                            Poll::Ready(Err(e)) => {
                                warn!("receive on {local} failed, socket given up: {e}");
                                s.failed = true;
                                break;
                            }
                        }
                    }
                }
            }
            Io::Shared { batches, .. } => {
                while *budget > 0 {
                    match batches.poll_recv(cx) {
                        Poll::Ready(Some(batch)) => {
                            for (source, range) in batch.datagrams() {
                                trace!(from = %source, len = range.len(), "datagram in");
                                core.handle_datagram(now, source, batch.local, &batch.data[range]);
                            }
                            *budget = budget.saturating_sub(batch.len().max(1));
                            batch.consumed();
                        }
                        Poll::Ready(None) | Poll::Pending => break,
                    }
                }
            }
        }
    }

    /// Calls from the handles, within `budget`.
    fn poll_commands(&mut self, cx: &mut Context<'_>, budget: &mut usize) {
        while *budget > 0 {
            match self.commands.poll_recv(cx) {
                Poll::Ready(Some(c)) => {
                    *budget -= 1;
                    self.apply(c);
                }
                Poll::Ready(None) | Poll::Pending => return,
            }
        }
    }

    /// What the handles' `Drop`s sent.
    fn poll_control(&mut self, cx: &mut Context<'_>) {
        while let Poll::Ready(Some(c)) = self.control.poll_recv(cx) {
            let now = self.now;
            match c {
                Control::Cancel(token) => {
                    if let Some(id) = self.tokens.remove(&token) {
                        self.core.cancel_request(now, id);
                    }
                }
                Control::HandleDropped => {
                    debug!("last handle dropped: closing");
                    self.core.close(now);
                }
                Control::RemoveTrack(track) => {
                    debug!(?track, "track handle dropped: removing the track");
                    let _ = self.remove_local(track);
                }
            }
        }
    }

    /// Takes the core's transmits into the sockets' queues and hands out
    /// its events, until neither is left (an event may cause transmits).
    fn collect(&mut self) {
        loop {
            let mut idle = true;
            while let Some(t) = self.core.poll_transmit() {
                idle = false;
                match self.out.iter_mut().find(|o| o.local == t.source) {
                    Some(o) => {
                        trace!(to = %t.destination, len = t.contents.len(), "datagram out");
                        o.queue.push_back(Outgoing {
                            destination: t.destination,
                            contents: t.contents,
                        });
                    }
                    None => debug!("no socket bound to {}", t.source),
                }
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

    /// Sends what the sockets take, in GSO runs.
    fn poll_flush(&mut self, cx: &mut Context<'_>) {
        for o in &mut self.out {
            while !o.queue.is_empty() {
                match socket::poll_send_run(o.sender.as_mut(), &mut o.queue, cx) {
                    Poll::Ready(_) => {}
                    Poll::Pending => break,
                }
            }
        }
    }

    /// Points the timer at the core's next deadline; `true` when it has
    /// already come.
    fn arm_timer(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(at) = self.core.poll_timeout() else {
            return false;
        };
        if self.timer_at != Some(at) {
            self.timer.as_mut().reset(at);
            self.timer_at = Some(at);
        }
        self.timer.as_mut().poll(cx).is_ready()
    }

    fn apply(&mut self, command: Command) {
        let now = self.now;
        match command {
            Command::Offer(done) => {
                let result = self
                    .core
                    .create_offer(now)
                    .map_err(Error::from)
                    .and_then(|offer| {
                        let ufrag =
                            relay_proto::ufrag_of(&offer).map_err(relay_proto::Error::from)?;
                        if !self.io.route_ufrag(&ufrag) {
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
                    self.io.route_remote(&answer);
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
                let result = self.core.reply(now, id, payload).map_err(Error::from);
                if let Err(async_channel::TrySendError::Closed(Err(e))) = done.try_send(result) {
                    // From `try_reply`: nobody waits for the outcome.
                    warn!("reply to {id:?} refused: {e}");
                }
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
                    payload_limit: None,
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
        match self.core.remove_track(self.now, track) {
            Err(relay_proto::Error::UnknownTrack) => Ok(()),
            r => r.map_err(Error::from),
        }
    }

    /// A slot for a channel and the handle that reads it.
    fn new_slot(&mut self, id: ChannelId, label: String, open: bool) -> DataChannel {
        let (tx, rx) = queue::queue(self.channel_queue.max(1));
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
            match self.core.channel_write(self.now, id, w.binary, &w.data) {
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
        let cap = self.events.capacity();
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
                let Some(mut pending) = self.pending_tracks.remove(&id) else {
                    return;
                };
                pending.parts.payload_limit = self
                    .core
                    .track_payload_limit(id)
                    .map(|l| (l, self.max_datagram));
                let (tx, rx) = queue::queue(KEYFRAME_QUEUE);
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
                let (tx, rx) = queue::queue(self.track_queue.max(1));
                let state = Arc::new(RemoteState {
                    active: true.into(),
                    dropped: 0.into(),
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
            CoreEvent::Rtp(packet) => match self.remote_tracks.get(&packet.track) {
                Some(slot) => {
                    if slot.rtp.try_send(packet).is_err() {
                        slot.state.dropped.fetch_add(1, Ordering::Relaxed);
                        self.shared.count_rtp_drop();
                    }
                }
                None => self.shared.count_rtp_drop(),
            },
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
            CoreEvent::PathInterrupted => self.deliver(Event::PathInterrupted),
            CoreEvent::PathRestored => self.deliver(Event::PathRestored),
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
        if let Io::Shared { endpoint, key, .. } = &self.io {
            endpoint.detach(*key);
        }
        self.requests.clear();
        // Queued calls hold their result senders: drop them so callers wake.
        self.commands.close();
        self.control.close();
        self.shared.set_ended();
    }
}

/// A track call's error: an unknown track is a removed one.
fn track_error(e: relay_proto::Error) -> Error {
    match e {
        relay_proto::Error::UnknownTrack => Error::TrackClosed,
        e => e.into(),
    }
}
