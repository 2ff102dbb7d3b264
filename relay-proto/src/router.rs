//! Many peers, one socket: which peer a received datagram belongs to.
//!
//! Sans-IO like the rest of the crate: the adapter that owns a shared UDP
//! socket registers each peer under a key of its choosing with the local
//! ICE ufrag of the peer's own offer or answer ([`ufrag_of`]), and asks
//! [`Router::route`] for every datagram it receives:
//!
//! - a STUN binding request is routed by its USERNAME attribute, whose part
//!   before `:` is the ufrag of the peer it is addressed to; its source
//!   address is then remembered for that peer;
//! - everything else (DTLS, SCTP, RTP, STUN responses) is routed by its
//!   source address: one remembered that way, or one of the remote's
//!   candidates ([`Router::add_remote_candidates`]).
//!
//! The router trusts the username it reads; the peer itself checks STUN
//! integrity and drops what does not belong to it.
//!
//! # The limit
//!
//! Routing by source address needs every peer on a socket to have its own
//! remote addresses. Two servers that both share one socket among many peers
//! give every peer between them the same 5-tuple, so only the first of them
//! can work: use one peer per pair of servers, or a socket per peer on at
//! least one side.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};

use crate::wire::{DecodeError, Signal};

/// Remote addresses remembered per peer; past it the oldest is forgotten,
/// so a peer's entries cannot grow without bound.
const MAX_ADDRS_PER_PEER: usize = 16;

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const ATTR_USERNAME: u16 = 0x0006;
const ATTR_MAPPED_ADDRESS: u16 = 0x0001;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;

/// Routes datagrams of one shared socket to the peers registered on it.
#[derive(Debug)]
pub struct Router<K> {
    by_ufrag: HashMap<String, K>,
    by_addr: HashMap<SocketAddr, K>,
    addrs_of: HashMap<K, VecDeque<SocketAddr>>,
}

impl<K> Default for Router<K> {
    fn default() -> Self {
        Router {
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            addrs_of: HashMap::new(),
        }
    }
}

impl<K: Copy + Eq + Hash> Router<K> {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a peer under `key` with the ufrag of its own offer or
    /// answer. Returns `false` (and changes nothing) when another peer
    /// already holds that ufrag.
    pub fn add_peer(&mut self, key: K, local_ufrag: &str) -> bool {
        if self.by_ufrag.get(local_ufrag).is_some_and(|k| *k != key) {
            return false;
        }
        self.by_ufrag.insert(local_ufrag.to_string(), key);
        self.addrs_of.entry(key).or_default();
        true
    }

    /// Routes datagrams from the remote's candidates (read from the remote's
    /// offer or answer) to `key`, for addresses no other peer holds. This
    /// lets a STUN response or DTLS arrive before the remote's first STUN
    /// request does.
    pub fn add_remote_candidates(
        &mut self,
        key: K,
        remote_signal: &[u8],
    ) -> Result<(), DecodeError> {
        let signal = Signal::decode(remote_signal)?;
        for c in &signal.ice_candidates {
            if let Ok(ip) = c.address.parse::<IpAddr>() {
                let addr = SocketAddr::new(ip, c.port);
                if !self.by_addr.contains_key(&addr) {
                    self.remember(key, addr);
                }
            }
        }
        Ok(())
    }

    /// Forgets a peer: its ufrag and its remote addresses.
    pub fn remove(&mut self, key: K) {
        self.by_ufrag.retain(|_, k| *k != key);
        if let Some(addrs) = self.addrs_of.remove(&key) {
            for a in addrs {
                if self.by_addr.get(&a) == Some(&key) {
                    self.by_addr.remove(&a);
                }
            }
        }
    }

    /// Number of peers registered.
    pub fn len(&self) -> usize {
        self.addrs_of.len()
    }

    /// `true` when no peer is registered.
    pub fn is_empty(&self) -> bool {
        self.addrs_of.is_empty()
    }

