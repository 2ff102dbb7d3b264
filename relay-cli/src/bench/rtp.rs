//! One-way RTP throughput between two of our peers on loopback UDP: the
//! highest paced rate delivered with at most 0.1 % loss, counted at the
//! receiver, and the CPU it costs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use relay_tokio::{LocalTrack, RtpOut, TrackCodec, TrackMeta};

use super::pairs::{self, Pair};
use super::sys;
use crate::CliError;

/// Most loss a rate may show and still count as delivered.
pub const MAX_LOSS: f64 = 0.001;

/// What the receiving application counts: packets whose sequence number
/// (extended, as the sender numbers them from 0) falls in the current
/// trial's range, so stragglers of an earlier trial never count for a later
/// one.
#[derive(Default)]
struct Counter {
    lo: AtomicU64,
    hi: AtomicU64,
    in_range: AtomicU64,
}

/// A pair with one video track from the offerer to the answerer, whose
/// packets are counted as the answerer's application reads them.
pub struct Link {
    pair: Pair,
    track: LocalTrack,
    counter: Arc<Counter>,
    /// The next packet's number (its sequence number is the low 16 bits).
    next: u64,
    timestamp: u32,
    payload: Bytes,
}

/// One paced run at a fixed rate.
#[derive(Debug, Clone, Copy)]
pub struct Trial {
    /// Packets per second asked of the sender.
    pub rate: f64,
    pub window: Duration,
    /// Packets the schedule called for (`rate × window`).
    pub offered: u64,
    /// Packets the sender managed to hand to the peer (fewer when
    /// `write_rtp` held it back).
    pub written: u64,
    /// Packets of this trial read by the receiving application.
    pub received: u64,
    /// CPU seconds of the whole process (both peers, the pacing sender and
    /// the counting reader) from the first write to the end of the drain.
    pub cpu_s: f64,
    /// Datagrams the kernel dropped on full receive buffers meanwhile (all
    /// sockets of the machine's network namespace).
    pub rcvbuf_drops: u64,
}

impl Trial {
    /// Fraction of the offered packets that were not received.
    pub fn loss(&self) -> f64 {
        if self.offered == 0 {
            return 1.0;
        }
        (1.0 - self.received as f64 / self.offered as f64).max(0.0)
    }

    pub fn passed(&self) -> bool {
        self.loss() <= MAX_LOSS
    }

    /// Received packets per second of window.
    pub fn received_per_s(&self) -> f64 {
        self.received as f64 / self.window.as_secs_f64().max(1e-9)
    }

    /// CPU microseconds per received packet.
    pub fn cpu_us_per_packet(&self) -> f64 {
        self.cpu_s * 1e6 / self.received.max(1) as f64
    }
}

