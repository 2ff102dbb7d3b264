//! The peer handle, its events and callbacks.

use std::future::Future;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::queue::{self, Rx, Tx};
use bytes::Bytes;
use futures_lite::future;
use relay_proto::{
    AnnouncedAddr, Certificate, ChannelOptions, CloseReason, PeerMeta, TrackCodec, TrackId,
    TrackMeta, TrackOptions,
};
use tracing::{Instrument, info_span};

use crate::channel::DataChannel;
use crate::config::Config;
use crate::driver::{Command, Control, Done, Driver, Io, Out, OwnSocket};
use crate::endpoint::{self, EndpointInner};
use crate::error::Error;
use crate::request::{CancelOnDrop, Request};
use crate::runtime::{AsyncUdpSocket, Runtime};
use crate::socket;
use crate::track::{LocalTrack, RemoteTrack};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data, consistent whatever panicked while it was held.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Something that happened on a peer, for the application.
///
/// Replies, data-channel messages and RTP are not events: they go to the
/// call that awaits them and to the channel's or track's handle.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// The signalling channel is open; first event of a peer that connects.
    Ready,
    /// An emit or a request from the remote.
    Request(Request),
    /// The remote opened a data channel.
    DataChannel(DataChannel),
    /// The remote added a track; comes before any of its RTP.
    Track(RemoteTrack),
    /// A remote track had no RTP for
    /// [`relay_proto::Config::track_inactive_after`] (a base peer's removed
    /// track looks like this).
    TrackInactive(TrackId),
    /// RTP flows again on a remote track reported inactive.
    TrackActive(TrackId),
    /// The remote removed a track (a peer of ours says so); its
    /// [`RemoteTrack::read_rtp`] returns `None` after the packets before.
    TrackRemoved(TrackId),
    /// The path to the remote stopped working after Ready
    /// ([`relay_proto::Event::PathInterrupted`]); the peer stays open and
    /// carries on when it comes back, or closes with `Unreachable` after
    /// the grace.
    PathInterrupted,
    /// The path works again ([`relay_proto::Event::PathRestored`]).
    PathRestored,
    /// The peer closed; always the last event.
    Closed(CloseReason),
}

impl Event {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Event::Ready => "ready",
            Event::Request(_) => "request",
            Event::DataChannel(_) => "data channel",
            Event::Track(_) => "track",
            Event::TrackInactive(_) => "track inactive",
            Event::TrackActive(_) => "track active",
            Event::TrackRemoved(_) => "track removed",
            Event::PathInterrupted => "path interrupted",
            Event::PathRestored => "path restored",
            Event::Closed(_) => "closed",
        }
    }
}

/// Counters of a peer: the core's and the adapter's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// The core's counters (requests, messages, bytes, drops by cause).
    pub core: relay_proto::Stats,
    /// Events (inbound requests, remote data channels and tracks, track
    /// changes) dropped because the event queue was full
    /// ([`Config::event_queue`]).
    pub events_dropped: u64,
    /// Inbound requests dropped by the application without
    /// [`Request::reply`] or [`Request::ignore`].
    pub requests_unanswered: u64,
    /// Data-channel messages dropped because the channel's queue was full
    /// or its handle gone ([`Config::channel_queue`]).
    pub channel_messages_dropped: u64,
    /// Datagrams dropped because the peer's task fell behind
    /// ([`Config::datagram_queue`]).
    pub datagrams_dropped: u64,
    /// Received RTP packets dropped because the track's queue was full or
    /// its handle gone ([`Config::track_queue`]).
    pub rtp_packets_dropped: u64,
    /// Keyframe requests for our tracks dropped because nobody took the
    /// earlier ones ([`LocalTrack::keyframe_request`]).
    pub keyframe_requests_dropped: u64,
    /// RTP packets [`LocalTrack::write_rtp`] took that the core then
    /// refused (logged at debug level).
    pub rtp_writes_failed: u64,
    /// RTP packets [`LocalTrack::write_rtp`] refused at once because their
    /// datagram would exceed the peer's largest
    /// ([`relay_proto::Config::max_datagram_size`]); they never reach the
    /// network.
    pub rtp_refused_too_large: u64,
}