    /// The peer a datagram from `source` belongs to, if any. A STUN binding
    /// request addressed to a registered ufrag also teaches the router that
    /// `source` belongs to that peer.
    pub fn route(&mut self, source: SocketAddr, data: &[u8]) -> Option<K> {
        if let Some(ufrag) = binding_request_ufrag(data) {
            let key = *self.by_ufrag.get(ufrag)?;
            if self.by_addr.get(&source) != Some(&key) {
                self.remember(key, source);
            }
            return Some(key);
        }
        self.by_addr.get(&source).copied()
    }

    fn remember(&mut self, key: K, addr: SocketAddr) {
        if let Some(old) = self.by_addr.insert(addr, key)
            && old != key
            && let Some(list) = self.addrs_of.get_mut(&old)
        {
            list.retain(|a| *a != addr);
        }
        let list = self.addrs_of.entry(key).or_default();
        list.retain(|a| *a != addr);
        list.push_back(addr);
        if list.len() > MAX_ADDRS_PER_PEER
            && let Some(oldest) = list.pop_front()
            && self.by_addr.get(&oldest) == Some(&key)
        {
            self.by_addr.remove(&oldest);
        }
    }
}

/// The local ICE ufrag of an offer or answer (the `usernameFragment` a
/// remote puts before `:` in the STUN USERNAME it sends to us).
pub fn ufrag_of(signal: &[u8]) -> Result<String, DecodeError> {
    Ok(Signal::decode(signal)?.ice_parameters.username_fragment)
}

/// `true` when the datagram looks like STUN: first byte 0..=3 and the magic
/// cookie at bytes 4..8.
pub fn is_stun(data: &[u8]) -> bool {
    data.len() >= 20 && data[0] < 4 && data[4..8] == MAGIC_COOKIE
}

/// The attributes of a STUN message, as (type, value) pairs; stops at the
/// first malformed one.
fn stun_attributes(data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let declared = u16::from_be_bytes([data[2], data[3]]) as usize;
    let end = (20 + declared).min(data.len());
    let mut rest = &data[20..end];
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let typ = u16::from_be_bytes([rest[0], rest[1]]);
        let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        let value = rest.get(4..4 + len)?;
        let padded = (4 + len).div_ceil(4) * 4;
        rest = rest.get(padded..).unwrap_or(&[]);
        Some((typ, value))
    })
}

/// The ufrag a STUN binding request is addressed to: its USERNAME
/// attribute's part before `:`.
fn binding_request_ufrag(data: &[u8]) -> Option<&str> {
    if !is_stun(data) || u16::from_be_bytes([data[0], data[1]]) != BINDING_REQUEST {
        return None;
    }
    let (_, username) = stun_attributes(data).find(|(t, _)| *t == ATTR_USERNAME)?;
    let username = std::str::from_utf8(username).ok()?;
    Some(username.split(':').next().unwrap_or(username))
}

/// A STUN binding request with no attributes, as sent to a STUN server to
/// learn the address it sees (a server-reflexive candidate).
pub fn stun_binding_request(transaction: [u8; 12]) -> [u8; 20] {
    let mut out = [0u8; 20];
    out[..2].copy_from_slice(&BINDING_REQUEST.to_be_bytes());
    out[4..8].copy_from_slice(&MAGIC_COOKIE);
    out[8..].copy_from_slice(&transaction);
    out
}

/// The address a STUN server's binding success response reports
/// (XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS), when `data` is the response to
/// the request with `transaction`.
pub fn stun_mapped_address(data: &[u8], transaction: &[u8; 12]) -> Option<SocketAddr> {
    if !is_stun(data)
        || u16::from_be_bytes([data[0], data[1]]) != BINDING_SUCCESS
        || data[8..20] != transaction[..]
    {
        return None;
    }
    let mut plain = None;
    for (typ, v) in stun_attributes(data) {
        let xor = match typ {
            ATTR_XOR_MAPPED_ADDRESS => true,
            ATTR_MAPPED_ADDRESS => false,
            _ => continue,
        };
        let Some(addr) = decode_address(v, xor.then_some(&data[4..20])) else {
            continue;
        };
        if xor {
            return Some(addr);
        }
        plain = Some(addr);
    }
    plain
}

