//! The out-of-band offer/answer (PROTOCOL.md A.1) and our `relay`
//! announcement extension (B.1). Offer and answer are the same object.

use bytes::Bytes;
use serde_json::Value;

use super::{
    DecodeError, Obj, check_size, parse_object, push_base64, push_json_str, push_uint, shown,
};

/// Largest offer/answer [`Signal::decode`] accepts: 64 KiB.
///
/// A real signal is well under 2 KiB; the cap bounds the work a hostile
/// signalling peer can cause.
pub const SIGNAL_MAX_SIZE: usize = 64 * 1024;

const WHAT: &str = "signal";

/// An offer or an answer: everything a peer needs to connect to us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signal {
    /// All our ICE candidates, gathered before sending (no trickle).
    pub ice_candidates: Vec<SignalCandidate>,
    /// ICE credentials.
    pub ice_parameters: IceParameters,
    /// DTLS role and certificate fingerprints.
    pub dtls_parameters: DtlsParameters,
    /// SCTP capabilities (Go sends 0 and ignores the remote's).
    pub sctp_capabilities: SctpCapabilities,
    /// Our extension announcement; `None` means a base-protocol (Go) peer.
    /// Encoded only when `Some`, so Go never sees it.
    pub relay: Option<Announcement>,
}

/// One ICE candidate, field for field as pion's `ICECandidate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalCandidate {
    /// Candidate foundation.
    pub foundation: String,
    /// Candidate priority.
    pub priority: u32,
    /// IP address (or an mDNS name, which the connection layer may refuse).
    pub address: String,
    /// Transport protocol.
    pub protocol: CandidateProtocol,
    /// Port.
    pub port: u16,
    /// Candidate type (wire key `type`).
    pub typ: CandidateType,
    /// ICE component; always 1 (RTP and RTCP share the 5-tuple).
    pub component: u16,
    /// Related address; `""` for host candidates.
    pub related_address: String,
    /// Related port.
    pub related_port: u16,
    /// TCP candidate type; `""` for UDP.
    pub tcp_type: String,
}

/// Transport protocol of a candidate. Wire: `1` udp, `2` tcp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CandidateProtocol {
    /// UDP (`1`).
    Udp,
    /// TCP (`2`).
    Tcp,
}

/// Type of a candidate. Wire: `1` host, `2` srflx, `3` prflx, `4` relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CandidateType {
    /// Host candidate (`1`).
    Host,
    /// Server reflexive (`2`).
    Srflx,
    /// Peer reflexive (`3`).
    Prflx,
    /// Relayed through TURN (`4`).
    Relay,
}

/// ICE credentials.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IceParameters {
    /// ICE ufrag.
    pub username_fragment: String,
    /// ICE password.
    pub password: String,
    /// Whether the sender is ICE-lite (Go always sends `false`).
    pub ice_lite: bool,
}

/// DTLS role and certificate fingerprints.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DtlsParameters {
    /// Advertised role (Go sends `Auto`; a track signal carries `Unset`).
    pub role: DtlsRole,
    /// Certificate fingerprints. `None` is JSON `null` (Go's nil slice, as in
    /// the track signal); `Some(vec![])` is `[]`.
    pub fingerprints: Option<Vec<DtlsFingerprint>>,
}

/// DTLS role. Wire: `0` unset, `1` auto, `2` client, `3` server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DtlsRole {
    /// Not set (`0`); the zero value, used by the track signal.
    #[default]
    Unset,
    /// Auto (`1`): the ICE role decides (PROTOCOL.md A.2).
    Auto,
    /// DTLS client (`2`).
    Client,
    /// DTLS server (`3`).
    Server,
}

/// A certificate fingerprint as carried in the signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtlsFingerprint {
    /// Hash algorithm name, e.g. `sha-256`.
    pub algorithm: String,
    /// Hex bytes joined by `:`. Kept as received; [`DtlsFingerprint::to_bytes`]
    /// validates it.
    pub value: String,
}

/// SCTP capabilities.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SctpCapabilities {
    /// Maximum message size; Go sends 0 and ignores the remote value.
    pub max_message_size: u32,
}