#[derive(Debug, Clone)]
enum Lifecycle {
    Connecting,
    Ready,
    Closed(CloseReason),
}

/// State shared by the driver and the handles: lifecycle and counters.
pub(crate) struct Shared {
    state: Mutex<Lifecycle>,
    changed: event_listener::Event,
    /// The peer's task has ended: no call will be answered any more.
    ended: std::sync::atomic::AtomicBool,
    final_stats: Mutex<Option<relay_proto::Stats>>,
    events_dropped: AtomicU64,
    unanswered: AtomicU64,
    channel_dropped: AtomicU64,
    datagrams_dropped: AtomicU64,
    rtp_dropped: AtomicU64,
    keyframes_dropped: AtomicU64,
    rtp_writes_failed: AtomicU64,
    rtp_too_large: AtomicU64,
}

impl Shared {
    fn new() -> Self {
        Shared {
            state: Mutex::new(Lifecycle::Connecting),
            changed: event_listener::Event::new(),
            ended: false.into(),
            final_stats: Mutex::new(None),
            events_dropped: AtomicU64::new(0),
            unanswered: AtomicU64::new(0),
            channel_dropped: AtomicU64::new(0),
            datagrams_dropped: AtomicU64::new(0),
            rtp_dropped: AtomicU64::new(0),
            keyframes_dropped: AtomicU64::new(0),
            rtp_writes_failed: AtomicU64::new(0),
            rtp_too_large: AtomicU64::new(0),
        }
    }

    pub(crate) fn set_ready(&self) {
        *lock(&self.state) = Lifecycle::Ready;
        self.changed.notify(usize::MAX);
    }

    pub(crate) fn set_closed(&self, reason: CloseReason, stats: relay_proto::Stats) {
        *lock(&self.final_stats) = Some(stats);
        *lock(&self.state) = Lifecycle::Closed(reason);
        self.changed.notify(usize::MAX);
    }

    /// The peer's task is done; calls still queued will never be answered.
    pub(crate) fn set_ended(&self) {
        self.ended.store(true, Ordering::Release);
        self.changed.notify(usize::MAX);
    }

