//! Media for the commands: synthetic tracks (demo) and bridges between
//! plain RTP on local UDP ports and relay tracks (offer `--rtp-in`, answer
//! `--rtp-out`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use relay_tokio::relay_proto::{
    KeyframeKind, RtpOut, SenderReport, TrackCodec, TrackMeta, TrackStats,
};
use relay_tokio::{LocalTrack, Peer, RemoteTrack};
use tokio::net::UdpSocket;

use crate::CliError;
use crate::rtp;

/// What a synthetic track sent.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sent {
    pub packets: u64,
    pub keyframes: u64,
    pub keyframe_requests: u64,
}

/// Sends `secs` of synthetic video on `track`: 30 frames/s, a keyframe
/// (8 packets) every 2 s or when the remote asks, 2 packets per other frame,
/// 1,100 bytes each.
pub async fn synthetic_video(track: &LocalTrack, secs: u64) -> Result<Sent, CliError> {
    let mut sent = Sent::default();
    let pt = track.codec().payload_type;
    let mut seq: u16 = clock_u16();
    let start = Instant::now();
    let mut frame: u64 = 0;
    let mut tick = tokio::time::interval(Duration::from_micros(33_333));
    let mut asked = false;
    while start.elapsed() < Duration::from_secs(secs) {
        tokio::select! {
            _ = tick.tick() => {}
            req = track.keyframe_request() => {
                if req.is_some() {
                    sent.keyframe_requests += 1;
                    asked = true;
                }
                continue;
            }
        }
        let key = frame.is_multiple_of(60) || std::mem::take(&mut asked);
        let n = if key { 8 } else { 2 };
        for i in 0..n {
            let payload = Bytes::from(vec![(frame % 251) as u8; 1100]);
            let ts = (frame * 3000) as u32;
            track
                .write_rtp(RtpOut::new(pt, seq, ts, i == n - 1, payload))
                .await?;
            seq = seq.wrapping_add(1);
            sent.packets += 1;
        }
        sent.keyframes += key as u64;
        frame += 1;
    }
    Ok(sent)
}

/// Sends `secs` of synthetic Opus-sized audio: a 160-byte packet every 20 ms.
pub async fn synthetic_audio(track: &LocalTrack, secs: u64) -> Result<Sent, CliError> {
    let mut sent = Sent::default();
    let pt = track.codec().payload_type;
    let mut seq: u16 = clock_u16();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < Duration::from_secs(secs) {
        tick.tick().await;
        let payload = Bytes::from(vec![(n % 251) as u8; 160]);
        track
            .write_rtp(RtpOut::new(pt, seq, (n * 960) as u32, false, payload))
            .await?;
        seq = seq.wrapping_add(1);
        sent.packets += 1;
        n += 1;
    }
    Ok(sent)
}

/// A start point for sequence numbers that differs run to run (as an
/// origin's would), without a random-number crate: the clock's nanoseconds.
fn clock_u16() -> u16 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u16)
        .unwrap_or(0)
}

/// What arrived on a remote track.
#[derive(Debug, Clone, Default)]
pub struct Received {
    pub packets: u64,
    pub bytes: u64,
    pub stats: Option<TrackStats>,
}

/// Reads a remote track to its end; asks for one keyframe `ask_after` in.
pub async fn count(track: RemoteTrack, ask_after: Option<Duration>) -> Received {
    let mut got = Received::default();
    let start = Instant::now();
    let mut asked = ask_after.is_none();
    while let Some(p) = track.read_rtp().await {
        got.packets += 1;
        got.bytes += p.payload.len() as u64;
        if !asked && ask_after.is_some_and(|d| start.elapsed() >= d) {
            asked = true;
            let _ = track.request_keyframe(KeyframeKind::Pli).await;
        }
        if got.packets % 16 == 0 {
            got.stats = track.stats().await.ok();
        }
    }
    got
}

