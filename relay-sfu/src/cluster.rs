//! Cluster mode (`--nats URL`): servers find each other over NATS, and a
//! server pulls a session's tracks from the others only while it has a
//! watcher for the session, or while another server pulls them through it.
//!
//! The subjects and message forms are in `docs/cluster.md`. In short:
//!
//! - Every server publishes on [`ANNOUNCE_SUBJECT`], each second and at
//!   every change, the tracks it can serve per session, each with its
//!   path (origin server first, the announcing server last). Tracks it
//!   can reach through others count too, which is how a track travels
//!   A → B → C when C reaches only B. A server not heard for
//!   [`EXPIRE_AFTER`] is gone, and so are the routes through it.
//! - A server that wants tracks makes a relay offer to the server it picked
//!   for them, as a NATS request to [`relay_subject`]`(that server)`; the
//!   reply is the answer. That is the relay's signal function, over NATS.
//! - Over the relay peer the puller says which tracks it wants
//!   ([`WANT_EVENT`]), and the feeding server adds exactly those, each
//!   preceded by its path ([`relay::TRACK_EVENT`]).
//!
//! A track is never announced to, pulled by or relayed to a server already
//! on its path, so no loop can form. Keyframe requests go back hop by hop,
//! and each hop's relay peer merges them (one per 500 ms).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use futures_lite::StreamExt;
use relay_tokio::{Peer, PeerMeta};
use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinHandle;

use crate::relay::{self, MESSAGE_EVENT};
use crate::session::{Notice, Origin, RelayInfo, Session};
use crate::{Server, valid_session_name};

/// Where every server announces itself and its tracks.
pub const ANNOUNCE_SUBJECT: &str = "relay-sfu.announce";

/// How often a server announces itself when nothing changes.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);

/// A server not heard for this long is gone, with every route through it.
pub const EXPIRE_AFTER: Duration = Duration::from_secs(3);

/// How long a failed pull waits before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// How long a relay offer may wait for its answer over NATS.
const OFFER_TIMEOUT: Duration = Duration::from_secs(10);

/// Relay event from the puller: the tracks it wants now,
/// `{"tracks":[["stream","track"],...]}`.
pub const WANT_EVENT: &str = "sfu.want";

/// Header of a relay offer: the offering server's name.
pub const FROM_HEADER: &str = "Relay-From";
/// Header of a relay offer: the session.
pub const SESSION_HEADER: &str = "Relay-Session";
/// Header of a refused offer's reply: why (the body is then empty).
pub const ERROR_HEADER: &str = "Relay-Error";

/// Most tracks one announcement or want may list; the rest are ignored.
const MAX_TRACKS: usize = 1024;

/// Most servers fed at once (each feed is a relay peer with its own
/// socket); offers beyond it are refused.
const MAX_FEEDS: usize = 256;

/// The subject a server takes relay offers on.
pub fn relay_subject(server: &str) -> String {
    format!("relay-sfu.relay.{server}")
}

/// A track's stream id and track id: unique in a cluster, because a
/// publisher's stream id starts with its server's name.
type Key = (String, String);

/// What one server last said.
struct Heard {
    at: Instant,
    /// Session -> the tracks it serves there, with their paths.
    sessions: HashMap<String, Vec<(Key, Vec<String>)>>,
}

/// A pull: a relay peer this server offered to `via`, over which it
/// receives a session's tracks.
struct Pull {
    session: Arc<Session>,
    /// Dropping it ends the pull (the peer closes).
    want: watch::Sender<BTreeSet<Key>>,
    task: JoinHandle<bool>,
}

/// Another server pulling a session's tracks from us.
struct Feed {
    from: String,
    session: String,
    want: watch::Receiver<BTreeSet<Key>>,
    /// Closes the feed's peer (the server is gone from NATS).
    stop: Arc<Notify>,
}

/// This server's part in a NATS cluster.
pub struct Cluster {
    client: async_nats::Client,
    name: String,
    directory: Mutex<Directory>,
    feeds: Mutex<HashMap<u64, Feed>>,
    /// A feed's want changed.
    changed: Notify,
}