    /// Completes once the peer's task has ended.
    async fn task_ended(&self) {
        loop {
            let listener = self.changed.listen();
            if self.ended.load(Ordering::Acquire) {
                return;
            }
            listener.await;
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        matches!(&*lock(&self.state), Lifecycle::Closed(_))
    }

    fn close_reason(&self) -> Option<CloseReason> {
        match &*lock(&self.state) {
            Lifecycle::Closed(r) => Some(r.clone()),
            _ => None,
        }
    }

    /// The error for a call the driver can no longer answer.
    pub(crate) fn closed_error(&self) -> Error {
        Error::Closed(
            self.close_reason()
                .unwrap_or_else(|| CloseReason::Transport("peer task stopped".into())),
        )
    }

    /// Waits until `pick` finds what it wants in the lifecycle.
    async fn wait_for<T>(&self, pick: impl Fn(&Lifecycle) -> Option<T>) -> T {
        loop {
            let listener = self.changed.listen();
            if let Some(t) = pick(&lock(&self.state)) {
                return t;
            }
            listener.await;
        }
    }

    pub(crate) fn count_event_drop(&self) {
        self.events_dropped.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn count_unanswered(&self) {
        self.unanswered.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn count_channel_drop(&self) {
        self.channel_dropped.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn count_datagram_drops(&self, n: u64) {
        self.datagrams_dropped.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn count_rtp_drop(&self) {
        self.rtp_dropped.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn count_keyframe_drop(&self) {
        self.keyframes_dropped.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn count_rtp_too_large(&self) {
        self.rtp_too_large.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn count_rtp_write_failure(&self) {
        self.rtp_writes_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self, core: relay_proto::Stats) -> Stats {
        let core_too_large = core.rtp_refused_too_large;
        Stats {
            core,
            events_dropped: self.events_dropped.load(Ordering::Relaxed),
            requests_unanswered: self.unanswered.load(Ordering::Relaxed),
            channel_messages_dropped: self.channel_dropped.load(Ordering::Relaxed),
            datagrams_dropped: self.datagrams_dropped.load(Ordering::Relaxed),
            rtp_packets_dropped: self.rtp_dropped.load(Ordering::Relaxed),
            keyframe_requests_dropped: self.keyframes_dropped.load(Ordering::Relaxed),
            rtp_writes_failed: self.rtp_writes_failed.load(Ordering::Relaxed),
            rtp_refused_too_large: self.rtp_too_large.load(Ordering::Relaxed) + core_too_large,
        }
    }
}

/// Sends a call to the driver and waits for its result.
pub(crate) async fn call<T>(
    commands: &Tx<Command>,
    shared: &Shared,
    make: impl FnOnce(Done<T>) -> Command,
) -> Result<T, Error> {
    let (tx, rx) = async_channel::bounded(1);
    if commands.send(make(tx)).await.is_err() {
        return Err(shared.closed_error());
    }
    // A call that reached the queue just as the task ended stays there,
    // unanswered: stop waiting when the task is gone. A result sent before
    // that wins (it is polled first).
    let answered = future::or(async { rx.recv().await.ok() }, async {
        shared.task_ended().await;
        None
    });
    match answered.await {
        Some(result) => result,
        None => Err(shared.closed_error()),
    }
}

/// The events of a peer as an async stream ([`futures_core::Stream`]), for
/// those who prefer one to callbacks. Ends after [`Event::Closed`].
pub struct Events {
    rx: Rx<Event>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

impl Events {
    /// The next event; `None` after [`Event::Closed`].
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

impl futures_core::Stream for Events {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

type OnRequest = Arc<dyn Fn(Request) + Send + Sync>;
type OnDataChannel = Arc<dyn Fn(DataChannel) + Send + Sync>;
type OnTrack = Arc<dyn Fn(RemoteTrack) + Send + Sync>;
type OnPath = Arc<dyn Fn(bool) + Send + Sync>;

#[derive(Default)]
struct Callbacks {
    on_ready: Option<Box<dyn FnOnce() + Send>>,
    on_close: Option<Box<dyn FnOnce(CloseReason) + Send>>,
    on_request: Option<OnRequest>,
    on_data_channel: Option<OnDataChannel>,
    on_track: Option<OnTrack>,
    on_path: Option<OnPath>,
    /// The dispatcher saw Ready: a later `on_ready` runs at once.
    ready_seen: bool,
    /// The dispatcher saw Closed: a later `on_close` runs at once.
    closed_seen: Option<CloseReason>,
}

/// What the [`Peer`] clones share; dropping it closes the peer.
struct Handle {
    runtime: Arc<dyn Runtime>,
    meta: PeerMeta,
    local_addrs: Vec<SocketAddr>,
    commands: Tx<Command>,
    control: Tx<Control>,
    shared: Arc<Shared>,
    /// Taken by [`Peer::events`] or by the callback dispatcher.
    events: Mutex<EventsTaker>,
    callbacks: Arc<Mutex<Callbacks>>,
    next_token: AtomicU64,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = self.control.try_send(Control::HandleDropped);
    }
}

/// A relay peer: one connection to one remote relay, driven by its own task
/// on the runtime `R` (`relay_tokio::Peer` and `relay_smol::Peer` name it).
///
/// Cheap to clone. When the last clone is dropped the peer closes (call
/// [`Peer::close`] to close it earlier, and when callbacks hold clones).
pub struct Peer<R> {
    inner: Arc<Handle>,
    _runtime: PhantomData<fn() -> R>,
}

impl<R> Clone for Peer<R> {
    fn clone(&self) -> Self {
        Peer {
            inner: self.inner.clone(),
            _runtime: PhantomData,
        }
    }
}

impl<R> std::fmt::Debug for Peer<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("meta", &self.inner.meta)
            .field("local_addrs", &self.inner.local_addrs)
            .finish_non_exhaustive()
    }
}

/// The certificate of every peer in this process that was given none: one
/// identity per server, generated once (about 1.5 ms) instead of per peer.
fn process_certificate() -> Option<Certificate> {
    static CERT: OnceLock<Option<Certificate>> = OnceLock::new();
    CERT.get_or_init(|| Certificate::generate().ok()).clone()
}

/// Where a new peer's datagrams come from and go to.
enum Place {
    /// Its own sockets.
    Own {
        runtime: Arc<dyn Runtime>,
        sockets: Vec<(SocketAddr, Arc<dyn AsyncUdpSocket>)>,
        announced: Vec<AnnouncedAddr>,
    },
    /// A shared endpoint's.
    Shared(Arc<EndpointInner>),
}

/// Creates a peer's core, answers `offer` when given, and starts the
/// driver.
fn start<R>(
    place: Place,
    meta: PeerMeta,
    config: Config,
    offer: Option<&[u8]>,
) -> Result<(Peer<R>, Option<Vec<u8>>), Error> {
    let span = info_span!("relay_peer", peer = %meta.peer_id, session = %meta.session_id);
    let (runtime, sockets, announced, endpoint_cert) = match &place {
        Place::Own {
            runtime,
            sockets,
            announced,
        } => (runtime.clone(), sockets.clone(), announced.clone(), None),
        Place::Shared(endpoint) => (
            endpoint.runtime.clone(),
            endpoint.sockets().to_vec(),
            endpoint.announced().to_vec(),
            endpoint.cert(),
        ),
    };
    let local_addrs: Vec<SocketAddr> = sockets.iter().map(|(a, _)| *a).collect();
    let mut core_config = config.core;
    core_config.local_addrs = local_addrs.clone();
    core_config.announced_addrs.extend(announced);
    if core_config.seed == 0 {
        core_config.seed = fastrand::u64(1..);
    }
    if core_config.dtls_cert.is_none() {
        core_config.dtls_cert = endpoint_cert.or_else(process_certificate);
    }
    let now = runtime.now();
    let max_datagram = core_config.max_datagram_size;
    let mut core = relay_proto::Peer::new(meta.clone(), core_config, now)?;
    let shared = Arc::new(Shared::new());
    let io = match place {
        Place::Own { .. } => Io::Own(
            sockets
                .iter()
                .map(|(local, socket)| OwnSocket {
                    local: *local,
                    socket: socket.clone(),
                    failed: false,
                })
                .collect(),
        ),
        Place::Shared(endpoint) => {
            let (key, batches) = endpoint.attach(shared.clone(), config.datagram_queue);
            Io::Shared {
                endpoint,
                key,
                batches,
            }
        }
    };
    let answer = match offer {
        None => None,
        Some(offer) => {
            let answered = span
                .in_scope(|| core.accept_offer(now, offer))
                .and_then(|answer| {
                    if let Io::Shared { endpoint, key, .. } = &io {
                        let ufrag = relay_proto::ufrag_of(&answer)?;
                        if !endpoint.route_ufrag(*key, &ufrag) {
                            return Err(relay_proto::Error::Config(
                                "ICE ufrag already in use on this endpoint".into(),
                            ));
                        }
                        endpoint.route_remote(*key, offer);
                    }
                    Ok(answer)
                });
            match answered {
                Ok(answer) => Some(answer),
                Err(e) => {
                    if let Io::Shared { endpoint, key, .. } = &io {
                        endpoint.detach(*key);
                    }
                    return Err(e.into());
                }
            }
        }
    };
    let (commands_tx, commands) = queue::queue(config.command_queue.max(1));
    // Each item stands for a pending request or a handle: bounded by them.
    let (control_tx, control) = queue::queue(usize::MAX);
    let (events_tx, events) = queue::queue(config.event_queue.max(2));
    let out = sockets
        .iter()
        .map(|(local, socket)| Out {
            local: *local,
            sender: socket.create_sender(),
            queue: Default::default(),
        })
        .collect();
    let driver = Driver {
        runtime: runtime.clone(),
        timer: runtime.new_timer(now),
        timer_at: None,
        now,
        core,
        io,
        out,
        shared: shared.clone(),
        commands,
        commands_tx: commands_tx.clone(),
        control_tx: control_tx.clone(),
        control,
        events: events_tx,
        channel_queue: config.channel_queue,
        track_queue: config.track_queue,
        requests: Default::default(),
        tokens: Default::default(),
        channels: Default::default(),
        pending_tracks: Default::default(),
        local_tracks: Default::default(),
        remote_tracks: Default::default(),
        closed: false,
        started: false,
        max_datagram,
    };
    runtime.spawn(Box::pin(driver.instrument(span)));
    let peer = Peer {
        inner: Arc::new(Handle {
            runtime,
            meta,
            local_addrs,
            commands: commands_tx,
            control: control_tx,
            shared,
            events: Mutex::new(EventsTaker::Waiting(events)),
            callbacks: Default::default(),
            next_token: AtomicU64::new(0),
        }),
        _runtime: PhantomData,
    };
    Ok((peer, answer))
}

/// A peer on an endpoint's shared sockets.
pub(crate) fn start_shared<R>(
    endpoint: Arc<EndpointInner>,
    meta: PeerMeta,
    config: Config,
    offer: Option<&[u8]>,
) -> Result<(Peer<R>, Option<Vec<u8>>), Error> {
    start(Place::Shared(endpoint), meta, config, offer)
}

impl<R: Runtime + Default> Peer<R> {
    /// A new peer on sockets of its own, bound as `config.endpoint` says,
    /// which its task reads itself; then [`Peer::offer`]. For many peers on
    /// shared sockets use [`Endpoint::peer`](crate::Endpoint::peer).
    pub async fn new(meta: PeerMeta, config: Config) -> Result<Peer<R>, Error> {
        let place = Self::own_sockets(&config).await?;
        start(place, meta, config, None).map(|(p, _)| p)
    }

    /// A new peer on sockets of its own that answers `offer` (the remote's
    /// meta travels beside it): hand the returned answer back to the
    /// offerer, then wait for [`Peer::ready`] if you need to.
    pub async fn answer(
        meta: PeerMeta,
        config: Config,
        offer: &[u8],
    ) -> Result<(Peer<R>, Vec<u8>), Error> {
        let place = Self::own_sockets(&config).await?;
        let (peer, answer) = start(place, meta, config, Some(offer))?;
        Ok((peer, answer.unwrap_or_default()))
    }

    async fn own_sockets(config: &Config) -> Result<Place, Error> {
        let runtime: Arc<dyn Runtime> = Arc::new(R::default());
        let sockets = socket::bind(&runtime, &config.endpoint)?;
        let announced = endpoint::announced(&runtime, &sockets, &config.endpoint).await;
        Ok(Place::Own {
            runtime,
            sockets,
            announced,
        })
    }
}

impl<R> Peer<R> {
    /// Connects as the offering side: makes the offer, hands it with this
    /// peer's meta to `signal` (the application's way to reach the remote,
    /// which answers with [`Peer::answer`]), applies the answer, and waits
    /// until the peer is ready.
    ///
    /// An error from `signal` closes the peer (its sockets are freed when
    /// they are its own) and is returned as [`Error::Signal`]. A `signal`
    /// that never returns ends with the core's connect timeout
    /// ([`relay_proto::Config::connect_timeout`], 15 s by default):
    /// [`Error::Closed`] with [`CloseReason::ConnectTimeout`].
    pub async fn offer<F, Fut, E>(&self, signal: F) -> Result<(), Error>
    where
        F: FnOnce(PeerMeta, Vec<u8>) -> Fut,
        Fut: Future<Output = Result<Vec<u8>, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let offer = self.call(Command::Offer).await?;
        let signalled = future::or(
            async { Some(signal(self.inner.meta.clone(), offer).await) },
            async {
                self.closed().await;
                None
            },
        )
        .await;
        let answer = match signalled {
            Some(Ok(answer)) => answer,
            Some(Err(e)) => {
                self.close().await;
                return Err(Error::Signal(e.into()));
            }
            None => return Err(self.inner.shared.closed_error()),
        };
        if let Err(e) = self.call(|done| Command::Answer(answer, done)).await {
            self.close().await;
            return Err(e);
        }
        self.ready().await
    }

    /// Waits until the peer is ready (at once if it is); fails with
    /// [`Error::Closed`] if it closes first.
    pub async fn ready(&self) -> Result<(), Error> {
        self.inner
            .shared
            .wait_for(|s| match s {
                Lifecycle::Connecting => None,
                Lifecycle::Ready => Some(Ok(())),
                Lifecycle::Closed(r) => Some(Err(Error::Closed(r.clone()))),
            })
            .await
    }

    /// Waits until the peer is closed, and says why.
    pub async fn closed(&self) -> CloseReason {
        self.inner
            .shared
            .wait_for(|s| match s {
                Lifecycle::Closed(r) => Some(r.clone()),
                _ => None,
            })
            .await
    }

    /// `true` once the peer is closed.
    pub fn is_closed(&self) -> bool {
        self.inner.shared.close_reason().is_some()
    }

    /// The metadata given at creation.
    pub fn meta(&self) -> &PeerMeta {
        &self.inner.meta
    }

    /// The local addresses the peer receives on (its host candidates).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.inner.local_addrs
    }

    /// Sends a fire-and-forget message.
    pub async fn emit(&self, event: &str, payload: Option<Bytes>) -> Result<(), Error> {
        let event = event.to_string();
        self.call(|done| Command::Emit {
            event,
            payload,
            done,
        })
        .await
    }

    /// Sends a request and waits for the reply, at most
    /// [`relay_proto::Config::request_timeout`] (5 s by default; the core
    /// enforces it). Dropping the future withdraws the request.
    pub async fn request(
        &self,
        event: &str,
        payload: Option<Bytes>,
    ) -> Result<Option<Bytes>, Error> {
        self.send_request(event, payload, None).await
    }

    /// [`Peer::request`] with its own timeout.
    pub async fn request_with_timeout(
        &self,
        event: &str,
        payload: Option<Bytes>,
        timeout: Duration,
    ) -> Result<Option<Bytes>, Error> {
        self.send_request(event, payload, Some(timeout)).await
    }

    async fn send_request(
        &self,
        event: &str,
        payload: Option<Bytes>,
        timeout: Option<Duration>,
    ) -> Result<Option<Bytes>, Error> {
        let token = self.inner.next_token.fetch_add(1, Ordering::Relaxed);
        let mut guard = CancelOnDrop {
            control: self.inner.control.clone(),
            token,
            armed: true,
        };
        let event = event.to_string();
        let result = self
            .call(|done| Command::Request {
                token,
                event,
                payload,
                timeout,
                done,
            })
            .await;
        guard.armed = false;
        result
    }

    /// Opens a data channel; its messages can be sent at once (they wait for
    /// the channel to open).
    pub async fn create_data_channel(
        &self,
        label: &str,
        options: ChannelOptions,
    ) -> Result<DataChannel, Error> {
        let label = label.to_string();
        self.call(|done| Command::CreateChannel {
            label,
            options,
            done,
        })
        .await
    }

    /// Adds a track to relay and waits until the remote accepts it; then
    /// write its RTP with [`LocalTrack::write_rtp`].
    ///
    /// Fails with [`Error::TrackFailed`] when the remote does not accept it
    /// within [`relay_proto::Config::track_request_timeout`] (2 s by
    /// default: the remote is gone, or refused the track), with
    /// [`Error::Closed`] when the peer closes first, and at once when the
    /// core refuses it (a payload type outside 0..=63 and 96..=127, a MIME
    /// type neither audio nor video, no offer made yet). Works before the
    /// peer is ready (the add waits for the signalling channel). Dropping
    /// the future does not stop the add; the track is removed once accepted.
    pub async fn add_track(&self, meta: TrackMeta, codec: TrackCodec) -> Result<LocalTrack, Error> {
        self.add_track_with(meta, codec, TrackOptions::default())
            .await
    }

    /// [`Peer::add_track`] with simulcast layers and the origin's header
    /// extensions, which need the remote to announce them (else
    /// [`relay_proto::Error::ExtensionNotNegotiated`]).
    pub async fn add_track_with(
        &self,
        meta: TrackMeta,
        codec: TrackCodec,
        options: TrackOptions,
    ) -> Result<LocalTrack, Error> {
        self.call(|done| Command::AddTrack {
            meta,
            codec,
            options,
            done,
        })
        .await
    }

    /// Closes the peer (the remote is told at once) and waits until it is
    /// closed. Idempotent.
    pub async fn close(&self) {
        let _ = self.call(Command::Close).await;
        self.closed().await;
    }

    /// Counters. After the peer closed, the core's counters as they were then.
    pub async fn stats(&self) -> Stats {
        match self.call(Command::Stats).await {
            Ok(stats) => stats,
            Err(_) => {
                let core = lock(&self.inner.shared.final_stats)
                    .clone()
                    .unwrap_or_default();
                self.inner.shared.stats(core)
            }
        }
    }

    async fn call<T>(&self, make: impl FnOnce(Done<T>) -> Command) -> Result<T, Error> {
        call(&self.inner.commands, &self.inner.shared, make).await
    }

    /// The events as a stream, instead of callbacks. `None` when the events
    /// were already taken, by an earlier call or by setting a callback.
    pub fn events(&self) -> Option<Events> {
        let mut events = lock(&self.inner.events);
        match std::mem::replace(&mut *events, EventsTaker::Stream) {
            EventsTaker::Waiting(rx) => Some(Events { rx }),
            other => {
                *events = other;
                None
            }
        }
    }

    /// Called once when the peer is ready (at once if it already is).
    pub fn on_ready(&self, f: impl FnOnce() + Send + 'static) {
        let mut f = Some(f);
        let seen = self.set_callback(|c| {
            if !c.ready_seen {
                c.on_ready = f.take().map(|f| Box::new(f) as Box<dyn FnOnce() + Send>);
            }
            c.ready_seen
        });
        if let (true, Some(f)) = (seen, f) {
            f();
        }
    }

    /// Called once when the peer closes (at once if it already did).
    pub fn on_close(&self, f: impl FnOnce(CloseReason) + Send + 'static) {
        let mut f = Some(f);
        let seen = self.set_callback(|c| {
            if c.closed_seen.is_none() {
                c.on_close = f
                    .take()
                    .map(|f| Box::new(f) as Box<dyn FnOnce(CloseReason) + Send>);
            }
            c.closed_seen.clone()
        });
        if let (Some(reason), Some(f)) = (seen, f) {
            f(reason);
        }
    }

    /// Called for each inbound request or emit. Once any callback is set,
    /// inbound requests that arrive while this one is not set are dropped
    /// (and counted as unanswered): set it first.
    pub fn on_request(&self, f: impl Fn(Request) + Send + Sync + 'static) {
        self.set_callback(|c| c.on_request = Some(Arc::new(f)));
    }

    /// Called for each data channel the remote opens.
    pub fn on_data_channel(&self, f: impl Fn(DataChannel) + Send + Sync + 'static) {
        self.set_callback(|c| c.on_data_channel = Some(Arc::new(f)));
    }

    /// Called for each track the remote adds, before any of its RTP is
    /// read. Once any callback is set, remote tracks that arrive while this
    /// one is not set are dropped (their RTP with them): set it first.
    /// Inactivity shows on [`RemoteTrack::is_active`], removal as
    /// [`RemoteTrack::read_rtp`] returning `None`.
    pub fn on_track(&self, f: impl Fn(RemoteTrack) + Send + Sync + 'static) {
        self.set_callback(|c| c.on_track = Some(Arc::new(f)));
    }

    /// Called when the path to the remote is interrupted (`false`) and when
    /// it is restored (`true`): [`Event::PathInterrupted`] and
    /// [`Event::PathRestored`]. The peer stays open in between; it closes
    /// with `Unreachable` if the path stays down for the grace.
    pub fn on_path(&self, f: impl Fn(bool) + Send + Sync + 'static) {
        self.set_callback(|c| c.on_path = Some(Arc::new(f)));
    }

    /// Applies `set` to the callbacks and, the first time, starts the task
    /// that runs them (unless the events were taken as a stream).
    fn set_callback<T>(&self, set: impl FnOnce(&mut Callbacks) -> T) -> T {
        let result = set(&mut lock(&self.inner.callbacks));
        let mut events = lock(&self.inner.events);
        match std::mem::replace(&mut *events, EventsTaker::Dispatcher) {
            EventsTaker::Waiting(rx) => self
                .inner
                .runtime
                .spawn(Box::pin(dispatch(rx, self.inner.callbacks.clone()))),
            EventsTaker::Stream => {
                *events = EventsTaker::Stream;
                tracing::warn!(
                    "callback set after the events were taken as a stream: never called"
                );
            }
            EventsTaker::Dispatcher => {}
        }
        result
    }
}

/// Who reads a peer's events.
enum EventsTaker {
    /// Nobody yet: they wait in the queue.
    Waiting(Rx<Event>),
    /// [`Peer::events`].
    Stream,
    /// The callback task.
    Dispatcher,
}

/// Runs the callbacks, outside the driver, one event at a time. A slow
/// callback delays later callbacks, never packets or timers.
async fn dispatch(rx: Rx<Event>, callbacks: Arc<Mutex<Callbacks>>) {
    while let Some(event) = rx.recv().await {
        match event {
            Event::Ready => {
                let f = {
                    let mut c = lock(&callbacks);
                    c.ready_seen = true;
                    c.on_ready.take()
                };
                if let Some(f) = f {
                    f();
                }
            }
            Event::Request(request) => {
                let f = lock(&callbacks).on_request.clone();
                if let Some(f) = f {
                    f(request);
                }
            }
            Event::DataChannel(channel) => {
                let f = lock(&callbacks).on_data_channel.clone();
                if let Some(f) = f {
                    f(channel);
                }
            }
            Event::Track(track) => {
                let f = lock(&callbacks).on_track.clone();
                if let Some(f) = f {
                    f(track);
                }
            }
            Event::TrackInactive(_) | Event::TrackActive(_) | Event::TrackRemoved(_) => {}
            Event::PathInterrupted | Event::PathRestored => {
                let f = lock(&callbacks).on_path.clone();
                if let Some(f) = f {
                    f(matches!(event, Event::PathRestored));
                }
            }
            Event::Closed(reason) => {
                let f = {
                    let mut c = lock(&callbacks);
                    c.closed_seen = Some(reason.clone());
                    // Dropping the callbacks breaks cycles through peer clones.
                    c.on_ready = None;
                    c.on_request = None;
                    c.on_data_channel = None;
                    c.on_track = None;
                    c.on_path = None;
                    c.on_close.take()
                };
                if let Some(f) = f {
                    f(reason);
                }
                return;
            }
        }
    }
}
