//! `relay-sfu`: a small SFU that cascades over the relay (the library
//! behind the `relay-sfu` command and its fan-out bench).
//!
//! Browsers publish with WHIP (`POST /whip/{session}`) and watch with WHEP
//! (`POST /whep/{session}`); the page at `/` does both. With
//! `--relay-to URL` the server relays each session's publishers to another
//! server, which serves them to its own watchers (`POST /relay`, ion-sfu's
//! `add_relay_peer`). With `--nats URL` servers form a cluster: they find
//! each other on NATS and pull a session's tracks while they have a watcher
//! for it, across any number of hops (`cluster.rs`, docs/cluster.md). See
//! the README's "relay-sfu" section.
#![forbid(unsafe_code)]

pub mod browser;
pub mod cluster;
pub mod http;
pub mod relay;
pub mod session;

use std::net::IpAddr;
use std::sync::Arc;

use session::{Session, Sessions};

/// What the HTTP handlers share.
#[derive(Debug)]
pub struct Server {
    /// Our name toward other servers.
    pub name: String,
    /// The address media sockets bind.
    pub ip: IpAddr,
    relay_to: Vec<String>,
    sessions: Sessions,
    /// Browsers connected now, for WHIP/WHEP `DELETE`.
    pub clients: Arc<browser::Clients>,
    /// Every relay peer, to close them all on SIGINT or SIGTERM.
    pub peers: relay_tokio::PeerSet,
    /// The NATS cluster, with `--nats`.
    pub cluster: Option<Arc<cluster::Cluster>>,
}

/// Session and server names: 1 to 64 of A-Z a-z 0-9 - _ (they appear in
/// URLs and NATS subjects).
pub fn valid_session_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && (name.bytes()).all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
}

impl Server {
    /// A server named `name` whose media sockets bind `ip`, relaying to
    /// each of `relay_to` (`--relay-to`), in `cluster` if there is one.
    pub fn new(
        name: String,
        ip: IpAddr,
        relay_to: Vec<String>,
        cluster: Option<Arc<cluster::Cluster>>,
    ) -> Server {
        Server {
            name,
            ip,
            relay_to,
            sessions: Sessions::default(),
            clients: Default::default(),
            peers: Default::default(),
            cluster,
        }
    }

    /// The `--relay-to` servers.
    pub fn relay_to(&self) -> &[String] {
        &self.relay_to
    }

    /// Every session now.
    pub fn sessions(&self) -> Vec<Arc<Session>> {
        self.sessions.all()
    }

    /// The session of that name; a new one starts relaying to every
    /// `--relay-to` server.
    pub fn session(&self, name: &str) -> Arc<Session> {
        let (session, created) = self.sessions.get_or_create(name);
        if created {
            for url in &self.relay_to {
                let relay = relay::relay_session(
                    session.clone(),
                    url.clone(),
                    self.name.clone(),
                    self.ip,
                    self.peers.clone(),
                );
                tokio::spawn(relay);
            }
        }
        session
    }
}