/// What this server knows of the others: their last announcements, and
/// the routes to tracks they give. No I/O and no clock (`now` is given).
#[derive(Default)]
struct Directory {
    name: String,
    /// `--peers`: the only servers we pull from and feed (none: all).
    allow: Option<HashSet<String>>,
    heard: HashMap<String, Heard>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn strings(v: &Value) -> Vec<String> {
    (v.as_array().into_iter().flatten())
        .filter_map(|s| s.as_str().map(str::to_string))
        .take(64)
        .collect()
}

fn key(v: &Value) -> Option<Key> {
    let pair = v.as_array()?;
    Some((
        pair.first()?.as_str()?.to_string(),
        pair.get(1)?.as_str()?.to_string(),
    ))
}

/// One candidate route to a track: through `via`, along `path` (which
/// ends with `via`).
#[derive(Debug, Clone)]
struct Route {
    via: String,
    path: Vec<String>,
}

impl Directory {
    fn new(name: &str, allow: Option<HashSet<String>>) -> Directory {
        Directory {
            name: name.to_string(),
            allow,
            heard: HashMap::new(),
        }
    }

    fn allowed(&self, server: &str) -> bool {
        server != self.name && self.allow.as_ref().is_none_or(|a| a.contains(server))
    }

    fn servers(&self, now: Instant) -> Vec<(String, Duration, usize)> {
        let mut all: Vec<_> = (self.heard.iter())
            .map(|(name, h)| {
                let tracks = h.sessions.values().map(Vec::len).sum();
                (name.clone(), now.saturating_duration_since(h.at), tracks)
            })
            .collect();
        all.sort();
        all
    }

    /// Every route to every track, per session, best first.
    fn routes(&self) -> HashMap<String, HashMap<Key, Vec<Route>>> {
        let mut routes: HashMap<String, HashMap<Key, Vec<Route>>> = HashMap::new();
        for (server, heard) in &self.heard {
            if !self.allowed(server) {
                continue;
            }
            for (session, tracks) in &heard.sessions {
                for (key, path) in tracks {
                    // Through us already, or not ending where it was heard.
                    if path.contains(&self.name) || path.last() != Some(server) {
                        continue;
                    }
                    (routes.entry(session.clone()).or_default())
                        .entry(key.clone())
                        .or_default()
                        .push(Route {
                            via: server.clone(),
                            path: path.clone(),
                        });
                }
            }
        }
        for tracks in routes.values_mut() {
            for r in tracks.values_mut() {
                r.sort_by(|a, b| (a.path.len(), &a.via).cmp(&(b.path.len(), &b.via)));
            }
        }
        routes
    }

    /// Takes an announcement heard at `now`.
    fn record(&mut self, payload: &[u8], now: Instant) {
        let Ok(v) = serde_json::from_slice::<Value>(payload) else {
            tracing::debug!("unreadable announcement dropped");
            return;
        };
        let Some(server) = v["server"].as_str() else {
            return;
        };
        if server == self.name {
            return;
        }
        if v["leaving"].as_bool() == Some(true) {
            if self.heard.remove(server).is_some() {
                tracing::info!(%server, "cluster server left");
            }
            return;
        }
        let mut sessions = HashMap::new();
        let mut count = 0;
        for (name, tracks) in (v["sessions"].as_object().into_iter()).flatten() {
            let mut list = Vec::new();
            for t in tracks.as_array().into_iter().flatten() {
                count += 1;
                if count > MAX_TRACKS {
                    break;
                }
                let (Some(stream), Some(track)) = (t["stream"].as_str(), t["track"].as_str())
                else {
                    continue;
                };
                list.push(((stream.to_string(), track.to_string()), strings(&t["path"])));
            }
            sessions.insert(name.clone(), list);
        }
        let heard = Heard { at: now, sessions };
        if self.heard.insert(server.to_string(), heard).is_none() {
            tracing::info!(%server, "cluster server heard");
        }
    }

