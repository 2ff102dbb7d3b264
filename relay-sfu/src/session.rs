//! Sessions: the tracks published in a room and the notices its members get.
//!
//! A track is published either by a browser on this server (WHIP) or by a
//! remote server through the relay. Watchers and outbound relays do not care
//! which: they subscribe to the track's packets and ask its source for
//! keyframes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Instant;

use relay_tokio::{TrackCodec, TrackMeta};
use str0m::media::MediaKind;
use tokio::sync::{Notify, broadcast};

/// Packets a slow subscriber may fall behind before it loses some.
const TRACK_BUFFER: usize = 512;

/// One RTP packet of a track, as its source received it.
#[derive(Debug)]
pub struct Packet {
    /// The source's extended sequence number (starts with rollover count 0).
    pub seq: u64,
    /// RTP timestamp.
    pub timestamp: u32,
    /// RTP marker bit.
    pub marker: bool,
    /// The payload, without the RTP header.
    pub payload: Arc<[u8]>,
    /// When this server received it.
    pub received: Instant,
}

/// Where a track comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A browser publishing on this server.
    Local,
    /// Another server, through a relay peer.
    Relay,
}

/// A published track.
pub struct Track {
    /// Unique on this server.
    pub id: u64,
    /// Stream id (the publisher) and track id.
    pub meta: TrackMeta,
    /// Audio or video.
    pub kind: MediaKind,
    /// The codec its packets carry.
    pub codec: TrackCodec,
    /// Local or relayed.
    pub origin: Origin,
    /// The servers the track crossed, its origin first and this server
    /// last: a track is never relayed to a server on its path.
    pub path: Vec<String>,
    /// Keyframe requests made of the source so far.
    keyframe_requests: AtomicU64,
    /// The source owns the sender: when it drops it, every subscriber's
    /// receiver ends.
    packets: broadcast::WeakSender<Arc<Packet>>,
    keyframe: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for Track {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Track")
            .field("id", &self.id)
            .field("meta", &self.meta)
            .field("codec", &self.codec.mime_type)
            .field("origin", &self.origin)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Track {
    /// A new track and the sender its source writes packets to. Dropping
    /// the sender ends the track for its subscribers; `keyframe` is how a
    /// subscriber asks the source for a keyframe. `path` lists the servers
    /// the track crossed, its origin first and this server last.
    pub fn new(
        meta: TrackMeta,
        codec: TrackCodec,
        origin: Origin,
        path: Vec<String>,
        keyframe: impl Fn() + Send + Sync + 'static,
    ) -> (Arc<Track>, broadcast::Sender<Arc<Packet>>) {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let (sender, _) = broadcast::channel(TRACK_BUFFER);
        let kind = if codec.mime_type.to_ascii_lowercase().starts_with("audio/") {
            MediaKind::Audio
        } else {
            MediaKind::Video
        };
        let track = Track {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            meta,
            kind,
            codec,
            origin,
            path,
            keyframe_requests: AtomicU64::new(0),
            packets: sender.downgrade(),
            keyframe: Box::new(keyframe),
        };
        (Arc::new(track), sender)
    }

    /// The track's packets from now on; `None` if the track has ended.
    pub fn subscribe(&self) -> Option<broadcast::Receiver<Arc<Packet>>> {
        self.packets.upgrade().map(|s| s.subscribe())
    }

    /// Asks the source for a keyframe (the source rate-limits).
    pub fn request_keyframe(&self) {
        self.keyframe_requests.fetch_add(1, Ordering::Relaxed);
        (self.keyframe)()
    }

    /// Keyframe requests made of the source so far.
    pub fn keyframe_requests(&self) -> u64 {
        self.keyframe_requests.load(Ordering::Relaxed)
    }

    /// The server the track was published on.
    pub fn origin_server(&self) -> &str {
        self.path.first().map(String::as_str).unwrap_or_default()
    }
}

/// What a session tells its members.
#[derive(Debug, Clone)]
pub enum Notice {
    /// A track was added or removed: compare with [`Session::tracks`].
    TracksChanged,
    /// A publisher sent a data-channel message.
    Message {
        /// The publisher (its stream id).
        from: String,
        /// The text.
        text: String,
        /// Whether the publisher is on this server.
        origin: Origin,
    },
}

type Registry = Mutex<HashMap<String, Arc<Session>>>;

/// A room: published tracks, and notices for whoever takes part.
#[derive(Debug)]
pub struct Session {
    /// The name from the URL path.
    pub name: String,
    tracks: Mutex<Vec<Arc<Track>>>,
    notices: broadcast::Sender<Notice>,
    /// Publishers and watchers on this server now, and other servers'
    /// relays that feed on it.
    members: AtomicUsize,
    /// Watchers on this server now.
    watchers: AtomicUsize,
    /// Relay peers carrying this session's tracks, by a local id.
    relays: Mutex<HashMap<u64, RelayInfo>>,
    /// Told of every change of members, watchers and tracks.
    changed: Arc<Notify>,
    /// Forgotten: no member and no track was left. Its relays end.
    ended: AtomicBool,
    registry: Weak<Registry>,
}

/// A publisher, watcher or feeding relay taking part in a session; the
/// session is forgotten when the last one leaves and no track is left.
#[derive(Debug)]
pub struct Member {
    session: Arc<Session>,
    watcher: bool,
}

impl Drop for Member {
    fn drop(&mut self) {
        if self.watcher {
            self.session.watchers.fetch_sub(1, Ordering::SeqCst);
        }
        self.session.members.fetch_sub(1, Ordering::SeqCst);
        self.session.changed.notify_one();
        self.session.forget_if_empty();
    }
}

/// A relay peer that carries a session's tracks, as `GET /sessions` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayInfo {
    /// The other server.
    pub remote: String,
    /// `"in"`: tracks come to us over it; `"out"`: we send ours.
    pub direction: &'static str,
    /// How it was set up: `"http"` or `"nats"`.
    pub via: &'static str,
}

/// Listed in [`Session::relays`] until dropped.
#[derive(Debug)]
pub struct RelayGuard {
    session: Arc<Session>,
    id: u64,
}

impl Drop for RelayGuard {
    fn drop(&mut self) {
        lock(&self.session.relays).remove(&self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Session {
    fn new(name: &str, registry: Weak<Registry>, changed: Arc<Notify>) -> Session {
        Session {
            name: name.to_string(),
            tracks: Mutex::new(Vec::new()),
            notices: broadcast::channel(256).0,
            members: AtomicUsize::new(0),
            watchers: AtomicUsize::new(0),
            relays: Mutex::new(HashMap::new()),
            changed,
            ended: AtomicBool::new(false),
            registry,
        }
    }

    /// Takes part until the returned guard is dropped.
    pub fn join(self: &Arc<Self>) -> Member {
        self.members.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_one();
        Member {
            session: self.clone(),
            watcher: false,
        }
    }

    /// Watches until the returned guard is dropped: while a session has a
    /// watcher, a cluster server pulls the session's tracks from the others.
    pub fn join_watcher(self: &Arc<Self>) -> Member {
        self.watchers.fetch_add(1, Ordering::SeqCst);
        let mut member = self.join();
        member.watcher = true;
        member
    }

    /// Publishers, watchers and feeding relays on this server now.
    pub fn members(&self) -> usize {
        self.members.load(Ordering::SeqCst)
    }

    /// Watchers on this server now.
    pub fn watchers(&self) -> usize {
        self.watchers.load(Ordering::SeqCst)
    }

    /// Lists a relay peer of this session until the guard is dropped.
    pub fn add_relay(self: &Arc<Self>, info: RelayInfo) -> RelayGuard {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        lock(&self.relays).insert(id, info);
        RelayGuard {
            session: self.clone(),
            id,
        }
    }

    /// The relay peers carrying this session's tracks now.
    pub fn relays(&self) -> Vec<RelayInfo> {
        let mut all: Vec<_> = lock(&self.relays).values().cloned().collect();
        all.sort_by(|a, b| (&a.remote, a.direction).cmp(&(&b.remote, b.direction)));
        all
    }

    /// Forgotten by the server: its relays end, nobody joins it again (a new
    /// session of the same name is made instead).
    pub fn is_ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    /// Forgets the session when nobody takes part and no track is left
    /// (a relayed track keeps it: its relay peer feeds this session).
    fn forget_if_empty(self: &Arc<Self>) {
        let Some(registry) = self.registry.upgrade() else {
            return;
        };
        let mut sessions = lock(&registry);
        if self.members() > 0 || !lock(&self.tracks).is_empty() {
            return;
        }
        if sessions
            .get(&self.name)
            .is_some_and(|s| Arc::ptr_eq(s, self))
        {
            sessions.remove(&self.name);
            self.ended.store(true, Ordering::SeqCst);
            self.changed.notify_one();
            tracing::info!(session = %self.name, "session forgotten: no publisher, watcher or track left");
            // Wakes the session's relays, which then see it ended.
            let _ = self.notices.send(Notice::TracksChanged);
        }
    }

    /// The session's tracks now.
    pub fn tracks(&self) -> Vec<Arc<Track>> {
        lock(&self.tracks).clone()
    }

    /// Notices from now on. A receiver that lags should treat it as
    /// [`Notice::TracksChanged`] (messages in between are lost).
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }

    /// Publishes a track.
    pub fn add_track(&self, track: Arc<Track>) {
        tracing::info!(session = %self.name, track = ?track, "track added");
        lock(&self.tracks).push(track);
        let _ = self.notices.send(Notice::TracksChanged);
        self.changed.notify_one();
    }

    /// Withdraws a track.
    pub fn remove_track(self: &Arc<Self>, id: u64) {
        lock(&self.tracks).retain(|t| t.id != id);
        tracing::info!(session = %self.name, id, "track removed");
        let _ = self.notices.send(Notice::TracksChanged);
        self.changed.notify_one();
        self.forget_if_empty();
    }

    /// Fans a publisher's message out to the session's members.
    pub fn message(&self, from: &str, text: &str, origin: Origin) {
        let _ = self.notices.send(Notice::Message {
            from: from.to_string(),
            text: text.to_string(),
            origin,
        });
    }
}

/// All sessions of this server, by name.
#[derive(Debug, Default)]
pub struct Sessions {
    sessions: Arc<Registry>,
    changed: Arc<Notify>,
}

impl Sessions {
    /// The session of that name, and whether it was created now.
    pub fn get_or_create(&self, name: &str) -> (Arc<Session>, bool) {
        let mut sessions = lock(&self.sessions);
        if let Some(s) = sessions.get(name) {
            return (s.clone(), false);
        }
        let s = Arc::new(Session::new(
            name,
            Arc::downgrade(&self.sessions),
            self.changed.clone(),
        ));
        sessions.insert(name.to_string(), s.clone());
        (s, true)
    }

    /// Notified when any session's members, watchers or tracks change.
    pub fn changed(&self) -> &Notify {
        &self.changed
    }

    /// Every session now, by name.
    pub fn all(&self) -> Vec<Arc<Session>> {
        let mut all: Vec<_> = lock(&self.sessions).values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }
}