/// Our extension (PROTOCOL.md B.1):
/// `"relay": {"version": 1, "features": [...], "maxMessageSize": u32}`.
///
/// Its presence tells the remote that we are not a base (Go) peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// Extension protocol version; decoded as given (missing = 0).
    pub version: u32,
    /// Features we support; one is used only if both ends list it.
    pub features: Vec<String>,
    /// Largest envelope we accept from the remote, in bytes.
    pub max_message_size: u32,
    /// SCTP init data for fast setup (wire key `sctpInit`, standard base64);
    /// omitted from the wire when `None`.
    pub sctp_init: Option<Bytes>,
}

impl CandidateProtocol {
    /// The integer sent on the wire.
    pub fn wire_value(self) -> u8 {
        match self {
            Self::Udp => 1,
            Self::Tcp => 2,
        }
    }

    /// From the wire integer; `None` if unknown.
    pub fn from_wire(v: u64) -> Option<Self> {
        match v {
            1 => Some(Self::Udp),
            2 => Some(Self::Tcp),
            _ => None,
        }
    }

    /// From the name newer pion versions send (`"udp"`, `"tcp"`, any case).
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Udp, Self::Tcp]
            .into_iter()
            .find(|v| v.name().eq_ignore_ascii_case(name))
    }

    /// Lower-case name: `"udp"` or `"tcp"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
        }
    }
}

impl CandidateType {
    /// The integer sent on the wire.
    pub fn wire_value(self) -> u8 {
        match self {
            Self::Host => 1,
            Self::Srflx => 2,
            Self::Prflx => 3,
            Self::Relay => 4,
        }
    }

    /// From the wire integer; `None` if unknown.
    pub fn from_wire(v: u64) -> Option<Self> {
        match v {
            1 => Some(Self::Host),
            2 => Some(Self::Srflx),
            3 => Some(Self::Prflx),
            4 => Some(Self::Relay),
            _ => None,
        }
    }

    /// From the name newer pion versions send (`"host"`, `"srflx"`,
    /// `"prflx"`, `"relay"`, any case).
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Host, Self::Srflx, Self::Prflx, Self::Relay]
            .into_iter()
            .find(|v| v.name().eq_ignore_ascii_case(name))
    }

    /// Lower-case name as in SDP: `"host"`, `"srflx"`, `"prflx"`, `"relay"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Srflx => "srflx",
            Self::Prflx => "prflx",
            Self::Relay => "relay",
        }
    }
}

impl DtlsRole {
    /// The integer sent on the wire.
    pub fn wire_value(self) -> u8 {
        match self {
            Self::Unset => 0,
            Self::Auto => 1,
            Self::Client => 2,
            Self::Server => 3,
        }
    }

    /// From the wire integer; `None` if unknown.
    pub fn from_wire(v: u64) -> Option<Self> {
        match v {
            0 => Some(Self::Unset),
            1 => Some(Self::Auto),
            2 => Some(Self::Client),
            3 => Some(Self::Server),
            _ => None,
        }
    }

    /// From the names newer pion versions send (`"auto"`, `"client"`,
    /// `"server"`, any case). There is no name for `Unset`.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Auto, Self::Client, Self::Server]
            .into_iter()
            .find(|v| v.name().eq_ignore_ascii_case(name))
    }

    /// Lower-case name: `"unset"`, `"auto"`, `"client"` or `"server"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Unset => "unset",
            Self::Auto => "auto",
            Self::Client => "client",
            Self::Server => "server",
        }
    }
}