    /// Forgets servers not heard for [`EXPIRE_AFTER`]; true if any was.
    fn expire(&mut self, now: Instant) -> bool {
        let before = self.heard.len();
        self.heard.retain(|server, h| {
            let keep = now.saturating_duration_since(h.at) < EXPIRE_AFTER;
            if !keep {
                tracing::warn!(%server, "cluster server not heard for {EXPIRE_AFTER:?}: gone");
            }
            keep
        });
        self.heard.len() != before
    }
}

impl Cluster {
    /// Connects to the NATS server at `url`.
    pub async fn connect(
        url: &str,
        name: &str,
        allow: Option<HashSet<String>>,
    ) -> Result<Arc<Cluster>, String> {
        let client = async_nats::ConnectOptions::new()
            .name(format!("relay-sfu {name}"))
            .retry_on_initial_connect()
            .connect(url)
            .await
            .map_err(|e| format!("cannot connect to NATS at {url}: {e}"))?;
        Ok(Arc::new(Cluster {
            client,
            name: name.to_string(),
            directory: Mutex::new(Directory::new(name, allow)),
            feeds: Mutex::default(),
            changed: Notify::new(),
        }))
    }

    fn allowed(&self, server: &str) -> bool {
        lock(&self.directory).allowed(server)
    }

    /// Servers heard now, how long ago, and how many tracks each serves,
    /// for `GET /cluster`.
    pub fn servers(&self) -> Vec<(String, Duration, usize)> {
        lock(&self.directory).servers(Instant::now())
    }

    /// What we announce: every track we have and every track we can reach,
    /// per session.
    fn announcement(&self, server: &Server) -> Value {
        let mut sessions: HashMap<String, HashMap<Key, Vec<String>>> = HashMap::new();
        for session in server.sessions() {
            let tracks = sessions.entry(session.name.clone()).or_default();
            for t in session.tracks() {
                let key = (t.meta.stream_id.clone(), t.meta.track_id.clone());
                tracks.insert(key, t.path.clone());
            }
        }
        let routes = lock(&self.directory).routes();
        for (session, routes) in routes {
            let tracks = sessions.entry(session).or_default();
            for (key, routes) in routes {
                if let Some(best) = routes.first() {
                    let mut path = best.path.clone();
                    path.push(self.name.clone());
                    tracks.entry(key).or_insert(path);
                }
            }
        }
        let sessions: serde_json::Map<String, Value> = sessions
            .into_iter()
            .filter(|(_, tracks)| !tracks.is_empty())
            .map(|(name, tracks)| {
                let mut list: Vec<_> = tracks.into_iter().collect();
                list.sort();
                let list: Vec<Value> = list
                    .into_iter()
                    .map(|((stream, track), path)| {
                        json!({"stream": stream, "track": track, "path": path})
                    })
                    .collect();
                (name, Value::Array(list))
            })
            .collect();
        json!({"server": self.name, "sessions": sessions})
    }