/// A (XOR-)MAPPED-ADDRESS value; `xor_key` is the cookie and transaction id.
fn decode_address(v: &[u8], xor_key: Option<&[u8]>) -> Option<SocketAddr> {
    let family = *v.get(1)?;
    let mut port = u16::from_be_bytes([*v.get(2)?, *v.get(3)?]);
    let len = match family {
        1 => 4,
        2 => 16,
        _ => return None,
    };
    let mut ip = v.get(4..4 + len)?.to_vec();
    if let Some(key) = xor_key {
        port ^= u16::from_be_bytes([key[0], key[1]]);
        for (b, k) in ip.iter_mut().zip(key) {
            *b ^= k;
        }
    }
    let ip: IpAddr = match len {
        4 => <[u8; 4]>::try_from(ip.as_slice()).ok()?.into(),
        _ => <[u8; 16]>::try_from(ip.as_slice()).ok()?.into(),
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A binding request with a USERNAME (and a trailing attribute, as ICE
    /// checks carry PRIORITY and MESSAGE-INTEGRITY after it).
    fn binding(username: &str) -> Vec<u8> {
        let mut attrs = Vec::new();
        attrs.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username.as_bytes());
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        attrs.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4]);
        let mut out = stun_binding_request([7; 12]).to_vec();
        out[2..4].copy_from_slice(&(attrs.len() as u16).to_be_bytes());
        out.extend(attrs);
        out
    }

    fn dtls() -> Vec<u8> {
        vec![22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]
    }

    #[test]
    fn stun_by_ufrag_then_the_rest_by_learned_address() {
        let mut r = Router::new();
        assert!(r.add_peer(1u32, "aaaa"));
        assert!(r.add_peer(2u32, "bbbb"));
        let (x, y) = (addr("127.0.0.1:1000"), addr("127.0.0.1:2000"));
        // Nothing known about the sources yet.
        assert_eq!(r.route(x, &dtls()), None);
        assert_eq!(r.route(x, &binding("bbbb:remote1")), Some(2));
        assert_eq!(r.route(y, &binding("aaaa:remote2")), Some(1));
        assert_eq!(r.route(x, &dtls()), Some(2));
        assert_eq!(r.route(y, &dtls()), Some(1));
        // An unknown ufrag goes nowhere and teaches nothing.
        assert_eq!(r.route(addr("127.0.0.1:3000"), &binding("zzzz:q")), None);
        assert_eq!(r.route(addr("127.0.0.1:3000"), &dtls()), None);
    }

    #[test]
    fn removal_forgets_ufrag_and_addresses() {
        let mut r = Router::new();
        r.add_peer(1u32, "aaaa");
        let x = addr("[::1]:1000");
        assert_eq!(r.route(x, &binding("aaaa:r")), Some(1));
        r.remove(1);
        assert!(r.is_empty());
        assert_eq!(r.route(x, &dtls()), None);
        assert_eq!(r.route(x, &binding("aaaa:r")), None);
    }

    #[test]
    fn a_ufrag_belongs_to_one_peer() {
        let mut r = Router::new();
        assert!(r.add_peer(1u32, "aaaa"));
        assert!(!r.add_peer(2u32, "aaaa"));
        assert!(r.add_peer(1u32, "aaaa"));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn an_address_moves_to_the_peer_its_stun_names() {
        let mut r = Router::new();
        r.add_peer(1u32, "aaaa");
        r.add_peer(2u32, "bbbb");
        let x = addr("127.0.0.1:1000");
        r.route(x, &binding("aaaa:r"));
        r.route(x, &binding("bbbb:r"));
        assert_eq!(r.route(x, &dtls()), Some(2));
        // Removing the first owner does not take the address from the second.
        r.remove(1);
        assert_eq!(r.route(x, &dtls()), Some(2));
    }

    #[test]
    fn addresses_per_peer_are_bounded() {
        let mut r = Router::new();
        r.add_peer(1u32, "aaaa");
        for port in 0..100u16 {
            r.route(
                SocketAddr::new([127, 0, 0, 1].into(), 5000 + port),
                &binding("aaaa:r"),
            );
        }
        assert_eq!(r.by_addr.len(), MAX_ADDRS_PER_PEER);
        assert_eq!(r.route(addr("127.0.0.1:5099"), &dtls()), Some(1));
        assert_eq!(r.route(addr("127.0.0.1:5000"), &dtls()), None);
    }

    #[test]
    fn garbage_is_not_stun_and_never_panics() {
        let mut r: Router<u32> = Router::new();
        r.add_peer(1, "aaaa");
        for len in 0..64 {
            let data = vec![0u8; len];
            assert_eq!(r.route(addr("127.0.0.1:1"), &data), None);
        }
        // Cookie right, attribute length lying past the end.
        let mut bad = binding("aaaa:r");
        bad[22] = 0xff;
        bad[23] = 0xff;
        assert_eq!(r.route(addr("127.0.0.1:1"), &bad), None);
        assert!(!is_stun(&dtls()));
    }

    #[test]
    fn remote_candidates_route_until_stun_says_otherwise() {
        let answer = br#"{"iceCandidates":[{"foundation":"1","priority":1,"address":"127.0.0.1","protocol":1,"port":4000,"type":1,"component":1,"relatedAddress":"","relatedPort":0,"tcpType":""}],"iceParameters":{"usernameFragment":"remo","password":"p","iceLite":false},"dtlsParameters":{"role":1,"fingerprints":[]},"sctpCapabilities":{"maxMessageSize":0}}"#;
        assert_eq!(ufrag_of(answer).unwrap(), "remo");
        let mut r = Router::new();
        r.add_peer(1u32, "aaaa");
        r.add_peer(2u32, "bbbb");
        r.add_remote_candidates(1, answer).unwrap();
        // A hint never takes an address from another peer.
        r.add_remote_candidates(2, answer).unwrap();
        assert_eq!(r.route(addr("127.0.0.1:4000"), &dtls()), Some(1));
        assert!(r.add_remote_candidates(1, b"nope").is_err());
    }

    #[test]
    fn stun_server_response_yields_the_mapped_address() {
        let tid = [9u8; 12];
        let req = stun_binding_request(tid);
        assert!(is_stun(&req));
        // Build a success response with XOR-MAPPED-ADDRESS 198.51.100.7:40000.
        let mapped = addr("198.51.100.7:40000");
        let mut resp = req.to_vec();
        resp[..2].copy_from_slice(&BINDING_SUCCESS.to_be_bytes());
        let mut v = vec![0, 1];
        v.extend_from_slice(&(40000u16 ^ 0x2112).to_be_bytes());
        for (b, k) in [198u8, 51, 100, 7].iter().zip(MAGIC_COOKIE) {
            v.push(b ^ k);
        }
        resp.extend_from_slice(&ATTR_XOR_MAPPED_ADDRESS.to_be_bytes());
        resp.extend_from_slice(&(v.len() as u16).to_be_bytes());
        resp.extend(v);
        resp[2..4].copy_from_slice(&12u16.to_be_bytes());
        assert_eq!(stun_mapped_address(&resp, &tid), Some(mapped));
        assert_eq!(stun_mapped_address(&resp, &[0; 12]), None);
        assert_eq!(stun_mapped_address(&req, &tid), None);
    }
}