impl Link {
    /// Connects a pair and adds a VP8 track (payload type 96) carrying
    /// `payload`-byte packets.
    pub async fn open(payload: usize) -> Result<Link, CliError> {
        let counter = Arc::new(Counter::default());
        let reader_counter = counter.clone();
        let pair = pairs::connect(0, move |answerer| {
            answerer.on_track(move |track| {
                let counter = reader_counter.clone();
                tokio::spawn(async move {
                    // Extended sequence number minus the sender's number.
                    let mut offset = None;
                    while let Some(packet) = track.read_rtp().await {
                        let ext = packet.extended_sequence_number;
                        // The first packets are numbered below 65,536, so
                        // their 16-bit number is the sender's number.
                        let base = *offset.get_or_insert(ext - u64::from(packet.sequence_number));
                        let n = ext - base;
                        if (counter.lo.load(Ordering::Relaxed)..counter.hi.load(Ordering::Relaxed))
                            .contains(&n)
                        {
                            counter.in_range.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            });
        })
        .await?;
        let track = pair
            .offerer
            .add_track(TrackMeta::new("bench", "bench-video"), TrackCodec::vp8(96))
            .await?;
        // A VP8 payload descriptor (S=1, partition 0), then filler.
        let mut body = vec![0u8; payload];
        if let Some(first) = body.first_mut() {
            *first = 0x10;
        }
        let mut link = Link {
            pair,
            track,
            counter,
            next: 0,
            timestamp: 0,
            payload: Bytes::from(body),
        };
        // Let the remote's track exist before counting anything.
        link.trial(1_000.0, Duration::from_millis(200)).await?;
        Ok(link)
    }

    /// Sends at `rate` packets/s for `window` (in 1 ms steps, each writing
    /// what the schedule owes), then waits for stragglers and counts what
    /// the receiver read of this trial's packets.
    pub async fn trial(&mut self, rate: f64, window: Duration) -> Result<Trial, CliError> {
        let offered = (rate * window.as_secs_f64()).round() as u64;
        let c = &self.counter;
        c.hi.store(0, Ordering::Relaxed);
        c.in_range.store(0, Ordering::Relaxed);
        c.lo.store(self.next, Ordering::Relaxed);
        c.hi.store(self.next + offered, Ordering::Relaxed);
        let cpu_before = sys::cpu_seconds().ok_or("cannot read /proc/self/stat")?;
        let drops_before = sys::udp_rcvbuf_errors().unwrap_or(0);
        let started = Instant::now();
        let ts_step = (90_000.0 / rate).max(1.0) as u32;
        let mut written = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while written < offered {
            tick.tick().await;
            let elapsed = started.elapsed();
            if elapsed > window + Duration::from_millis(50) {
                break; // the sender fell behind; the rest counts as lost
            }
            let due = ((rate * elapsed.as_secs_f64()) as u64).min(offered);
            while written < due {
                self.timestamp = self.timestamp.wrapping_add(ts_step);
                let packet = RtpOut::new(
                    96,
                    self.next as u16,
                    self.timestamp,
                    false,
                    self.payload.clone(),
                );
                self.track.write_rtp(packet).await?;
                self.next += 1;
                written += 1;
            }
        }
        // Numbers the sender never used are not skipped: the next trial
        // goes on from the last one written. A gap of over 32,768 sequence
        // numbers (a fast trial the sender fell far behind on) would leave
        // the receiver's rollover count, and with it SRTP and the extended
        // numbers this counter uses, a multiple of 65,536 off.
        // Drain: until all arrived, or nothing new for 200 ms (at most 2 s).
        let drain_until = Instant::now() + Duration::from_secs(2);
        let mut last = c.in_range.load(Ordering::Relaxed);
        while Instant::now() < drain_until && last < written {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = c.in_range.load(Ordering::Relaxed);
            if now == last {
                break;
            }
            last = now;
        }
        let cpu_after = sys::cpu_seconds().ok_or("cannot read /proc/self/stat")?;
        Ok(Trial {
            rate,
            window,
            offered,
            written,
            received: c.in_range.load(Ordering::Relaxed).min(offered),
            cpu_s: cpu_after - cpu_before,
            rcvbuf_drops: sys::udp_rcvbuf_errors()
                .unwrap_or(0)
                .saturating_sub(drops_before),
        })
    }

    /// Where packets went: both peers' counters and the sending track's.
    pub async fn counters(&self) -> String {
        let (o, a) = (
            self.pair.offerer.stats().await,
            self.pair.answerer.stats().await,
        );
        let sent = self.track.stats().await.map_or_else(
            |e| format!("({e})"),
            |t| format!("{} packets, {} NACKs", t.packets, t.nacks),
        );
        format!(
            "rtp counters: sending track {sent}; offerer {} datagrams out, {} RTP writes refused, \
             {} datagrams dropped; answerer {} datagrams in, {} dropped (datagram queue), \
             {} RTP packets dropped (track queue), {} bad datagrams",
            o.core.datagrams_out,
            o.rtp_writes_failed,
            o.datagrams_dropped,
            a.core.datagrams_in,
            a.datagrams_dropped,
            a.rtp_packets_dropped,
            a.core.drops.bad_datagrams,
        )
    }

    pub async fn close(self) {
        let _ = self.track.remove().await;
        self.pair.close().await;
    }
}

/// The search and its confirmation.
pub struct Throughput {
    /// Every paced run, in order.
    pub trials: Vec<Trial>,
    /// The confirmation run at the highest rate that held a full window;
    /// `None` only when not even [`FLOOR`] packets/s did.
    pub best: Option<Trial>,
    /// Confirmations that failed before one held (each 10 % lower).
    pub steps: usize,
}

/// The lowest rate the search tries before it gives up.
pub const FLOOR: f64 = 100.0;

/// Rates go up by half until one loses more than [`MAX_LOSS`] over a
/// `probe` window (or `ceiling` is passed), then a bisection narrows it to
/// 5 %, then the highest passing rate is confirmed over `window`; a failed
/// confirmation steps down by 10 % and confirms again, until a window holds
/// (or the rate falls under [`FLOOR`]).
pub async fn search(
    link: &mut Link,
    start: f64,
    ceiling: f64,
    probe: Duration,
    window: Duration,
) -> Result<Throughput, CliError> {
    let mut trials = Vec::new();
    let mut pass = 0.0f64;
    let mut fail = f64::INFINITY;
    let mut rate = start;
    // Up (or down, if the start already loses).
    loop {
        let t = link.trial(rate, probe).await?;
        trials.push(t);
        if t.passed() {
            pass = rate;
            if rate >= ceiling || fail.is_finite() {
                break;
            }
            rate *= 1.5;
        } else {
            fail = rate;
            if pass > 0.0 || rate < FLOOR * 2.0 {
                break;
            }
            rate /= 2.0;
        }
    }
    // Narrow down.
    while pass > 0.0 && fail.is_finite() && fail / pass > 1.05 {
        let rate = (pass * fail).sqrt();
        let t = link.trial(rate, probe).await?;
        trials.push(t);
        if t.passed() {
            pass = rate;
        } else {
            fail = rate;
        }
    }
    // Confirm over the full window, stepping down until one holds.
    let mut rate = if pass > 0.0 { pass } else { FLOOR };
    let mut steps = 0;
    while rate >= FLOOR {
        let t = link.trial(rate, window).await?;
        trials.push(t);
        if t.passed() {
            return Ok(Throughput {
                trials,
                best: Some(t),
                steps,
            });
        }
        steps += 1;
        rate *= 0.9;
    }
    Ok(Throughput {
        trials,
        best: None,
        steps,
    })
}