    /// Says this server is leaving, so the others forget it at once.
    pub async fn leave(&self) {
        let bye = json!({"server": self.name, "leaving": true}).to_string();
        let _ = self.client.publish(ANNOUNCE_SUBJECT, bye.into()).await;
        let _ = self.client.flush().await;
    }
}

/// Runs this server's part in the cluster until the process ends.
pub async fn run(server: Arc<Server>, cluster: Arc<Cluster>) {
    let client = cluster.client.clone();
    let (Ok(mut announcements), Ok(mut offers)) = (
        client.subscribe(ANNOUNCE_SUBJECT).await,
        client.subscribe(relay_subject(&cluster.name)).await,
    ) else {
        tracing::error!("cannot subscribe on NATS: the cluster is off");
        return;
    };
    let (s, c) = (server.clone(), cluster.clone());
    tokio::spawn(async move {
        while let Some(msg) = offers.next().await {
            tokio::spawn(take_offer(s.clone(), c.clone(), msg));
        }
    });
    let mut pulls: HashMap<(String, String), Pull> = HashMap::new();
    let mut retry_at: HashMap<(String, String), Instant> = HashMap::new();
    let mut last_sent: Option<(Instant, Value)> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut was_connected = false;
    let mut ever_connected = false;
    loop {
        tokio::select! {
            msg = announcements.next() => match msg {
                Some(m) => lock(&cluster.directory).record(&m.payload, Instant::now()),
                None => {
                    tracing::error!("NATS subscription ended: the cluster is off");
                    return;
                }
            },
            _ = server.sessions.changed().notified() => {}
            _ = cluster.changed.notified() => {}
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        // While NATS is unreachable nothing is heard: keep what runs.
        let connected = client.connection_state() == async_nats::connection::State::Connected;
        if !connected {
            if was_connected {
                tracing::warn!(
                    "NATS unreachable: relays keep running, nothing changes until it is back"
                );
            }
            was_connected = false;
            continue;
        }
        if !was_connected {
            was_connected = true;
            if !ever_connected {
                ever_connected = true;
                tracing::info!("NATS connected");
            }
            for h in lock(&cluster.directory).heard.values_mut() {
                h.at = now;
            }
        }
        let routes = {
            let mut directory = lock(&cluster.directory);
            directory.expire(now);
            directory.routes()
        };
        reconcile(&server, &cluster, &routes, &mut pulls, &mut retry_at, now);
        // Feeds to servers gone from NATS end now, not at the relay's
        // liveness timeout.
        {
            let directory = lock(&cluster.directory);
            for feed in lock(&cluster.feeds).values() {
                if !directory.heard.contains_key(&feed.from) {
                    feed.stop.notify_one();
                }
            }
        }
        let announcement = cluster.announcement(&server);
        let due = last_sent.as_ref().is_none_or(|(at, sent)| {
            now.saturating_duration_since(*at) >= ANNOUNCE_EVERY || *sent != announcement
        });
        if due {
            let body = Bytes::from(announcement.to_string());
            if let Err(e) = client.publish(ANNOUNCE_SUBJECT, body).await {
                tracing::warn!("announcement not sent: {e}");
            }
            last_sent = Some((now, announcement));
        }
    }
}

/// Starts, updates and ends pulls so that every wanted track comes through
/// exactly one of them.
fn reconcile(
    server: &Arc<Server>,
    cluster: &Arc<Cluster>,
    routes: &HashMap<String, HashMap<Key, Vec<Route>>>,
    pulls: &mut HashMap<(String, String), Pull>,
    retry_at: &mut HashMap<(String, String), Instant>,
    now: Instant,
) {
    // What each session wants from the cluster: everything, for a session
    // with a watcher here; what the feeding servers want, otherwise.
    let mut wanted: HashMap<String, BTreeSet<Key>> = HashMap::new();
    for session in server.sessions() {
        if session.watchers() > 0
            && let Some(tracks) = routes.get(&session.name)
        {
            wanted
                .entry(session.name.clone())
                .or_default()
                .extend(tracks.keys().cloned());
        }
    }
    for feed in lock(&cluster.feeds).values() {
        let want = feed.want.borrow();
        wanted
            .entry(feed.session.clone())
            .or_default()
            .extend(want.iter().cloned());
    }
    let desired = assign(wanted, routes, |id, key| {
        pulls.get(id).is_some_and(|p| p.want.borrow().contains(key))
    });
    // End what is no longer wanted, or whose task ended.
    pulls.retain(|id, pull| {
        let finished = pull.task.is_finished();
        if finished {
            retry_at.insert(id.clone(), now + RETRY_AFTER);
        }
        let keep = desired.contains_key(id) && !finished && !pull.session.is_ended();
        if !keep && !finished {
            tracing::info!(session = %id.0, via = %id.1, "pull ends: nothing wanted through it");
        }
        keep
    });
    retry_at.retain(|_, at| *at > now);
    for (id, want) in desired {
        if let Some(pull) = pulls.get(&id) {
            pull.want.send_if_modified(|w| {
                let changed = *w != want;
                *w = want.clone();
                changed
            });
            continue;
        }
        if retry_at.contains_key(&id) {
            continue;
        }
        let session = server.session(&id.0);
        let (tx, rx) = watch::channel(want);
        let task = tokio::spawn(pull(
            server.clone(),
            cluster.clone(),
            session.clone(),
            id.1.clone(),
            rx,
        ));
        pulls.insert(
            id,
            Pull {
                session,
                want: tx,
                task,
            },
        );
    }
}

/// Which pull, (session, server), each wanted track comes through: the
/// pull that `carries` it now while that still reaches it, else the best
/// route. Tracks no route reaches (ours, or gone) are left out.
fn assign(
    wanted: HashMap<String, BTreeSet<Key>>,
    routes: &HashMap<String, HashMap<Key, Vec<Route>>>,
    carries: impl Fn(&(String, String), &Key) -> bool,
) -> HashMap<(String, String), BTreeSet<Key>> {
    let mut desired: HashMap<(String, String), BTreeSet<Key>> = HashMap::new();
    for (session, keys) in wanted {
        let Some(tracks) = routes.get(&session) else {
            continue;
        };
        for key in keys {
            let Some(candidates) = tracks.get(&key) else {
                continue;
            };
            let current =
                (candidates.iter()).find(|r| carries(&(session.clone(), r.via.clone()), &key));
            if let Some(route) = current.or(candidates.first()) {
                (desired.entry((session.clone(), route.via.clone())))
                    .or_default()
                    .insert(key);
            }
        }
    }
    desired
}

/// Offers a relay peer to `via` over NATS and takes the tracks it adds,
/// telling it which we want, until the want ends (its sender is dropped)
/// or the peer closes. False if it failed.
async fn pull(
    server: Arc<Server>,
    cluster: Arc<Cluster>,
    session: Arc<Session>,
    via: String,
    mut want: watch::Receiver<BTreeSet<Key>>,
) -> bool {
    let meta = PeerMeta::new(cluster.name.clone(), session.name.clone());
    let peer = match Peer::new(meta, relay::relay_config(server.ip)).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(session = %session.name, %via, "pull failed: {e}");
            return false;
        }
    };
    server.peers.insert(&peer);
    let _listed = session.add_relay(RelayInfo {
        remote: via.clone(),
        direction: "in",
        via: "nats",
    });
    relay::take_tracks(&peer, &session, &via, &cluster.name);
    let offered = peer
        .offer(|meta, offer| signal(&cluster.client, &via, meta, offer))
        .await;
    if let Err(e) = offered {
        tracing::warn!(session = %session.name, %via, "pull failed: {e}");
        return false;
    }
    tracing::info!(session = %session.name, %via, "pull ready");
    loop {
        let keys: Vec<Value> = (want.borrow_and_update().iter())
            .map(|(s, t)| json!([s, t]))
            .collect();
        let body = json!({ "tracks": keys }).to_string();
        if let Err(e) = peer.emit(WANT_EVENT, Some(Bytes::from(body))).await {
            tracing::warn!(session = %session.name, %via, "pull lost: {e}");
            return false;
        }
        tokio::select! {
            changed = want.changed() => if changed.is_err() {
                peer.close().await;
                tracing::info!(session = %session.name, %via, "pull closed");
                return true;
            },
            reason = peer.closed() => {
                tracing::warn!(session = %session.name, %via, "pull closed by the remote: {reason}");
                return false;
            }
        }
    }
}

