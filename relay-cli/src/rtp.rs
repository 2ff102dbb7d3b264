//! Plain RTP and RTCP on local UDP ports, for bridging ffmpeg or GStreamer
//! into and out of the relay: just enough of RFC 3550 and RFC 4585.

/// The fields of one RTP packet the relay forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rtp<'a> {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence_number: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// Header extension elements (RFC 8285 one- or two-byte form), by id.
    pub extensions: Vec<(u8, &'a [u8])>,
    pub payload: &'a [u8],
}

/// Parses an RTP packet; `None` for anything else (RTCP, garbage).
pub fn parse_rtp(buf: &[u8]) -> Option<Rtp<'_>> {
    if buf.len() < 12 || buf[0] >> 6 != 2 {
        return None;
    }
    let padding = buf[0] & 0x20 != 0;
    let has_ext = buf[0] & 0x10 != 0;
    let csrcs = (buf[0] & 0x0f) as usize;
    let pt = buf[1] & 0x7f;
    // 72..=76 with the marker bit are RTCP SR/RR/SDES/BYE/APP under mux.
    if (64..=95).contains(&pt) {
        return None;
    }
    let mut at = 12 + 4 * csrcs;
    let mut extensions = Vec::new();
    if has_ext {
        let head = buf.get(at..at + 4)?;
        let profile = u16::from_be_bytes([head[0], head[1]]);
        let words = u16::from_be_bytes([head[2], head[3]]) as usize;
        let body = buf.get(at + 4..at + 4 + 4 * words)?;
        extensions = parse_extensions(profile, body);
        at += 4 + 4 * words;
    }
    let mut end = buf.len();
    if padding {
        let pad = *buf.last()? as usize;
        if pad == 0 || pad > end - at {
            return None;
        }
        end -= pad;
    }
    Some(Rtp {
        payload_type: pt,
        marker: buf[1] & 0x80 != 0,
        sequence_number: u16::from_be_bytes([buf[2], buf[3]]),
        timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
        ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
        extensions,
        payload: buf.get(at..end)?,
    })
}

fn parse_extensions(profile: u16, mut body: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    let two_byte = profile & 0xfff0 == 0x1000;
    if profile != 0xBEDE && !two_byte {
        return out;
    }
    while let Some(&first) = body.first() {
        if first == 0 {
            body = &body[1..];
            continue;
        }
        let (id, len, head) = if two_byte {
            match body.get(1) {
                Some(&l) => (first, l as usize, 2),
                None => break,
            }
        } else {
            let id = first >> 4;
            if id == 15 {
                break;
            }
            (id, (first & 0x0f) as usize + 1, 1)
        };
        let Some(value) = body.get(head..head + len) else {
            break;
        };
        out.push((id, value));
        body = &body[head + len..];
    }
    out
}

/// Serialises an RTP packet (no CSRCs; extensions in the one-byte form
/// when every value fits it, else the two-byte form).
pub fn write_rtp(p: &Rtp<'_>, out: &mut Vec<u8>) {
    out.clear();
    let has_ext = !p.extensions.is_empty();
    out.push(0x80 | if has_ext { 0x10 } else { 0 });
    out.push((p.marker as u8) << 7 | (p.payload_type & 0x7f));
    out.extend_from_slice(&p.sequence_number.to_be_bytes());
    out.extend_from_slice(&p.timestamp.to_be_bytes());
    out.extend_from_slice(&p.ssrc.to_be_bytes());
    if has_ext {
        let one_byte = p
            .extensions
            .iter()
            .all(|(id, v)| (1..=14).contains(id) && (1..=16).contains(&v.len()));
        let start = out.len();
        out.extend_from_slice(if one_byte {
            &[0xBE, 0xDE]
        } else {
            &[0x10, 0x00]
        });
        out.extend_from_slice(&[0, 0]);
        for (id, v) in &p.extensions {
            if one_byte {
                out.push(id << 4 | (v.len() as u8 - 1));
            } else {
                out.push(*id);
                out.push(v.len().min(255) as u8);
            }
            out.extend_from_slice(&v[..v.len().min(255)]);
        }
        while !(out.len() - start - 4).is_multiple_of(4) {
            out.push(0);
        }
        let words = ((out.len() - start - 4) / 4) as u16;
        out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
    }
    out.extend_from_slice(p.payload);
}

/// A sender report's timing: (SSRC, NTP time, RTP time), from the first SR
/// in a compound RTCP packet.
pub fn parse_sender_report(buf: &[u8]) -> Option<(u32, u64, u32)> {
    let mut rest = buf;
    while rest.len() >= 4 {
        let words = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        let len = 4 * (words + 1);
        let packet = rest.get(..len)?;
        if rest[0] >> 6 == 2 && rest[1] == 200 && packet.len() >= 20 {
            let ssrc = u32::from_be_bytes(packet[4..8].try_into().ok()?);
            let ntp = u64::from_be_bytes(packet[8..16].try_into().ok()?);
            let rtp = u32::from_be_bytes(packet[16..20].try_into().ok()?);
            return Some((ssrc, ntp, rtp));
        }
        rest = &rest[len..];
    }
    None
}

