//! The server-to-server side, over relay-tokio.
//!
//! Outbound (`--relay-to URL`): one relay peer per (session, remote server)
//! carries all the session's local publishers' tracks (see the README for
//! why one peer rather than one per publisher). It connects when the
//! session has a local track, adds each local track as it appears, removes
//! it when it ends, and closes when none is left.
//!
//! Inbound (`POST /relay`, ion-sfu's `add_relay_peer`): each remote track
//! becomes a track of the session named in the peer's meta, and ends when
//! the remote removes it or the peer closes.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use relay_tokio::{Config, Error, KeyframeKind, Peer, PeerMeta, PeerSet, RemoteTrack, RtpOut};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::session::{Notice, Origin, Packet, RelayInfo, Session, Track};

/// Event name of a publisher's data-channel message on the relay.
pub const MESSAGE_EVENT: &str = "sfu.message";

/// Event name of the path of the track added next (sent just before the
/// track is added, on the same ordered channel):
/// `{"stream":S,"track":T,"path":["A","B"]}`, the track's origin first.
pub const TRACK_EVENT: &str = "sfu.track";

/// The paths the remote gave for the tracks it adds, by (stream, track).
pub type Paths = Arc<Mutex<HashMap<(String, String), Vec<String>>>>;

pub(crate) fn relay_config(ip: IpAddr) -> Config {
    Config::bind(vec![SocketAddr::new(ip, 0)])
}

fn local_tracks(session: &Session) -> Vec<Arc<Track>> {
    let mut tracks = session.tracks();
    tracks.retain(|t| t.origin == Origin::Local);
    tracks
}

