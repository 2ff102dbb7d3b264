//! This machine's limit: plain UDP on loopback between two sockets, one
//! sender thread and one receiver thread, no batching, no crypto.

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What one run of the plain UDP blast delivered.
#[derive(Debug, Clone, Copy)]
pub struct UdpLimit {
    /// Datagrams received per second over the window.
    pub received_per_s: f64,
    /// Datagrams sent per second over the window.
    pub sent_per_s: f64,
}

impl UdpLimit {
    /// Fraction of the sent datagrams that did not arrive.
    pub fn loss(&self) -> f64 {
        if self.sent_per_s <= 0.0 {
            return 0.0;
        }
        (1.0 - self.received_per_s / self.sent_per_s).max(0.0)
    }
}

/// Blasts `payload`-byte datagrams from one thread to another as fast as the
/// sender can for `warmup + window`, and counts what the receiver got within
/// the window. Blocking std sockets, one `send`/`recv` per datagram: the
/// plain path, which is what "this machine's limit" is compared against.
pub fn measure(payload: usize, warmup: Duration, window: Duration) -> std::io::Result<UdpLimit> {
    let rx = UdpSocket::bind("127.0.0.1:0")?;
    let tx = UdpSocket::bind("127.0.0.1:0")?;
    tx.connect(rx.local_addr()?)?;
    rx.set_read_timeout(Some(Duration::from_millis(50)))?;
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));

    let receiver = {
        let (stop, received) = (stop.clone(), received.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if rx.recv(&mut buf).is_ok() {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let sender = {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || {
            let buf = vec![0x5au8; payload];
            while !stop.load(Ordering::Relaxed) {
                // ENOBUFS/EAGAIN under pressure: not sent, not counted.
                if tx.send(&buf).is_ok() {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    std::thread::sleep(warmup);
    let (s0, r0, t0) = (
        sent.load(Ordering::Relaxed),
        received.load(Ordering::Relaxed),
        Instant::now(),
    );
    std::thread::sleep(window);
    let (s1, r1, t1) = (
        sent.load(Ordering::Relaxed),
        received.load(Ordering::Relaxed),
        Instant::now(),
    );
    stop.store(true, Ordering::Relaxed);
    let _ = sender.join();
    let _ = receiver.join();
    let secs = (t1 - t0).as_secs_f64().max(1e-9);
    Ok(UdpLimit {
        received_per_s: (r1 - r0) as f64 / secs,
        sent_per_s: (s1 - s0) as f64 / secs,
    })
}
