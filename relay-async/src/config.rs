//! Settings of a peer and of the sockets it uses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Settings of one peer.
///
/// Start from [`Config::default`] (or [`Config::bind`]) and change what you
/// need; the core's settings (timeouts, limits) are in [`Config::core`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The core's settings: request timeout, connect timeout, limits.
    /// `local_addrs` is filled in from the bound sockets (what you put there
    /// is replaced) and the endpoint's announced addresses are added to
    /// `announced_addrs`. A `seed` of 0 is replaced by a random one.
    pub core: relay_proto::Config,
    /// The sockets of a peer made with `Peer::new` or `Peer::answer`;
    /// ignored for a peer made on a shared [`Endpoint`](crate::Endpoint).
    pub endpoint: EndpointConfig,
    /// Events (inbound requests, remote data channels and tracks, track
    /// changes, ready, closed) held for the application. Like every queue
    /// here it takes memory only for what it holds. When it falls
    /// behind and the queue is full, any of them but `Ready` and `Closed` is
    /// dropped and counted
    /// ([`Stats::events_dropped`](crate::Stats::events_dropped)); one slot is
    /// kept for `Closed`, so that is never lost. Default 4,096 (at least
    /// 2), the default
    /// [`max_pending_requests`](relay_proto::Config::max_pending_requests):
    /// a remote of ours within its own default limit cannot overflow it
    /// with requests, even when a retransmission after loss delivers
    /// seconds of them at once.
    pub event_queue: usize,
    /// Received messages held per data channel until
    /// [`DataChannel::recv`](crate::DataChannel::recv) takes them; past it a
    /// message is dropped and counted
    /// ([`Stats::channel_messages_dropped`](crate::Stats::channel_messages_dropped)).
    /// Default 256.
    pub channel_queue: usize,
    /// Received RTP packets held per remote track until
    /// [`RemoteTrack::read_rtp`](crate::RemoteTrack::read_rtp) takes them;
    /// past it a packet is dropped and counted
    /// ([`Stats::rtp_packets_dropped`](crate::Stats::rtp_packets_dropped),
    /// [`RemoteTrack::dropped`](crate::RemoteTrack::dropped)). Default 8,192:
    /// the queue is the reader's only slack (the peer's task never waits
    /// for it), and on a loaded 2-core machine a tokio reader task was seen
    /// to get no turn for up to 100 ms while its peer's task ran, which at
    /// 50,000 packets/s is 5,000 packets. It takes memory only for what it
    /// holds (about 1.3 KB per 1,200-byte packet).
    pub track_queue: usize,
    /// Calls (emit, request, reply, writes, RTP writes...) waiting for the
    /// peer's task, in order; a caller awaits room when it is full
    /// ([`LocalTrack::try_write_rtp`](crate::LocalTrack::try_write_rtp)
    /// fails instead). Default 256.
    pub command_queue: usize,
    /// For a peer on a shared [`Endpoint`](crate::Endpoint): received
    /// datagrams waiting for the peer's task, handed over in batches; past
    /// it a datagram is dropped and counted, as the network would
    /// ([`Stats::datagrams_dropped`](crate::Stats::datagrams_dropped)). A
    /// peer on its own sockets reads them itself and has no such queue (the
    /// kernel's receive buffer is the only one). Default 1,024.
    pub datagram_queue: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            core: relay_proto::Config::new(Vec::new()),
            endpoint: EndpointConfig::default(),
            event_queue: 4096,
            channel_queue: 256,
            track_queue: 8192,
            command_queue: 256,
            datagram_queue: 1024,
        }
    }
}

impl Config {
    /// Defaults, with the peer's own sockets bound to `addrs`
    /// (see [`EndpointConfig::bind`]).
    pub fn bind(addrs: Vec<SocketAddr>) -> Self {
        Config {
            endpoint: EndpointConfig::bind(addrs),
            ..Config::default()
        }
    }
}

/// Where an [`Endpoint`](crate::Endpoint) binds and what it announces.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EndpointConfig {
    /// Addresses to bind; each bound socket becomes an ICE host candidate.
    /// An unspecified IP (`0.0.0.0`, `::`) means one socket per local
    /// interface address of that family (loopback only when there is no
    /// other; IPv6 link-local skipped), because the core must know the
    /// address each datagram arrived on. Port 0 is an ephemeral port per
    /// socket. Default: `0.0.0.0:0` and `[::]:0`.
    pub bind: Vec<SocketAddr>,
    /// Public IPs that reach the bound addresses through a 1:1 NAT (pion's
    /// `NAT1To1IPs`, mediasoup's `announcedAddress`): each is announced, with
    /// the port of each bound socket of its family, as a server-reflexive
    /// candidate. Default none.
    pub announced_ips: Vec<IpAddr>,
    /// A STUN server asked, once per socket of its family when binding,
    /// which address it sees; the answer is announced as a
    /// server-reflexive candidate. Default none.
    pub stun_server: Option<SocketAddr>,
    /// How long to wait for each of the three STUN requests. Default 500 ms.
    pub stun_timeout: Duration,
    /// Receive buffer asked of each socket (`SO_RCVBUF`). The system's
    /// default (often 208 KiB) drops the tail of a keyframe burst on a fast
    /// link before the peer's task reads it; the kernel caps the request at
    /// `net.core.rmem_max`. `None` keeps the system's. Default 4 MiB.
    pub recv_buffer: Option<usize>,
    /// Send buffer asked of each socket (`SO_SNDBUF`), capped at
    /// `net.core.wmem_max`. Default 1 MiB.
    pub send_buffer: Option<usize>,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig::bind(vec![
            SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0),
            SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0),
        ])
    }
}

impl EndpointConfig {
    /// Binds `addrs`, announces nothing more.
    pub fn bind(addrs: Vec<SocketAddr>) -> Self {
        EndpointConfig {
            bind: addrs,
            announced_ips: Vec::new(),
            stun_server: None,
            stun_timeout: Duration::from_millis(500),
            recv_buffer: Some(4 * 1024 * 1024),
            send_buffer: Some(1024 * 1024),
        }
    }
}