impl DtlsFingerprint {
    /// Parses `"aa:bb:..."` (case-insensitive hex pairs joined by `:`) into
    /// bytes. Fails on an empty value, an odd digit count or a non-hex digit,
    /// so a bad fingerprint is an error, never a silent mismatch.
    pub fn to_bytes(&self) -> Result<Vec<u8>, DecodeError> {
        let invalid = |detail: String| DecodeError::Invalid {
            what: "fingerprint",
            detail,
        };
        if self.value.is_empty() {
            return Err(invalid("empty value".to_owned()));
        }
        self.value
            .split(':')
            .enumerate()
            .map(|(i, pair)| match pair.as_bytes() {
                [hi, lo] => match (hex_digit(*hi), hex_digit(*lo)) {
                    (Some(hi), Some(lo)) => Ok(hi << 4 | lo),
                    _ => Err(invalid(format!("byte {i} ({}) is not hex", shown(pair)))),
                },
                _ => Err(invalid(format!(
                    "byte {i} ({}) is not two hex digits in {}",
                    shown(pair),
                    shown(&self.value)
                ))),
            })
            .collect()
    }

    /// Builds a fingerprint with lower-case hex joined by `:`, as Go sends.
    pub fn from_bytes(algorithm: &str, bytes: &[u8]) -> DtlsFingerprint {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut value = String::with_capacity(bytes.len() * 3);
        for (i, b) in bytes.iter().enumerate() {
            if i > 0 {
                value.push(':');
            }
            value.push(char::from(HEX[usize::from(b >> 4)]));
            value.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        DtlsFingerprint {
            algorithm: algorithm.to_owned(),
            value,
        }
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl Signal {
    /// Encodes as Go does: keys `iceCandidates`, `iceParameters`,
    /// `dtlsParameters`, `sctpCapabilities` (then `relay` only when `Some`),
    /// integers for enums, no whitespace.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::with_capacity(512 + 256 * self.ice_candidates.len());
        out.push_str("{\"iceCandidates\":[");
        for (i, c) in self.ice_candidates.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_candidate(&mut out, c);
        }
        out.push_str("],\"iceParameters\":");
        write_ice(&mut out, &self.ice_parameters);
        out.push_str(",\"dtlsParameters\":");
        write_dtls(&mut out, &self.dtls_parameters);
        out.push_str(",\"sctpCapabilities\":{\"maxMessageSize\":");
        push_uint(&mut out, self.sctp_capabilities.max_message_size);
        out.push('}');
        if let Some(relay) = &self.relay {
            out.push_str(",\"relay\":");
            write_announcement(&mut out, relay);
        }
        out.push('}');
        out.into_bytes()
    }

    /// Decodes an offer or answer.
    ///
    /// Unknown keys are ignored (including `encodings` and `trackInfo`); a
    /// missing or `null` key takes its zero value, except a candidate's
    /// `protocol` and `type`, which have none. Enums accept integers or
    /// names. Inputs over [`SIGNAL_MAX_SIZE`] are refused unparsed.
    pub fn decode(bytes: &[u8]) -> Result<Signal, DecodeError> {
        check_size(WHAT, bytes, SIGNAL_MAX_SIZE)?;
        let root = parse_object(WHAT, bytes)?;
        let ice_candidates = root
            .object_array("iceCandidates")?
            .unwrap_or_default()
            .iter()
            .map(read_candidate)
            .collect::<Result<_, _>>()?;
        let sctp_capabilities = match root.object("sctpCapabilities")? {
            Some(o) => SctpCapabilities {
                max_message_size: o.uint("maxMessageSize")?,
            },
            None => SctpCapabilities::default(),
        };
        let relay = match root.object("relay")? {
            Some(o) => Some(read_announcement(&o)?),
            None => None,
        };
        Ok(Signal {
            ice_candidates,
            ice_parameters: read_ice(&root)?,
            dtls_parameters: read_dtls(&root)?,
            sctp_capabilities,
            relay,
        })
    }
}

fn write_candidate(out: &mut String, c: &SignalCandidate) {
    out.push_str("{\"foundation\":");
    push_json_str(out, &c.foundation);
    out.push_str(",\"priority\":");
    push_uint(out, c.priority);
    out.push_str(",\"address\":");
    push_json_str(out, &c.address);
    out.push_str(",\"protocol\":");
    push_uint(out, c.protocol.wire_value());
    out.push_str(",\"port\":");
    push_uint(out, c.port);
    out.push_str(",\"type\":");
    push_uint(out, c.typ.wire_value());
    out.push_str(",\"component\":");
    push_uint(out, c.component);
    out.push_str(",\"relatedAddress\":");
    push_json_str(out, &c.related_address);
    out.push_str(",\"relatedPort\":");
    push_uint(out, c.related_port);
    out.push_str(",\"tcpType\":");
    push_json_str(out, &c.tcp_type);
    out.push('}');
}

/// Writes the `iceParameters` object (shared with the track signal).
pub(super) fn write_ice(out: &mut String, p: &IceParameters) {
    out.push_str("{\"usernameFragment\":");
    push_json_str(out, &p.username_fragment);
    out.push_str(",\"password\":");
    push_json_str(out, &p.password);
    out.push_str(if p.ice_lite {
        ",\"iceLite\":true}"
    } else {
        ",\"iceLite\":false}"
    });
}

/// Writes the `dtlsParameters` object (shared with the track signal).
pub(super) fn write_dtls(out: &mut String, p: &DtlsParameters) {
    out.push_str("{\"role\":");
    push_uint(out, p.role.wire_value());
    out.push_str(",\"fingerprints\":");
    match &p.fingerprints {
        None => out.push_str("null"),
        Some(fps) => {
            out.push('[');
            for (i, fp) in fps.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"algorithm\":");
                push_json_str(out, &fp.algorithm);
                out.push_str(",\"value\":");
                push_json_str(out, &fp.value);
                out.push('}');
            }
            out.push(']');
        }
    }
    out.push('}');
}

