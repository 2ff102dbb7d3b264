//! Counters a user can read at any time.

/// Where a peer is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PeerState {
    /// Created; no offer or answer yet.
    New,
    /// Offer made or applied; connecting.
    Connecting,
    /// The signalling channel is open.
    Ready,
    /// Closed.
    Closed,
}

/// Counters of one peer. All counts since the peer was created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Requests sent.
    pub requests_sent: u64,
    /// Requests that got a reply.
    pub requests_answered: u64,
    /// Requests that timed out.
    pub requests_timed_out: u64,
    /// Requests that failed because the peer closed, or were cancelled.
    pub requests_failed: u64,
    /// Emits sent.
    pub emits_sent: u64,
    /// Replies sent.
    pub replies_sent: u64,
    /// Inbound requests and emits surfaced.
    pub requests_received: u64,
    /// Signalling messages received (all kinds).
    pub messages_in: u64,
    /// Signalling messages sent (all kinds).
    pub messages_out: u64,
    /// Envelope bytes received.
    pub bytes_in: u64,
    /// Envelope bytes sent.
    pub bytes_out: u64,
    /// UDP datagrams received.
    pub datagrams_in: u64,
    /// UDP datagrams sent.
    pub datagrams_out: u64,
    /// RTP packets `write_rtp` refused because their datagram would exceed
    /// [`Config::max_datagram_size`](crate::Config::max_datagram_size).
    pub rtp_refused_too_large: u64,
    /// Times the remote was seen at a new address (a NAT rebinding: an
    /// authenticated ICE check from elsewhere), after which everything we
    /// send goes to the new address.
    pub remote_moves: u64,
    /// Times the path was reported interrupted ([`Event::PathInterrupted`](crate::Event::PathInterrupted)).
    pub path_interruptions: u64,
    /// Times it came back ([`Event::PathRestored`](crate::Event::PathRestored)).
    pub path_recoveries: u64,
    /// Drops, by cause.
    pub drops: Drops,
}

/// Inputs dropped, by cause. Nothing dropped is ever reported as an event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Drops {
    /// Datagrams that are not STUN/DTLS/RTP or that the stack rejected.
    pub bad_datagrams: u64,
    /// Datagrams that arrived after the peer closed.
    pub after_close: u64,
    /// Signalling messages that are not a valid envelope.
    pub bad_envelopes: u64,
    /// Replies whose id matches no pending request (unknown or expired).
    pub unknown_replies: u64,
    /// Inbound requests forgotten unanswered because too many were pending.
    pub unanswered_evicted: u64,
    /// Reassembled messages over our limit, or broken fragment sequences.
    pub oversized_messages: u64,
    /// Data-channel messages for channels we do not know.
    pub unknown_channel_data: u64,
    /// Track requests from the remote that were refused (bad payload type,
    /// MIME type or SSRC) or did not parse; the remote gets no reply.
    pub refused_tracks: u64,
    /// Extension messages that did not parse or named an unknown track.
    pub bad_extension_messages: u64,
}