/// Relays `session`'s local publishers to the server at `url` for as long
/// as the server runs (spawn it once per session and remote server).
pub async fn relay_session(
    session: Arc<Session>,
    url: String,
    server: String,
    ip: IpAddr,
    peers: PeerSet,
) {
    let mut notices = session.subscribe();
    loop {
        // Connect only when there is something to relay.
        while local_tracks(&session).is_empty() {
            if session.is_ended() {
                return;
            }
            if let Err(broadcast::error::RecvError::Closed) = notices.recv().await {
                return;
            }
        }
        let meta = PeerMeta::new(server.clone(), session.name.clone());
        match run_outbound(&session, &url, meta, ip, &peers, &mut notices).await {
            Ok(()) => {
                tracing::info!(session = %session.name, %url, "relay closed: nothing to relay")
            }
            Err(e) => {
                tracing::warn!(session = %session.name, %url, "relay failed: {e}; retrying in 2 s");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

async fn run_outbound(
    session: &Arc<Session>,
    url: &str,
    meta: PeerMeta,
    ip: IpAddr,
    peers: &PeerSet,
    notices: &mut broadcast::Receiver<Notice>,
) -> Result<(), Error> {
    let peer = Peer::new(meta, relay_config(ip)).await?;
    peers.insert(&peer);
    let _listed = session.add_relay(RelayInfo {
        remote: url.to_string(),
        direction: "out",
        via: "http",
    });
    peer.offer(|meta, offer| async move { relay_http::post_offer(url, &meta, offer, None).await })
        .await?;
    tracing::info!(session = %session.name, %url, "relay ready");
    let mut relayed = Forwarding::default();
    loop {
        relayed.sync(&peer, local_tracks(session));
        if relayed.is_empty() {
            peer.close().await;
            return Ok(());
        }
        tokio::select! {
            notice = notices.recv() => match notice {
                Ok(Notice::Message { from, text, origin: Origin::Local }) => {
                    let payload = serde_json::json!({"from": from, "text": text}).to_string();
                    peer.emit(MESSAGE_EVENT, Some(Bytes::from(payload))).await?;
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => {
                    peer.close().await;
                    return Ok(());
                }
            },
            reason = peer.closed() => {
                return Err(Error::Closed(reason));
            }
        }
    }
}

/// The tasks forwarding tracks over one relay peer, by track id. Each owns
/// its relay `LocalTrack`, so ending the task (or dropping this) removes the
/// track on the remote.
#[derive(Default)]
pub struct Forwarding(HashMap<u64, JoinHandle<()>>);

impl Forwarding {
    /// Forwards exactly `tracks` over `peer`: starts the new ones and ends
    /// the others.
    pub fn sync(&mut self, peer: &Peer, tracks: Vec<Arc<Track>>) {
        self.0.retain(|id, task| {
            let keep = tracks.iter().any(|t| t.id == *id);
            if !keep {
                task.abort();
            }
            keep
        });
        for track in tracks {
            (self.0.entry(track.id)).or_insert_with(|| tokio::spawn(forward(peer.clone(), track)));
        }
    }

    /// Nothing is forwarded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        for task in self.0.values() {
            task.abort();
        }
    }
}

/// Adds one track to the relay peer and forwards its packets, and the
/// remote's keyframe requests back to the source, until the track ends;
/// then removes it. The track's path goes first ([`TRACK_EVENT`]).
pub async fn forward(peer: Peer, track: Arc<Track>) {
    let Some(mut packets) = track.subscribe() else {
        return;
    };
    let path = serde_json::json!({
        "stream": track.meta.stream_id,
        "track": track.meta.track_id,
        "path": track.path,
    });
    if let Err(e) = peer
        .emit(TRACK_EVENT, Some(Bytes::from(path.to_string())))
        .await
    {
        tracing::debug!(track = ?track, "relay closed before the track was added: {e}");
        return;
    }
    let local = match peer
        .add_track(track.meta.clone(), track.codec.clone())
        .await
    {
        Ok(local) => local,
        Err(e) => {
            tracing::warn!(track = ?track, "relay refused the track: {e}");
            return;
        }
    };
    let pt = track.codec.payload_type;
    loop {
        tokio::select! {
            packet = packets.recv() => match packet {
                Ok(p) => {
                    // The browser's buffer itself: no copy on the way.
                    let out = RtpOut::from_shared(
                        pt,
                        p.seq as u16,
                        p.timestamp,
                        p.marker,
                        p.payload.clone(),
                    );
                    // A full queue drops the packet, as a congested link would.
                    if let Err(e) = local.try_write_rtp(out) {
                        tracing::debug!("relay write failed: {e}");
                        if matches!(e, Error::Closed(_) | Error::TrackClosed) {
                            break;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            },
            request = local.keyframe_request() => match request {
                Some(_) => track.request_keyframe(),
                None => break,
            },
        }
    }
    let _ = local.remove().await;
}

/// Answers a relay offer from another server (ion-sfu's
/// `session.add_relay_peer`): its tracks join the session named in `meta`.
pub async fn accept(
    sessions: &crate::Server,
    meta: PeerMeta,
    offer: &[u8],
) -> Result<Vec<u8>, Error> {
    let ours = PeerMeta::new(sessions.name.clone(), meta.session_id.clone());
    let (peer, answer) = Peer::answer(ours, relay_config(sessions.ip), offer).await?;
    sessions.peers.insert(&peer);
    let session = sessions.session(&meta.session_id);
    tracing::info!(session = %session.name, remote = %meta.peer_id, "relay peer added");
    let listed = session.add_relay(RelayInfo {
        remote: meta.peer_id.clone(),
        direction: "in",
        via: "http",
    });
    take_tracks(&peer, &session, &meta.peer_id, &sessions.name);
    tokio::spawn(async move {
        let reason = peer.closed().await;
        drop(listed);
        tracing::info!(session = %session.name, remote = %meta.peer_id, "relay peer closed: {reason}");
    });
    Ok(answer)
}

/// Makes the tracks `remote` (a server) adds on `peer` tracks of `session`,
/// with the paths it gives ([`TRACK_EVENT`]) and `us` appended, and its
/// publishers' messages the session's.
pub fn take_tracks(peer: &Peer, session: &Arc<Session>, remote: &str, us: &str) {
    let paths = Paths::default();
    let (s, p, r, us) = (
        session.clone(),
        paths.clone(),
        remote.to_string(),
        us.to_string(),
    );
    peer.on_track(move |track| {
        let key = (
            track.meta().stream_id.clone(),
            track.meta().track_id.clone(),
        );
        let given = p
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
        let mut path = given.unwrap_or_else(|| vec![r.clone()]);
        path.push(us.clone());
        tokio::spawn(ingest(s.clone(), track, path));
    });
    let s = session.clone();
    peer.on_request(move |req| {
        let m: Option<serde_json::Value> =
            req.payload().and_then(|p| serde_json::from_slice(p).ok());
        match (req.event(), m) {
            (MESSAGE_EVENT, Some(m)) => {
                let from = m["from"].as_str().unwrap_or_default();
                s.message(from, m["text"].as_str().unwrap_or_default(), Origin::Relay);
            }
            (TRACK_EVENT, Some(m)) => {
                let key = (
                    m["stream"].as_str().unwrap_or_default().to_string(),
                    m["track"].as_str().unwrap_or_default().to_string(),
                );
                let path: Vec<String> = (m["path"].as_array().into_iter().flatten())
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .take(64)
                    .collect();
                let mut paths = paths.lock().unwrap_or_else(PoisonError::into_inner);
                // Bounded: a path is taken by the track that follows it.
                if paths.len() < 1024 {
                    paths.insert(key, path);
                }
            }
            _ => {}
        }
        req.ignore();
    });
}

/// A remote track becomes a track of the session until the remote removes
/// it (or the peer closes); watchers' keyframe requests go back over the
/// relay.
async fn ingest(session: Arc<Session>, remote: RemoteTrack, path: Vec<String>) {
    let (keyframes_tx, mut keyframes) = mpsc::channel(1);
    let (track, packets) = Track::new(
        remote.meta().clone(),
        remote.codec().clone(),
        Origin::Relay,
        path,
        move || {
            let _ = keyframes_tx.try_send(());
        },
    );
    session.add_track(track.clone());
    loop {
        tokio::select! {
            packet = remote.read_rtp() => match packet {
                Some(p) => {
                    let _ = packets.send(Arc::new(Packet {
                        seq: p.extended_sequence_number,
                        timestamp: p.timestamp,
                        marker: p.marker,
                        payload: p.shared_payload(),
                        received: p.received,
                    }));
                }
                None => break,
            },
            Some(()) = keyframes.recv() => {
                let _ = remote.request_keyframe(KeyframeKind::Pli).await;
            }
        }
    }
    drop(packets);
    session.remove_track(track.id);
}