/// An RTCP Picture Loss Indication (RFC 4585: PSFB, FMT 1).
pub fn pli(sender_ssrc: u32, media_ssrc: u32) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[0] = 0x80 | 1;
    b[1] = 206;
    b[2..4].copy_from_slice(&2u16.to_be_bytes());
    b[4..8].copy_from_slice(&sender_ssrc.to_be_bytes());
    b[8..12].copy_from_slice(&media_ssrc.to_be_bytes());
    b
}

/// An SDP that ffmpeg or GStreamer opens to receive one track on `port`.
pub fn sdp(host: std::net::IpAddr, port: u16, codec: &relay_proto::TrackCodec) -> String {
    let kind = match codec.kind() {
        Some(relay_proto::TrackKind::Audio) => "audio",
        _ => "video",
    };
    let name = codec
        .mime_type
        .split_once('/')
        .map_or(codec.mime_type.as_str(), |(_, n)| n);
    let ip = if host.is_ipv4() { "IP4" } else { "IP6" };
    let mut s = format!(
        "v=0\r\no=- 0 0 IN {ip} {host}\r\ns=relay\r\nc=IN {ip} {host}\r\nt=0 0\r\nm={kind} {port} RTP/AVP {pt}\r\na=rtpmap:{pt} {name}/{rate}",
        pt = codec.payload_type,
        rate = codec.clock_rate,
    );
    if codec.channels > 1 {
        s.push_str(&format!("/{}", codec.channels));
    }
    s.push_str("\r\n");
    if !codec.fmtp_line.is_empty() {
        s.push_str(&format!(
            "a=fmtp:{} {}\r\n",
            codec.payload_type, codec.fmtp_line
        ));
    }
    s.push_str("a=recvonly\r\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_round_trips_with_extensions() {
        let payload = [9u8; 30];
        for exts in [
            vec![],
            vec![(1u8, &[0x80u8][..]), (3, &[1, 2, 3][..])],
            vec![(1u8, &[7u8; 20][..])],
        ] {
            let p = Rtp {
                payload_type: 96,
                marker: true,
                sequence_number: 65_530,
                timestamp: 123_456,
                ssrc: 0xdead_beef,
                extensions: exts.clone(),
                payload: &payload,
            };
            let mut buf = Vec::new();
            write_rtp(&p, &mut buf);
            assert_eq!(parse_rtp(&buf), Some(p));
        }
    }

    #[test]
    fn rtcp_and_garbage_are_not_rtp() {
        assert_eq!(parse_rtp(&pli(1, 2)), None);
        assert_eq!(parse_rtp(&[0x80, 200, 0, 6]), None);
        assert_eq!(parse_rtp(&[0u8; 40]), None);
        // Padding longer than the packet.
        let mut b = vec![0xA0, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 5];
        b.push(200);
        assert_eq!(parse_rtp(&b), None);
    }

    #[test]
    fn sender_report_is_found_in_a_compound_packet() {
        let mut sr = vec![0x80, 200, 0, 6];
        sr.extend_from_slice(&7u32.to_be_bytes());
        sr.extend_from_slice(&(0x1122_3344_5566_7788u64).to_be_bytes());
        sr.extend_from_slice(&99u32.to_be_bytes());
        sr.extend_from_slice(&[0; 8]);
        let mut compound = vec![0x80, 201, 0, 1, 0, 0, 0, 1];
        compound.extend_from_slice(&sr);
        assert_eq!(
            parse_sender_report(&compound),
            Some((7, 0x1122_3344_5566_7788, 99))
        );
        assert_eq!(parse_sender_report(&[0x80, 200, 0, 60]), None);
    }

    #[test]
    fn sdp_names_the_codec() {
        let s = sdp(
            "127.0.0.1".parse().unwrap(),
            5004,
            &relay_proto::TrackCodec::h264(102),
        );
        assert!(s.contains("m=video 5004 RTP/AVP 102"));
        assert!(s.contains("a=rtpmap:102 H264/90000"));
        assert!(s.contains("a=fmtp:102 level-asymmetry-allowed=1"));
        let o = sdp(
            "127.0.0.1".parse().unwrap(),
            5006,
            &relay_proto::TrackCodec::opus(111),
        );
        assert!(o.contains("m=audio 5006 RTP/AVP 111") && o.contains("opus/48000/2"));
    }
}
