//! The remote's address, followed when it changes (a NAT rebinding).
//!
//! str0m keeps sending to the address of the candidate pair ICE nominated.
//! When the remote's public address changes under a NAT, the remote's
//! datagrams arrive from the new address, but ours still go to the old one;
//! since the remote still answers our connectivity checks at its new address
//! and we hear its media, nothing looks dead, and the link stays half open.
//!
//! So this follows the remote the way a server follows a roaming client:
//! once connected, a STUN binding request that proves it comes from the
//! remote (its USERNAME starts with our ufrag and its MESSAGE-INTEGRITY
//! verifies with our ICE password, which only the remote learned, through
//! the signal), from an address of the same family that is not one of the
//! remote's signalled candidates, moves every transmit for the address str0m
//! sends to onto that address. A proven request from the signalled address
//! again ends the redirect. A datagram without that proof never moves
//! anything: a spoofed source cannot redirect the peer. Checks from the
//! remote's other signalled candidates are ICE's own (its other pairs).

use std::collections::HashMap;
use std::net::SocketAddr;

use aws_lc_rs::hmac;

/// STUN's magic cookie (RFC 8489).
const MAGIC_COOKIE: u32 = 0x2112_A442;
const BINDING_REQUEST: u16 = 0x0001;
const ATTR_USERNAME: u16 = 0x0006;
const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
const HEADER: usize = 20;

/// Where the remote is now, as far as proven STUN requests tell.
#[derive(Debug, Default)]
pub(crate) struct Path {
    /// The remote's signalled candidates: checks from these are ICE's own
    /// business (its candidate pairs), never a move.
    known: Vec<SocketAddr>,
    /// Where str0m last sent something other than STUN: the nominated
    /// pair's remote address.
    last_sent: Option<SocketAddr>,
    /// Addresses str0m sends to, each to the address the remote moved to.
    moved: HashMap<SocketAddr, SocketAddr>,
    /// How many times the remote was seen to move.
    pub(crate) changes: u64,
}

impl Path {
    /// The remote's signalled candidate addresses.
    pub(crate) fn set_known(&mut self, known: Vec<SocketAddr>) {
        self.known = known;
    }

    /// str0m sent a datagram that is not STUN to `destination` (before
    /// [`Path::route`]).
    pub(crate) fn sent(&mut self, destination: SocketAddr, data: &[u8]) {
        if data.first().is_some_and(|b| *b >= 2) {
            self.last_sent = Some(destination);
        }
    }

    /// Looks at a received datagram once connected; returns `Some(new)`
    /// when it is a proven binding request showing the remote at a new
    /// address (or back at its signalled one).
    pub(crate) fn observe(
        &mut self,
        source: SocketAddr,
        data: &[u8],
        local_ufrag: &str,
        local_pass: &str,
    ) -> Option<SocketAddr> {
        let target = self.last_sent?;
        if self.route(target) == source || source.is_ipv4() != target.is_ipv4() {
            return None;
        }
        if self.known.contains(&source) && !self.moved.contains_key(&source) {
            return None;
        }
        if !is_proven_request(data, local_ufrag, local_pass) {
            return None;
        }
        if self.known.contains(&source) {
            // Back where it was signalled: ICE's own pair works again.
            self.moved.remove(&source);
        } else {
            self.moved.insert(target, source);
        }
        self.changes += 1;
        Some(source)
    }

    /// Where a transmit for `destination` goes.
    pub(crate) fn route(&self, destination: SocketAddr) -> SocketAddr {
        self.moved.get(&destination).copied().unwrap_or(destination)
    }
}