/// The relay's signal function over NATS: sends `offer` (from the peer
/// `meta` names) to server `to` as a request on [`relay_subject`], and
/// returns the answer in its reply.
pub async fn signal(
    client: &async_nats::Client,
    to: &str,
    meta: PeerMeta,
    offer: Vec<u8>,
) -> Result<Vec<u8>, String> {
    let mut headers = HeaderMap::new();
    headers.insert(FROM_HEADER, meta.peer_id.as_str());
    headers.insert(SESSION_HEADER, meta.session_id.as_str());
    let request = async_nats::Request::new()
        .headers(headers)
        .payload(Bytes::from(offer))
        .timeout(Some(OFFER_TIMEOUT));
    let reply = (client.send_request(relay_subject(to), request).await)
        .map_err(|e| format!("no answer over NATS: {e}"))?;
    if let Some(why) = reply.headers.as_ref().and_then(|h| h.get(ERROR_HEADER)) {
        return Err(format!("offer refused: {why}"));
    }
    Ok(reply.payload.to_vec())
}

fn header<'a>(headers: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    headers?.get(name).map(|v| v.as_str())
}

/// Answers a relay offer another server sent over NATS, then feeds it the
/// tracks it wants.
async fn take_offer(server: Arc<Server>, cluster: Arc<Cluster>, msg: async_nats::Message) {
    let Some(reply) = msg.reply.clone() else {
        return;
    };
    let refuse = |why: String| {
        let client = cluster.client.clone();
        let reply: Subject = reply.clone();
        async move {
            tracing::warn!("relay offer refused: {why}");
            let mut headers = HeaderMap::new();
            headers.insert(ERROR_HEADER, why.as_str());
            let _ = (client.publish_with_headers(reply, headers, Bytes::new())).await;
        }
    };
    let from = header(msg.headers.as_ref(), FROM_HEADER).unwrap_or_default();
    let name = header(msg.headers.as_ref(), SESSION_HEADER).unwrap_or_default();
    if from.is_empty() || !valid_session_name(name) {
        return refuse(format!(
            "{FROM_HEADER} and a valid {SESSION_HEADER} are needed"
        ))
        .await;
    }
    if !cluster.allowed(from) {
        return refuse(format!("{from} is not among this server's --peers")).await;
    }
    if lock(&cluster.feeds).len() >= MAX_FEEDS {
        return refuse(format!("this server feeds {MAX_FEEDS} servers already")).await;
    }
    let meta = PeerMeta::new(cluster.name.clone(), name);
    let (peer, answer) =
        match Peer::answer(meta, relay::relay_config(server.ip), &msg.payload).await {
            Ok(p) => p,
            Err(e) => return refuse(format!("bad offer: {e}")).await,
        };
    server.peers.insert(&peer);
    if let Err(e) = (cluster.client.publish(reply, answer.into())).await {
        tracing::warn!(%from, "answer not sent: {e}");
        peer.close().await;
        return;
    }
    let from = from.to_string();
    feed(server, cluster, peer, from, name.to_string()).await;
}

