//! Peer configuration.

use std::net::SocketAddr;
use std::time::Duration;

use crate::cert::Certificate;

/// Who a peer is, as the application names it.
///
/// It travels beside the offer (the signal function's first argument), never
/// inside it, exactly as in ion-sfu's relay.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PeerMeta {
    /// The remote-visible id of this relay peer.
    pub peer_id: String,
    /// The session the peer belongs to.
    pub session_id: String,
}

impl PeerMeta {
    /// Metadata from a peer id and a session id.
    pub fn new(peer_id: impl Into<String>, session_id: impl Into<String>) -> Self {
        PeerMeta {
            peer_id: peer_id.into(),
            session_id: session_id.into(),
        }
    }
}

/// A public address that reaches one of the local addresses through a 1:1 NAT.
///
/// It is announced as a server-reflexive candidate whose base is `local`, so
/// datagrams that arrive on `local` still match a host candidate (str0m drops
/// STUN whose destination is not a local host candidate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AnnouncedAddr {
    /// The address the remote should send to.
    pub public: SocketAddr,
    /// The local socket address that receives what is sent to `public`.
    pub local: SocketAddr,
}

/// Settings of one relay peer.
///
/// Start from [`Config::new`] (every default below) and change what you need.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Local socket addresses this peer receives on; each becomes a host
    /// candidate. At least one is required. Unspecified addresses (`0.0.0.0`)
    /// are refused: name the interface address that packets arrive on.
    pub local_addrs: Vec<SocketAddr>,
    /// Public addresses announced in addition (1:1 NAT).
    pub announced_addrs: Vec<AnnouncedAddr>,
    /// Timeout of a request when none is given. Default 5 s.
    pub request_timeout: Duration,
    /// Requests awaiting a reply at once; over it `request` fails at once.
    /// Default 4,096.
    pub max_pending_requests: usize,
    /// Inbound requests the application has not replied to yet that are
    /// remembered; past it the oldest is forgotten (and counted), so a
    /// request flood cannot grow memory. Default 4,096.
    pub max_unanswered_requests: usize,
    /// Bytes queued for the signalling channel while SCTP has no room (and
    /// before Ready); past it `emit`/`request` fail with `SendQueueFull`.
    /// Default 8 MiB.
    pub max_send_queue_bytes: usize,
    /// Largest envelope we accept, announced to peers that speak our
    /// extensions (PROTOCOL.md B.1). Default 1 MiB. Toward a base peer the
    /// sending limit is 65,535 bytes whatever this says.
    pub max_message_size: u32,
    /// How long ICE may stay disconnected before the peer closes with
    /// [`CloseReason::Unreachable`](crate::CloseReason::Unreachable).
    /// Default 5 s (pion, on the Go side, closes after about 5 s too).
    pub disconnect_grace: Duration,
    /// How long we may send without hearing anything back before the path
    /// is reported interrupted
    /// ([`Event::PathInterrupted`](crate::Event::PathInterrupted); also when
    /// ICE reports it disconnected). On a live path everything we send
    /// draws an answer within a round trip, and ICE retransmits an
    /// unanswered check within a second. Default 2 s.
    pub path_quiet_after: Duration,
    /// How long after the offer (or answer) the signalling channel may take
    /// to open before the peer closes with
    /// [`CloseReason::ConnectTimeout`](crate::CloseReason::ConnectTimeout).
    /// Default 15 s.
    pub connect_timeout: Duration,
    /// How long the remote has to accept a track we add before the add
    /// fails with [`RequestError::TimedOut`](crate::RequestError::TimedOut).
    /// Default 2 s (as the Go relay).
    pub track_request_timeout: Duration,
    /// Keyframe requests on one remote track are sent at most once per this
    /// interval; the rest are merged into one sent when it ends. Default
    /// 500 ms.
    pub keyframe_request_interval: Duration,
    /// A remote track with no RTP for this long is reported as
    /// [`Event::TrackInactive`](crate::Event::TrackInactive) (a base peer has
    /// no way to say it removed a track). `None` disables it. Default 5 s.
    pub track_inactive_after: Option<Duration>,
    /// How long a data channel we open may take to open before it is given
    /// up with [`ChannelError::OpenFailed`](crate::ChannelError::OpenFailed)
    /// (its stream id taken by the remote at the same moment, say).
    /// Default 5 s.
    pub channel_open_timeout: Duration,
    /// Announce our extensions (PROTOCOL.md B.1). `false` makes the peer
    /// behave exactly like a base (Go) peer. Default `true`.
    pub announce_extensions: bool,
    /// Seed of the peer's own randomness (request ids). Default 0; give each
    /// peer its own seed in production (`fastrand::u64(..)` at the call site).
    pub seed: u64,
    /// A DTLS certificate shared by many peers (generating one costs about
    /// 1.5 ms); `None` generates one per peer. See
    /// [`Certificate::generate`].
    pub dtls_cert: Option<Certificate>,
    /// The largest datagram the peer sends: an RTP packet whose SRTP
    /// datagram would be larger is refused by
    /// [`Peer::write_rtp`](crate::Peer::write_rtp) with
    /// [`Error::PacketTooLarge`](crate::Error::PacketTooLarge) and counted,
    /// never sent to be dropped. Default 1,460 bytes: what pion (the Go
    /// relay) reads an SRTP packet into, and under a 1,500-byte MTU. A
    /// source RTP packet (12-byte header and payload) of up to 1,440 bytes
    /// fits (str0m adds a 4-byte header-extension block and SRTP its
    /// 16-byte tag).
    pub max_datagram_size: usize,
    /// The largest share of a track's sent bytes, over the last second,
    /// that retransmissions (RTX, asked for by NACK) may take; past it the
    /// retransmissions waiting are dropped, so a remote that NACKs
    /// everything cannot multiply what we send. `None` sends every one.
    /// Default 0.5. str0m's own default, 0.15, is exceeded by loss of 5 %
    /// each way with reordering (repeated NACKs resend a packet twice), and
    /// then the losses stay lost: the fault soak lost 10 to 24 packets a
    /// minute that way.
    pub max_retransmission_share: Option<f32>,
}

impl Config {
    /// Defaults, receiving on `local_addrs`.
    pub fn new(local_addrs: Vec<SocketAddr>) -> Self {
        Config {
            local_addrs,
            announced_addrs: Vec::new(),
            request_timeout: Duration::from_secs(5),
            max_pending_requests: 4096,
            max_unanswered_requests: 4096,
            max_send_queue_bytes: 8 * 1024 * 1024,
            max_message_size: 1024 * 1024,
            disconnect_grace: Duration::from_secs(5),
            path_quiet_after: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(15),
            track_request_timeout: Duration::from_secs(2),
            keyframe_request_interval: Duration::from_millis(500),
            track_inactive_after: Some(Duration::from_secs(5)),
            channel_open_timeout: Duration::from_secs(5),
            announce_extensions: true,
            seed: 0,
            dtls_cert: None,
            max_datagram_size: 1460,
            max_retransmission_share: Some(0.5),
        }
    }
}