/// A STUN binding request whose USERNAME is `local_ufrag:...` and whose
/// MESSAGE-INTEGRITY verifies with `local_pass` (RFC 8489 section 14.5).
fn is_proven_request(data: &[u8], local_ufrag: &str, local_pass: &str) -> bool {
    if data.len() < HEADER || data[0] & 0xC0 != 0 {
        return false;
    }
    let kind = u16::from_be_bytes([data[0], data[1]]);
    let length = u16::from_be_bytes([data[2], data[3]]) as usize;
    let cookie = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
    if kind != BINDING_REQUEST || cookie != MAGIC_COOKIE || HEADER + length > data.len() {
        return false;
    }
    let mut at = HEADER;
    let mut username_ok = false;
    while at + 4 <= HEADER + length {
        let attr = u16::from_be_bytes([data[at], data[at + 1]]);
        let len = u16::from_be_bytes([data[at + 2], data[at + 3]]) as usize;
        let value = at + 4;
        if value + len > HEADER + length {
            return false;
        }
        match attr {
            ATTR_USERNAME => {
                let name = &data[value..value + len];
                username_ok = name.len() > local_ufrag.len()
                    && name.starts_with(local_ufrag.as_bytes())
                    && name[local_ufrag.len()] == b':';
            }
            ATTR_MESSAGE_INTEGRITY => {
                if !username_ok || len != 20 {
                    return false;
                }
                // The HMAC covers the message up to this attribute, with the
                // header's length as if the message ended after it.
                let mut signed = data[..at].to_vec();
                let covered = (value + len - HEADER) as u16;
                signed[2..4].copy_from_slice(&covered.to_be_bytes());
                let key =
                    hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, local_pass.as_bytes());
                return hmac::verify(&key, &signed, &data[value..value + len]).is_ok();
            }
            _ => {}
        }
        at = value + len.div_ceil(4) * 4;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binding request as an ICE agent sends one: USERNAME, then
    /// MESSAGE-INTEGRITY with `pass`, then (unsigned) a FINGERPRINT-sized
    /// attribute.
    fn request(username: &str, pass: &str) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&BINDING_REQUEST.to_be_bytes());
        m.extend_from_slice(&[0, 0]);
        m.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        m.extend_from_slice(&(username.len() as u16).to_be_bytes());
        m.extend_from_slice(username.as_bytes());
        while m.len() % 4 != 0 {
            m.push(0);
        }
        let covered = (m.len() - HEADER + 24) as u16;
        m[2..4].copy_from_slice(&covered.to_be_bytes());
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, pass.as_bytes());
        let tag = hmac::sign(&key, &m);
        m.extend_from_slice(&ATTR_MESSAGE_INTEGRITY.to_be_bytes());
        m.extend_from_slice(&20u16.to_be_bytes());
        m.extend_from_slice(tag.as_ref());
        m.extend_from_slice(&[0x80, 0x28, 0, 4, 1, 2, 3, 4]);
        let total = (m.len() - HEADER) as u16;
        m[2..4].copy_from_slice(&total.to_be_bytes());
        m
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn connected() -> Path {
        let mut path = Path::default();
        path.set_known(vec![addr("10.0.0.1:1"), addr("10.0.0.2:2")]);
        path.sent(addr("10.0.0.1:1"), &[23, 254, 253]);
        path
    }

    const PASS: &str = "secret-password";

    #[test]
    fn a_proven_request_from_a_new_address_moves_the_remote() {
        let mut path = connected();
        let check = request("mine:theirs", PASS);
        // From where we send, or from another signalled candidate: no move.
        assert_eq!(path.observe(addr("10.0.0.1:1"), &check, "mine", PASS), None);
        assert_eq!(path.observe(addr("10.0.0.2:2"), &check, "mine", PASS), None);
        assert_eq!(path.route(addr("10.0.0.1:1")), addr("10.0.0.1:1"));
        // From elsewhere: a move; str0m's destination is rewritten.
        let moved = path.observe(addr("192.0.2.9:7"), &check, "mine", PASS);
        assert_eq!(moved, Some(addr("192.0.2.9:7")));
        assert_eq!(path.route(addr("10.0.0.1:1")), addr("192.0.2.9:7"));
        assert_eq!(path.route(addr("10.0.0.2:2")), addr("10.0.0.2:2"));
        // Once more, then back at the signalled address: no redirect left.
        path.sent(addr("10.0.0.1:1"), &[23]);
        path.observe(addr("192.0.2.5:5"), &check, "mine", PASS);
        assert_eq!(path.route(addr("10.0.0.1:1")), addr("192.0.2.5:5"));
        path.observe(addr("10.0.0.1:1"), &check, "mine", PASS);
        assert_eq!(path.route(addr("10.0.0.1:1")), addr("10.0.0.1:1"));
        assert_eq!(path.changes, 3);
    }

    #[test]
    fn nothing_unproven_moves_it() {
        let mut path = connected();
        let good = request("mine:theirs", PASS);
        let forged = request("mine:theirs", "a-guess");
        let other_ufrag = request("minex:theirs", PASS);
        let mut flipped = good.clone();
        let last = flipped.len() - 9;
        flipped[last] ^= 1;
        for bad in [
            &forged,
            &other_ufrag,
            &flipped,
            &good[..19].to_vec(),
            &vec![0u8; 64],
        ] {
            assert_eq!(path.observe(addr("10.6.6.6:6"), bad, "mine", PASS), None);
        }
        // Nor a proven one from the other address family, nor anything
        // before we sent the remote anything.
        assert_eq!(path.observe(addr("[::1]:6"), &good, "mine", PASS), None);
        let mut fresh = Path::default();
        assert_eq!(fresh.observe(addr("10.6.6.6:6"), &good, "mine", PASS), None);
        assert_eq!(path.route(addr("10.0.0.1:1")), addr("10.0.0.1:1"));
        assert_eq!(path.changes, 0);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_or_move(data: Vec<u8>) {
            let mut path = connected();
            proptest::prop_assert_eq!(path.observe(addr("10.6.6.6:6"), &data, "mine", PASS), None);
        }
    }
}