fn write_announcement(out: &mut String, a: &Announcement) {
    out.push_str("{\"version\":");
    push_uint(out, a.version);
    out.push_str(",\"features\":[");
    for (i, f) in a.features.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_str(out, f);
    }
    out.push_str("],\"maxMessageSize\":");
    push_uint(out, a.max_message_size);
    if let Some(init) = &a.sctp_init {
        out.push_str(",\"sctpInit\":");
        push_base64(out, init);
    }
    out.push('}');
}

fn read_candidate(o: &Obj<'_>) -> Result<SignalCandidate, DecodeError> {
    Ok(SignalCandidate {
        foundation: o.string("foundation")?,
        priority: o.uint("priority")?,
        address: o.string("address")?,
        protocol: wire_enum(
            o,
            "protocol",
            "candidate protocol",
            CandidateProtocol::from_wire,
            CandidateProtocol::from_name,
            None,
        )?,
        port: o.uint("port")?,
        typ: wire_enum(
            o,
            "type",
            "candidate type",
            CandidateType::from_wire,
            CandidateType::from_name,
            None,
        )?,
        component: o.uint("component")?,
        related_address: o.string("relatedAddress")?,
        related_port: o.uint("relatedPort")?,
        tcp_type: o.string("tcpType")?,
    })
}

/// Reads `parent.iceParameters`; zero values when missing or `null`.
pub(super) fn read_ice(parent: &Obj<'_>) -> Result<IceParameters, DecodeError> {
    let Some(o) = parent.object("iceParameters")? else {
        return Ok(IceParameters::default());
    };
    Ok(IceParameters {
        username_fragment: o.string("usernameFragment")?,
        password: o.string("password")?,
        ice_lite: o.boolean("iceLite")?,
    })
}

/// Reads `parent.dtlsParameters`; zero values when missing or `null`.
pub(super) fn read_dtls(parent: &Obj<'_>) -> Result<DtlsParameters, DecodeError> {
    let Some(o) = parent.object("dtlsParameters")? else {
        return Ok(DtlsParameters::default());
    };
    let role = wire_enum(
        &o,
        "role",
        "DTLS role",
        DtlsRole::from_wire,
        DtlsRole::from_name,
        Some(DtlsRole::Unset),
    )?;
    let fingerprints = match o.object_array("fingerprints")? {
        None => None,
        Some(items) => Some(
            items
                .iter()
                .map(|f| {
                    Ok(DtlsFingerprint {
                        algorithm: f.string("algorithm")?,
                        value: f.string("value")?,
                    })
                })
                .collect::<Result<_, DecodeError>>()?,
        ),
    };
    Ok(DtlsParameters { role, fingerprints })
}

