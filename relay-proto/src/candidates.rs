//! Mapping between the wire's candidates and fingerprints and str0m's.

use std::net::{IpAddr, SocketAddr};

use str0m::config::Fingerprint;
use str0m::net::Protocol;
use str0m::{Candidate, CandidateKind};

use crate::error::Error;
use crate::wire::{CandidateProtocol, CandidateType, DtlsFingerprint, SignalCandidate};

/// The wire form of one of our local candidates (as str0m returned it, with
/// its computed priority).
pub(crate) fn to_wire(c: &Candidate) -> SignalCandidate {
    let addr = c.addr();
    let typ = match c.kind() {
        CandidateKind::Host => CandidateType::Host,
        CandidateKind::ServerReflexive => CandidateType::Srflx,
        CandidateKind::PeerReflexive => CandidateType::Prflx,
        CandidateKind::Relayed => CandidateType::Relay,
    };
    let (related_address, related_port) = match typ {
        CandidateType::Host => (String::new(), 0),
        _ => (c.local().ip().to_string(), c.local().port()),
    };
    SignalCandidate {
        foundation: foundation_of(c),
        priority: c.prio(),
        address: addr.ip().to_string(),
        protocol: CandidateProtocol::Udp,
        port: addr.port(),
        typ,
        component: 1,
        related_address,
        related_port,
        tcp_type: String::new(),
    }
}

/// str0m keeps the foundation to itself; its SDP form starts with it.
fn foundation_of(c: &Candidate) -> String {
    let sdp = c.to_sdp_string();
    sdp.strip_prefix("candidate:")
        .and_then(|rest| rest.split(' ').next())
        .filter(|f| !f.is_empty())
        .unwrap_or("1")
        .to_string()
}

/// A remote candidate for str0m, or why it cannot be used.
pub(crate) fn from_wire(c: &SignalCandidate) -> Result<Candidate, String> {
    if c.protocol != CandidateProtocol::Udp {
        return Err(format!("{}: only UDP candidates are supported", c.address));
    }
    let ip: IpAddr = c.address.parse().map_err(|_| {
        format!(
            "{:?} is not an IP address (mDNS names are not supported)",
            c.address
        )
    })?;
    if c.port == 0 {
        return Err(format!("{}: port 0", c.address));
    }
    let addr = SocketAddr::new(ip, c.port);
    let kind = match c.typ {
        CandidateType::Host => CandidateKind::Host,
        CandidateType::Srflx => CandidateKind::ServerReflexive,
        CandidateType::Prflx => CandidateKind::PeerReflexive,
        CandidateType::Relay => CandidateKind::Relayed,
    };
    let raddr = match (c.related_address.parse::<IpAddr>(), kind) {
        (_, CandidateKind::Host) => None,
        (Ok(rip), _) => Some(SocketAddr::new(rip, c.related_port)),
        (Err(_), _) => None,
    };
    let foundation = if c.foundation.is_empty() {
        "1".to_string()
    } else {
        c.foundation.clone()
    };
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(format!("{ip}: not a unicast address"));
    }
    Ok(Candidate::from_parts(
        foundation,
        1,
        Protocol::Udp,
        c.priority,
        addr,
        kind,
        raddr,
        None,
        None,
    ))
}

/// The remote fingerprint str0m should verify: the first `sha-256` one, else
/// the first one whose algorithm str0m knows.
pub(crate) fn fingerprint_from_wire(fps: Option<&[DtlsFingerprint]>) -> Result<Fingerprint, Error> {
    let fps = fps.unwrap_or(&[]);
    let chosen = fps
        .iter()
        .find(|f| f.algorithm.eq_ignore_ascii_case("sha-256"))
        .or_else(|| {
            fps.iter()
                .find(|f| f.algorithm.eq_ignore_ascii_case("sha-1"))
        })
        .ok_or_else(|| {
            Error::UnusableSignal(if fps.is_empty() {
                "no DTLS fingerprint".into()
            } else {
                "no DTLS fingerprint with a supported algorithm (sha-256, sha-1)".into()
            })
        })?;
    let bytes = chosen.to_bytes()?;
    let expected = if chosen.algorithm.eq_ignore_ascii_case("sha-256") {
        32
    } else {
        20
    };
    if bytes.len() != expected {
        return Err(Error::UnusableSignal(format!(
            "{} fingerprint has {} bytes, expected {expected}",
            chosen.algorithm,
            bytes.len()
        )));
    }
    Ok(Fingerprint {
        hash_func: chosen.algorithm.to_ascii_lowercase(),
        bytes,
    })
}

/// Our fingerprint in wire form (lower-case hex, as Go sends it).
pub(crate) fn fingerprint_to_wire(fp: &Fingerprint) -> DtlsFingerprint {
    DtlsFingerprint::from_bytes(&fp.hash_func, &fp.bytes)
}