/// Feeds `from` the tracks of `name` it wants over `peer`, until the peer
/// closes or `from` is gone from NATS.
async fn feed(server: Arc<Server>, cluster: Arc<Cluster>, peer: Peer, from: String, name: String) {
    let session = server.session(&name);
    let _member = session.join();
    let _listed = session.add_relay(RelayInfo {
        remote: from.clone(),
        direction: "out",
        via: "nats",
    });
    let (want_tx, mut want) = watch::channel(BTreeSet::<Key>::new());
    let c = cluster.clone();
    peer.on_request(move |req| {
        if req.event() == WANT_EVENT {
            let v: Option<Value> = req.payload().and_then(|p| serde_json::from_slice(p).ok());
            let keys: BTreeSet<Key> = (v.iter())
                .flat_map(|v| v["tracks"].as_array().into_iter().flatten())
                .filter_map(key)
                .take(MAX_TRACKS)
                .collect();
            want_tx.send_replace(keys);
            c.changed.notify_one();
        }
        req.ignore();
    });
    static NEXT_FEED: AtomicU64 = AtomicU64::new(1);
    let id = NEXT_FEED.fetch_add(1, Ordering::Relaxed);
    let stop = Arc::new(Notify::new());
    lock(&cluster.feeds).insert(
        id,
        Feed {
            from: from.clone(),
            session: name.clone(),
            want: want.clone(),
            stop: stop.clone(),
        },
    );
    tracing::info!(session = %name, to = %from, "feed ready");
    let mut notices = session.subscribe();
    let mut relayed = relay::Forwarding::default();
    let why = loop {
        {
            let wanted = want.borrow_and_update();
            let tracks: Vec<_> = (session.tracks().into_iter())
                .filter(|t| {
                    let key = (t.meta.stream_id.clone(), t.meta.track_id.clone());
                    wanted.contains(&key) && !t.path.contains(&from)
                })
                .collect();
            relayed.sync(&peer, tracks);
        }
        tokio::select! {
            notice = notices.recv() => match notice {
                Ok(Notice::Message { from: who, text, origin: Origin::Local }) => {
                    let payload = json!({"from": who, "text": text}).to_string();
                    let _ = peer.emit(MESSAGE_EVENT, Some(Bytes::from(payload))).await;
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break "session ended".to_string(),
            },
            _ = want.changed() => {}
            _ = stop.notified() => break format!("{from} gone from NATS"),
            reason = peer.closed() => break reason.to_string(),
        }
    };
    drop(relayed);
    peer.close().await;
    lock(&cluster.feeds).remove(&id);
    cluster.changed.notify_one();
    tracing::info!(session = %name, to = %from, "feed closed: {why}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(track: &str) -> Key {
        ("s1".to_string(), track.to_string())
    }

    fn announce(d: &mut Directory, server: &str, tracks: &[(&str, &[&str])], now: Instant) {
        let list: Vec<Value> = (tracks.iter())
            .map(|(t, path)| json!({"stream": "s1", "track": t, "path": path}))
            .collect();
        let body = json!({"server": server, "sessions": {"room": list}}).to_string();
        d.record(body.as_bytes(), now);
    }

    fn vias(d: &Directory, track: &str) -> Vec<String> {
        let routes = d.routes();
        (routes
            .get("room")
            .and_then(|r| r.get(&k(track)))
            .into_iter())
        .flatten()
        .map(|r| r.via.clone())
        .collect()
    }

    #[test]
    fn the_shortest_route_comes_first_and_none_passes_through_us() {
        let now = Instant::now();
        let mut d = Directory::new("c", None);
        announce(&mut d, "a", &[("t", &["a"])], now);
        announce(&mut d, "b", &[("t", &["a", "b"]), ("u", &["c", "b"])], now);
        // b's route to t is longer; u started here (c) and must not come back.
        assert_eq!(vias(&d, "t"), ["a", "b"]);
        assert!(vias(&d, "u").is_empty());
        // A path must end where it was heard.
        announce(&mut d, "x", &[("v", &["a"])], now);
        assert!(vias(&d, "v").is_empty());
    }

    #[test]
    fn peers_outside_the_allow_list_are_not_used() {
        let now = Instant::now();
        let allow = Some(["b".to_string()].into_iter().collect());
        let mut d = Directory::new("c", allow);
        announce(&mut d, "a", &[("t", &["a"])], now);
        announce(&mut d, "b", &[("t", &["a", "b"])], now);
        assert_eq!(vias(&d, "t"), ["b"]);
        assert!(!d.allowed("a"));
        assert!(!d.allowed("c"), "never ourselves");
    }

    #[test]
    fn a_silent_server_expires_and_a_leaving_one_goes_at_once() {
        let t0 = Instant::now();
        let mut d = Directory::new("c", None);
        announce(&mut d, "a", &[("t", &["a"])], t0);
        announce(&mut d, "b", &[("u", &["b"])], t0);
        assert!(!d.expire(t0 + EXPIRE_AFTER - Duration::from_millis(1)));
        announce(&mut d, "b", &[("u", &["b"])], t0 + Duration::from_secs(2));
        assert!(d.expire(t0 + EXPIRE_AFTER));
        assert!(vias(&d, "t").is_empty(), "a's routes went with it");
        assert_eq!(vias(&d, "u"), ["b"]);
        d.record(br#"{"server":"b","leaving":true}"#, t0);
        assert!(vias(&d, "u").is_empty());
        assert!(d.servers(t0).is_empty());
    }

    #[test]
    fn a_track_stays_on_the_pull_that_carries_it() {
        let now = Instant::now();
        let mut d = Directory::new("c", None);
        announce(&mut d, "a", &[("t", &["a"]), ("u", &["a"])], now);
        announce(&mut d, "b", &[("t", &["a", "b"])], now);
        let routes = d.routes();
        let wanted: HashMap<String, BTreeSet<Key>> =
            [("room".to_string(), [k("t"), k("u"), k("gone")].into())].into();
        let fresh = assign(wanted.clone(), &routes, |_, _| false);
        let through_a = ("room".to_string(), "a".to_string());
        assert_eq!(fresh.len(), 1, "{fresh:?}");
        assert_eq!(fresh[&through_a], [k("t"), k("u")].into());
        // Already coming through b: it stays there while b reaches it.
        let kept = assign(wanted, &routes, |id, key| id.1 == "b" && *key == k("t"));
        assert_eq!(
            kept[&("room".to_string(), "b".to_string())],
            [k("t")].into()
        );
        assert_eq!(kept[&through_a], [k("u")].into());
    }

    #[test]
    fn malformed_announcements_are_dropped() {
        let now = Instant::now();
        let mut d = Directory::new("c", None);
        for bad in [
            &b"not json"[..],
            br#"{"server":7}"#,
            br#"{"server":"a","sessions":[1,2]}"#,
            br#"{"server":"a","sessions":{"room":[{"stream":1},{"track":"x"}]}}"#,
        ] {
            d.record(bad, now);
        }
        assert!(d.routes().is_empty());
        // An announcement of ours (same name) is not another server.
        announce(&mut d, "c", &[("t", &["c"])], now);
        assert!(d.servers(now).iter().all(|(s, _, _)| s != "c"));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_taken_without_panic(bytes: Vec<u8>) {
            let mut d = Directory::new("c", None);
            d.record(&bytes, Instant::now());
            let _ = d.routes();
        }
    }
}