fn read_announcement(o: &Obj<'_>) -> Result<Announcement, DecodeError> {
    Ok(Announcement {
        version: o.uint("version")?,
        features: o.string_array("features")?,
        max_message_size: o.uint("maxMessageSize")?,
        sctp_init: o.base64("sctpInit")?,
    })
}

/// Reads an enum sent as an integer (pion v3) or a name (newer pion).
/// `missing` is the zero value, if the enum has one.
fn wire_enum<T>(
    o: &Obj<'_>,
    key: &str,
    name: &str,
    from_wire: fn(u64) -> Option<T>,
    from_name: fn(&str) -> Option<T>,
    missing: Option<T>,
) -> Result<T, DecodeError> {
    match o.get(key) {
        None => missing.ok_or_else(|| o.malformed(key, format_args!("required {name} is missing"))),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(from_wire)
            .ok_or_else(|| o.invalid(key, format_args!("unknown {name} {n}"))),
        Some(Value::String(s)) => {
            from_name(s).ok_or_else(|| o.invalid(key, format_args!("unknown {name} {}", shown(s))))
        }
        Some(other) => Err(o.malformed(
            key,
            format_args!(
                "expected an integer or a string, got {}",
                super::kind(other)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_wire_values_round_trip() {
        for p in [CandidateProtocol::Udp, CandidateProtocol::Tcp] {
            assert_eq!(CandidateProtocol::from_wire(p.wire_value().into()), Some(p));
            assert_eq!(
                CandidateProtocol::from_name(&p.name().to_uppercase()),
                Some(p)
            );
        }
        for t in [
            CandidateType::Host,
            CandidateType::Srflx,
            CandidateType::Prflx,
            CandidateType::Relay,
        ] {
            assert_eq!(CandidateType::from_wire(t.wire_value().into()), Some(t));
            assert_eq!(CandidateType::from_name(t.name()), Some(t));
        }
        for r in [
            DtlsRole::Unset,
            DtlsRole::Auto,
            DtlsRole::Client,
            DtlsRole::Server,
        ] {
            assert_eq!(DtlsRole::from_wire(r.wire_value().into()), Some(r));
        }
        assert_eq!(CandidateType::from_wire(0), None);
        assert_eq!(CandidateType::from_wire(5), None);
        assert_eq!(DtlsRole::from_name("unset"), None);
        assert_eq!(DtlsRole::from_name("Server"), Some(DtlsRole::Server));
    }

    #[test]
    fn fingerprint_parsing() {
        let fp = |v: &str| DtlsFingerprint {
            algorithm: "sha-256".into(),
            value: v.into(),
        };
        assert_eq!(fp("00:aB:FF").to_bytes().unwrap(), vec![0, 0xab, 0xff]);
        for bad in [
            "", "a", "abc", "aa:", ":aa", "aa::bb", "aa:bg", "aab:b", "aa bb", "é:aa",
        ] {
            assert!(
                matches!(fp(bad).to_bytes(), Err(DecodeError::Invalid { .. })),
                "{bad:?} accepted"
            );
        }
        let f = DtlsFingerprint::from_bytes("sha-256", &[0x0f, 0xa0, 0xff]);
        assert_eq!(f.value, "0f:a0:ff");
        assert_eq!(f.algorithm, "sha-256");
        assert_eq!(f.to_bytes().unwrap(), vec![0x0f, 0xa0, 0xff]);
    }

    #[test]
    fn missing_candidate_type_is_malformed() {
        let err = Signal::decode(br#"{"iceCandidates":[{"protocol":1}]}"#).unwrap_err();
        assert!(matches!(err, DecodeError::Malformed { .. }), "{err}");
        assert!(err.to_string().contains("iceCandidates[0].type"), "{err}");
    }

    #[test]
    fn error_names_the_path() {
        let err = Signal::decode(br#"{"iceCandidates":[{"protocol":1,"type":1,"port":70000}]}"#)
            .unwrap_err();
        assert!(matches!(err, DecodeError::Invalid { .. }), "{err}");
        assert!(err.to_string().contains("iceCandidates[0].port"), "{err}");
    }
}