/// `--rtp-in`: relays plain RTP arriving on `port` (RTCP on `port + 1`) as
/// a track; sender reports become the origin's reports, keyframe requests
/// go back to the source's RTCP address as PLI.
pub async fn rtp_in(
    peer: &Peer,
    bind: IpAddr,
    port: u16,
    codec: TrackCodec,
    meta: TrackMeta,
) -> Result<Arc<AtomicU64>, CliError> {
    let rtp_sock = UdpSocket::bind((bind, port))
        .await
        .map_err(|e| bind_error(bind, port, e))?;
    let rtcp_sock = Arc::new(
        UdpSocket::bind((bind, port.wrapping_add(1)))
            .await
            .map_err(|e| bind_error(bind, port.wrapping_add(1), e))?,
    );
    // Not `Clone` (dropping the handle removes the track): share it.
    let track = Arc::new(peer.add_track(meta, codec).await?);
    println!(
        "relaying RTP from {bind}:{port} (RTCP {}) as {} payload type {}",
        port.wrapping_add(1),
        track.codec().mime_type,
        track.codec().payload_type
    );
    let packets = Arc::new(AtomicU64::new(0));
    let source: Arc<std::sync::Mutex<Option<(SocketAddr, u32)>>> = Default::default();
    // Keyframe requests back to the source as PLI.
    let (kf_track, kf_sock, kf_source) = (track.clone(), rtcp_sock.clone(), source.clone());
    tokio::spawn(async move {
        while kf_track.keyframe_request().await.is_some() {
            let target = *kf_source.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((addr, ssrc)) = target {
                let _ = kf_sock.send_to(&rtp::pli(1, ssrc), addr).await;
            }
        }
    });
    // Sender reports: the origin's timing.
    let (sr_track, sr_source) = (track.clone(), source.clone());
    tokio::spawn(async move {
        let mut buf = vec![0u8; 1500];
        while let Ok((n, from)) = rtcp_sock.recv_from(&mut buf).await {
            if let Some((ssrc, ntp, rtp_time)) = rtp::parse_sender_report(&buf[..n]) {
                *sr_source.lock().unwrap_or_else(|e| e.into_inner()) = Some((from, ssrc));
                let _ = sr_track
                    .set_origin_sender_report(SenderReport { ntp, rtp: rtp_time })
                    .await;
            }
        }
    });
    let counter = packets.clone();
    tokio::spawn(async move {
        let mut warned = false;
        let mut buf = vec![0u8; 2048];
        while let Ok((n, from)) = rtp_sock.recv_from(&mut buf).await {
            let Some(p) = rtp::parse_rtp(&buf[..n]) else {
                continue;
            };
            {
                let mut s = source.lock().unwrap_or_else(|e| e.into_inner());
                if s.is_none() {
                    // Until a sender report names it, RTCP goes to port + 1.
                    *s = Some((
                        SocketAddr::new(from.ip(), from.port().wrapping_add(1)),
                        p.ssrc,
                    ));
                }
            }
            let out = RtpOut::new(
                p.payload_type,
                p.sequence_number,
                p.timestamp,
                p.marker,
                Bytes::copy_from_slice(p.payload),
            );
            match track.write_rtp(out).await {
                Ok(()) => {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                Err(relay_tokio::Error::Peer(
                    e @ relay_tokio::relay_proto::Error::PacketTooLarge { .. },
                )) => {
                    // Once: the source keeps sending them.
                    if !warned {
                        warned = true;
                        eprintln!(
                            "warning: {n}-byte RTP packets from {from} do not fit: {e}; \
                             more like it are dropped and counted"
                        );
                    }
                }
                Err(_) => break,
            }
        }
    });
    Ok(packets)
}

fn bind_error(ip: IpAddr, port: u16, e: std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::AddrInUse {
        format!("cannot bind {ip}:{port}: port in use")
    } else {
        format!("cannot bind {ip}:{port}: {e}")
    }
}

/// Reads a remote track to its end: plays it to `sink` if there is one,
/// and prints its packet count every second.
pub fn follow(track: RemoteTrack, who: String, sink: Option<RtpOutSink>, tag: String) {
    tokio::spawn(async move {
        let out = match &sink {
            Some(sink) => match sink.open(&track, &tag).await {
                Ok((sock, to, path)) => {
                    println!("{who} track {tag}: RTP to {to}, SDP in {}", path.display());
                    Some((sock, to))
                }
                Err(e) => {
                    eprintln!("{who} track {tag}: {e}");
                    None
                }
            },
            None => None,
        };
        let mut packets = 0u64;
        let mut gaps = Gaps::default();
        let mut last_print = Instant::now();
        let mut buf = Vec::with_capacity(1500);
        while let Some(p) = track.read_rtp().await {
            packets += 1;
            gaps.saw(p.extended_sequence_number);
            if packets == 1 && out.is_some() {
                // A player that starts now needs a keyframe to start from;
                // the request reaches the origin's RTCP through the offer.
                let _ = track.request_keyframe(KeyframeKind::Pli).await;
            }
            if let Some((sock, to)) = &out {
                let pkt = rtp::Rtp {
                    payload_type: p.payload_type,
                    marker: p.marker,
                    sequence_number: p.sequence_number,
                    timestamp: p.timestamp,
                    ssrc: p.ssrc,
                    extensions: Vec::new(),
                    payload: &p.payload,
                };
                rtp::write_rtp(&pkt, &mut buf);
                let _ = sock.send_to(&buf, *to).await;
            }
            if last_print.elapsed() >= Duration::from_secs(1) {
                last_print = Instant::now();
                println!("{who} track {tag}: {packets} packets");
            }
        }
        println!("{who} track {tag} ended after {packets} packets");
        if packets > 0 {
            println!("{who} track {tag}: {gaps}");
        }
    });
}

/// The sequence numbers a track never delivered between the first and the
/// last it did, as ranges (the most recent 64 are kept), the first and the
/// last, and how many packets came twice.
#[derive(Default)]
struct Gaps {
    /// The lowest number seen.
    first: Option<u64>,
    next: Option<u64>,
    /// `[start, end)` ranges, oldest first.
    missing: std::collections::VecDeque<(u64, u64)>,
    /// Ranges forgotten to stay within the bound.
    forgotten: u64,
    /// Packets delivered a second time.
    duplicates: u64,
}

impl Gaps {
    const MAX: usize = 64;

    fn saw(&mut self, seq: u64) {
        let first = *self.first.get_or_insert(seq);
        if seq < first {
            // Earlier than anything so far: what lies between is missing.
            if seq + 1 < first {
                self.missing.push_front((seq + 1, first));
                if self.missing.len() > Self::MAX {
                    self.missing.pop_back();
                    self.forgotten += 1;
                }
            }
            self.first = Some(seq);
            return;
        }
        let next = *self.next.get_or_insert(seq);
        if seq >= next {
            if seq > next {
                self.missing.push_back((next, seq));
                if self.missing.len() > Self::MAX {
                    self.missing.pop_front();
                    self.forgotten += 1;
                }
            }
            self.next = Some(seq + 1);
            return;
        }
        // Late (reordered or retransmitted): fill it in.
        if let Some(i) = self
            .missing
            .iter()
            .position(|&(a, b)| (a..b).contains(&seq))
        {
            let (a, b) = self.missing[i];
            match (seq == a, seq + 1 == b) {
                (true, true) => {
                    self.missing.remove(i);
                }
                (true, false) => self.missing[i].0 = seq + 1,
                (false, true) => self.missing[i].1 = seq,
                (false, false) => {
                    self.missing[i].1 = seq;
                    self.missing.insert(i + 1, (seq + 1, b));
                }
            }
        } else if self.forgotten == 0 {
            self.duplicates += 1;
        }
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.forgotten == 0 && self.duplicates == 0
    }

    /// The first and last numbers seen.
    fn span(&self) -> Option<(u64, u64)> {
        Some((self.first?, self.next? - 1))
    }
}

impl std::fmt::Display for Gaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total: u64 = self.missing.iter().map(|(a, b)| b - a).sum();
        if let Some((first, last)) = self.span() {
            write!(f, "sequence numbers {first} to {last}, ")?;
        }
        write!(f, "never received: {total} in {} gaps", self.missing.len())?;
        if !self.missing.is_empty() {
            write!(f, ":")?;
        }
        for (a, b) in &self.missing {
            if b - a == 1 {
                write!(f, " {a}")?;
            } else {
                write!(f, " {a}-{}", b - 1)?;
            }
        }
        if self.forgotten > 0 {
            write!(f, " (and {} older gaps)", self.forgotten)?;
        }
        if self.duplicates > 0 {
            write!(f, "; {} delivered twice", self.duplicates)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Gaps;

    #[test]
    fn gaps_fill_in_as_late_packets_arrive() {
        let mut g = Gaps::default();
        for s in [10, 11, 15, 13, 20, 12, 16, 17, 18] {
            g.saw(s);
        }
        assert_eq!(
            g.to_string(),
            "sequence numbers 10 to 20, never received: 2 in 2 gaps: 14 19"
        );
        g.saw(14);
        g.saw(19);
        assert!(g.is_empty());
        // Late packets from before the first seen open a gap of their own.
        g.saw(7);
        assert_eq!(
            g.to_string(),
            "sequence numbers 7 to 20, never received: 2 in 1 gaps: 8-9"
        );
        g.saw(8);
        g.saw(9);
        assert!(g.is_empty());
        g.saw(12);
        assert_eq!(
            g.to_string(),
            "sequence numbers 7 to 20, never received: 0 in 0 gaps; 1 delivered twice"
        );
    }
}

/// `--rtp-out`: plays received tracks as plain RTP, each to its own port
/// (`base`, `base + 2`, ...), with an SDP file per track that ffmpeg or
/// GStreamer opens.
#[derive(Clone)]
pub struct RtpOutSink {
    pub target: SocketAddr,
    pub sdp_dir: PathBuf,
    pub next: Arc<AtomicU64>,
}

impl RtpOutSink {
    /// A socket, the address and the SDP file for the next track.
    async fn open(
        &self,
        track: &RemoteTrack,
        tag: &str,
    ) -> Result<(UdpSocket, SocketAddr, PathBuf), CliError> {
        let index = self.next.fetch_add(1, Ordering::SeqCst);
        let port = self.target.port().wrapping_add((2 * index) as u16);
        let to = SocketAddr::new(self.target.ip(), port);
        let sdp = rtp::sdp(to.ip(), port, track.codec());
        let safe: String = tag
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = self.sdp_dir.join(format!("{safe}.sdp"));
        std::fs::write(&path, sdp).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let bind: SocketAddr = if to.is_ipv4() {
            "0.0.0.0:0".parse()?
        } else {
            "[::]:0".parse()?
        };
        Ok((UdpSocket::bind(bind).await?, to, path))
    }
}
