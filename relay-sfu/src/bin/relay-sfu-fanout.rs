//! The fan-out bench: one 2.5 Mbit/s video track relayed from a source
//! through relay-sfu servers (separate processes on loopback, one NATS
//! cluster), in a chain and in a star, with N servers for each N asked.
//!
//! The bench process plays the two ends of the cluster protocol
//! (docs/cluster.md) itself, so no browser takes part and nothing but the
//! relay-sfu servers sits on the measured path:
//!
//! - a source server that announces one track and feeds it to whoever pulls
//!   it, stamping each packet's send time in its payload;
//! - sink servers that pull the track and take each packet's latency.
//!
//! Topologies (`src` and `sink` are the bench; `s1..sN` relay-sfu):
//!
//! - direct: `src → sink`, no relay-sfu (the baseline);
//! - chain N: `src → s1 → s2 → … → sN → sink`;
//! - star N: `src → s0`, then `s0 → s1..sN`, and `si → sink i`: every
//!   sink is two relay-sfu hops from the source, and s0 sends each packet
//!   to N servers.
//!
//! `--peers` lines each topology up. Added latency per hop =
//! (the topology's latency − the direct latency) / relay-sfu hops on the
//! path, for the median and for the p99. CPU per forwarded packet = CPU time
//! of all relay-sfu processes in the window (`/proc/PID/task/*/schedstat`,
//! nanoseconds) / packets they forwarded (the packets that reached the
//! sinks, times the relay-sfu hops on each path). At 2.5 Mbit/s much of that
//! is what the servers spend with no media at all (timers, the cluster's
//! announcements), so the table also gives that part, measured over 1 s
//! before the sinks pull and scaled to the window.
//!
//! ```sh
//! cargo run --release -p relay-sfu --bin relay-sfu-fanout    # needs nats-server
//! ```
#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use futures_lite::StreamExt;
use relay_sfu::cluster::{self, ANNOUNCE_SUBJECT, WANT_EVENT, relay_subject};
use relay_sfu::relay::TRACK_EVENT;
use relay_tokio::{Config, Peer, PeerMeta, RtpOut, TrackCodec, TrackMeta};
use serde_json::{Value, json};
use tokio::sync::broadcast;

#[derive(Parser, Debug)]
#[command(name = "relay-sfu-fanout")]
struct Args {
    /// Numbers of relay-sfu servers to try, in a chain and in a star.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    sizes: Vec<usize>,
    /// Measured window per topology, after the warm-up.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Warm-up before each window.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// The track's bit rate (30 frames/s of 10 packets each).
    #[arg(long, default_value_t = 2500)]
    kbps: u64,
    /// A NATS server to use; without it the bench starts `nats-server`.
    #[arg(long)]
    nats: Option<String>,
    /// The relay-sfu binary (default: the one beside this one).
    #[arg(long)]
    sfu: Option<PathBuf>,
    /// Print the results as JSON too.
    #[arg(long)]
    json: bool,
}

const SESSION: &str = "fanout";
const PACKETS_PER_FRAME: u64 = 10;
const FPS: u64 = 30;

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn wait_for_port(port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// CPU time of every thread of `pid`, from schedstat (nanoseconds).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Topology {
    Direct,
    Chain(usize),
    Star(usize),
}

impl Topology {
    fn name(&self) -> String {
        match self {
            Topology::Direct => "direct".into(),
            Topology::Chain(n) => format!("chain {n}"),
            Topology::Star(n) => format!("star {n}"),
        }
    }

    /// relay-sfu hops on each sink's path.
    fn hops(&self) -> usize {
        match self {
            Topology::Direct => 0,
            Topology::Chain(n) => *n,
            Topology::Star(_) => 2,
        }
    }
}

/// One topology's results.
#[derive(Debug, Clone)]
struct Outcome {
    topology: Topology,
    servers: usize,
    sinks: usize,
    sent: u64,
    received: u64,
    median_us: f64,
    p99_us: f64,
    cpu_ns: u64,
    /// What the same servers used over as long with no media.
    idle_ns: u64,
    forwarded: u64,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1_000.0
}

/// The bench's ends: everything the source sends, and what the sinks see.
struct Bench {
    client: async_nats::Client,
    epoch: Instant,
    /// Packets as the source makes them: (sequence, payload).
    packets: broadcast::Sender<(u64, Bytes)>,
    /// The measured window, in ns since `epoch`: packets sent in it count.
    window: Mutex<(u64, u64)>,
    /// Latencies of the packets sent in the window, in ns.
    latencies: Mutex<Vec<u64>>,
    /// Packets the source sent in the window.
    sent_in_window: AtomicU64,
}

impl Bench {
    fn in_window(&self, sent: u64) -> bool {
        let (start, end) = *self.window.lock().unwrap();
        (start..end).contains(&sent)
    }
}

fn config() -> Config {
    Config::bind(vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)])
}

impl Bench {
    /// Announces `name` every 500 ms, with the track if `serves`.
    fn heartbeat(self: &Arc<Self>, name: String, serves: bool) -> tokio::task::JoinHandle<()> {
        let client = self.client.clone();
        tokio::spawn(async move {
            let sessions = if serves {
                json!({ SESSION: [{"stream": format!("{name}-pub-1"), "track": format!("{name}-pub-1-video-1"), "path": [name]}] })
            } else {
                json!({})
            };
            let body = Bytes::from(json!({"server": name, "sessions": sessions}).to_string());
            loop {
                let _ = client.publish(ANNOUNCE_SUBJECT, body.clone()).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    }

    /// The source `name`: answers relay offers and feeds its track to
    /// whoever wants it.
    async fn source(self: Arc<Self>, name: String) {
        let Ok(mut offers) = self.client.subscribe(relay_subject(&name)).await else {
            return;
        };
        while let Some(msg) = offers.next().await {
            let Some(reply) = msg.reply.clone() else {
                continue;
            };
            let bench = self.clone();
            let name = name.clone();
            tokio::spawn(async move {
                let meta = PeerMeta::new(name.clone(), SESSION);
                let Ok((peer, answer)) = Peer::answer(meta, config(), &msg.payload).await else {
                    return;
                };
                let _ = bench.client.publish(reply, answer.into()).await;
                if peer.ready().await.is_err() {
                    return;
                }
                let stream = format!("{name}-pub-1");
                let track = format!("{name}-pub-1-video-1");
                let path = json!({"stream": stream, "track": track, "path": [name]});
                let _ = peer
                    .emit(TRACK_EVENT, Some(Bytes::from(path.to_string())))
                    .await;
                let Ok(local) = peer
                    .add_track(TrackMeta::new(stream, track), TrackCodec::vp8(96))
                    .await
                else {
                    return;
                };
                let mut packets = bench.packets.subscribe();
                let per_frame = PACKETS_PER_FRAME;
                while let Ok((seq, payload)) = packets.recv().await {
                    let frame = seq / per_frame;
                    let marker = seq % per_frame == per_frame - 1;
                    let ts = (frame * 90_000 / FPS) as u32;
                    let out = RtpOut::new(96, seq as u16, ts, marker, payload);
                    if local.try_write_rtp(out).is_err() && peer.is_closed() {
                        return;
                    }
                }
            });
        }
    }

    /// Makes the packets: 30 frames/s of 10 packets, each stamped with its
    /// send time.
    async fn generate(self: Arc<Self>, kbps: u64) {
        let size = (kbps * 1000 / 8 / (FPS * PACKETS_PER_FRAME)).max(16) as usize;
        let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / FPS));
        let mut seq = 0u64;
        loop {
            tick.tick().await;
            for _ in 0..PACKETS_PER_FRAME {
                let mut payload = vec![0u8; size];
                let sent = self.epoch.elapsed().as_nanos() as u64;
                payload[..8].copy_from_slice(&sent.to_be_bytes());
                payload[8..16].copy_from_slice(&seq.to_be_bytes());
                let _ = self.packets.send((seq, Bytes::from(payload)));
                if self.in_window(sent) {
                    self.sent_in_window.fetch_add(1, Ordering::Relaxed);
                }
                seq += 1;
            }
        }
    }

    /// The sink `name`: pulls the source's track from `upstream` and takes
    /// each packet's latency. Returns once the first packet arrived.
    async fn sink(
        self: &Arc<Self>,
        name: String,
        upstream: String,
        source: &str,
    ) -> Result<Peer, String> {
        let meta = PeerMeta::new(name.clone(), SESSION);
        let peer = Peer::new(meta, config()).await.map_err(|e| e.to_string())?;
        let (first_tx, first_rx) = tokio::sync::oneshot::channel();
        let first = Mutex::new(Some(first_tx));
        let bench = self.clone();
        peer.on_track(move |track| {
            let bench = bench.clone();
            let first = first.lock().unwrap().take();
            tokio::spawn(async move {
                let mut first = first;
                while let Some(p) = track.read_rtp().await {
                    if p.payload.len() < 16 {
                        continue;
                    }
                    let sent = u64::from_be_bytes(p.payload[..8].try_into().unwrap_or_default());
                    let at = p.received.saturating_duration_since(bench.epoch).as_nanos() as u64;
                    if let Some(f) = first.take() {
                        let _ = f.send(());
                    }
                    if bench.in_window(sent) {
                        bench
                            .latencies
                            .lock()
                            .unwrap()
                            .push(at.saturating_sub(sent));
                    }
                }
            });
        });
        peer.offer(|meta, offer| cluster::signal(&self.client, &upstream, meta, offer))
            .await
            .map_err(|e| format!("{name} pulling from {upstream}: {e}"))?;
        let want =
            json!({"tracks": [[format!("{source}-pub-1"), format!("{source}-pub-1-video-1")]]});
        peer.emit(WANT_EVENT, Some(Bytes::from(want.to_string())))
            .await
            .map_err(|e| e.to_string())?;
        tokio::time::timeout(Duration::from_secs(20), first_rx)
            .await
            .map_err(|_| format!("{name}: no packet from {upstream} within 20 s"))?
            .map_err(|_| format!("{name}: the track from {upstream} ended"))?;
        Ok(peer)
    }
}

fn sfu(bin: &PathBuf, nats: &str, name: &str, peers: &[String]) -> Result<(Proc, u32), String> {
    let port = free_port();
    let child = Command::new(bin)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--name", name])
        .args(["--nats", nats, "--peers", &peers.join(","), "--log", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let pid = child.id();
    let proc = Proc(child);
    if !wait_for_port(port) {
        return Err(format!("{name} did not listen"));
    }
    Ok((proc, pid))
}

async fn run(
    bench: &Arc<Bench>,
    args: &Args,
    bin: &PathBuf,
    nats: &str,
    run: usize,
    topology: Topology,
) -> Result<Outcome, String> {
    let src = format!("src{run}");
    let s = |k: usize| format!("r{run}-s{k}");
    let sink = |k: usize| format!("r{run}-sink{k}");
    let mut procs = Vec::new();
    // (sink name, its upstream)
    let mut sinks = Vec::new();
    match topology {
        Topology::Direct => sinks.push((sink(1), src.clone())),
        Topology::Chain(n) => {
            for k in 1..=n {
                let prev = if k == 1 { src.clone() } else { s(k - 1) };
                let next = if k == n { sink(1) } else { s(k + 1) };
                procs.push(sfu(bin, nats, &s(k), &[prev, next])?);
            }
            sinks.push((sink(1), s(n)));
        }
        Topology::Star(n) => {
            let mut peers = vec![src.clone()];
            peers.extend((1..=n).map(s));
            procs.push(sfu(bin, nats, &s(0), &peers)?);
            for k in 1..=n {
                procs.push(sfu(bin, nats, &s(k), &[s(0), sink(k)])?);
                sinks.push((sink(k), s(k)));
            }
        }
    }
    let mut beats = vec![bench.heartbeat(src.clone(), true)];
    let source = tokio::spawn(bench.clone().source(src.clone()));
    for (name, _) in &sinks {
        beats.push(bench.heartbeat(name.clone(), false));
    }
    // Everybody hears everybody before the sinks pull; the last second of
    // it, with no media, gives the servers' idle CPU.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pids: Vec<u32> = procs.iter().map(|(_, pid)| *pid).collect();
    let idle0: u64 = pids.iter().map(|p| cpu_ns(*p)).sum();
    let idle_from = Instant::now();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let idle_ns_per_s = (pids.iter().map(|p| cpu_ns(*p)).sum::<u64>() - idle0) as f64
        / idle_from.elapsed().as_secs_f64();
    let mut peers = Vec::new();
    for (name, upstream) in &sinks {
        peers.push(bench.sink(name.clone(), upstream.clone(), &src).await?);
    }
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;
    let cpu0: u64 = pids.iter().map(|p| cpu_ns(*p)).sum();
    bench.latencies.lock().unwrap().clear();
    bench.sent_in_window.store(0, Ordering::Relaxed);
    let start = bench.epoch.elapsed().as_nanos() as u64;
    let end = start + args.seconds * 1_000_000_000;
    *bench.window.lock().unwrap() = (start, end);
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let cpu1: u64 = pids.iter().map(|p| cpu_ns(*p)).sum();
    // Packets still on the way when the window closes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    *bench.window.lock().unwrap() = (0, 0);
    let sent = bench.sent_in_window.load(Ordering::Relaxed);
    let mut latencies = std::mem::take(&mut *bench.latencies.lock().unwrap());
    latencies.sort_unstable();
    for p in &peers {
        p.close().await;
    }
    source.abort();
    for b in beats {
        b.abort();
    }
    let received = latencies.len() as u64;
    Ok(Outcome {
        topology,
        servers: procs.len(),
        sinks: sinks.len(),
        sent,
        received,
        median_us: percentile(&latencies, 0.5),
        p99_us: percentile(&latencies, 0.99),
        cpu_ns: cpu1.saturating_sub(cpu0),
        idle_ns: (idle_ns_per_s * args.seconds as f64) as u64,
        forwarded: received * topology.hops() as u64,
    })
}

fn print_table(outcomes: &[Outcome], direct: &Outcome) {
    println!(
        "| topology | relay-sfu servers | sinks | delivered | latency median | p99 | added per hop, median | per hop, p99 | CPU per forwarded packet | of it, idle servers |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for o in outcomes {
        let hops = o.topology.hops() as f64;
        let per_packet = |ns: u64| ns as f64 / 1_000.0 / o.forwarded.max(1) as f64;
        let (per_median, per_p99, cpu, idle) = if hops > 0.0 {
            (
                format!("{:.0} µs", (o.median_us - direct.median_us) / hops),
                format!("{:.0} µs", (o.p99_us - direct.p99_us) / hops),
                format!("{:.1} µs", per_packet(o.cpu_ns)),
                format!("{:.1} µs", per_packet(o.idle_ns)),
            )
        } else {
            ("-".into(), "-".into(), "-".into(), "-".into())
        };
        let expected = o.sent * o.sinks as u64;
        println!(
            "| {} | {} | {} | {:.2} % ({} of {}) | {:.0} µs | {:.0} µs | {} | {} | {} | {} |",
            o.topology.name(),
            o.servers,
            o.sinks,
            100.0 * o.received as f64 / expected.max(1) as f64,
            o.received,
            expected,
            o.median_us,
            o.p99_us,
            per_median,
            per_p99,
            cpu,
            idle
        );
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let bin = args.sfu.clone().unwrap_or_else(|| {
        let me = std::env::current_exe().unwrap_or_default();
        me.with_file_name("relay-sfu")
    });
    if !bin.exists() {
        eprintln!(
            "relay-sfu-fanout: no relay-sfu at {} (cargo build -p relay-sfu, or --sfu PATH)",
            bin.display()
        );
        std::process::exit(2);
    }
    let mut _nats_proc = None;
    let nats = match &args.nats {
        Some(url) => url.clone(),
        None => {
            let port = free_port();
            let child = Command::new("nats-server")
                .args(["-a", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            match child {
                Ok(c) => _nats_proc = Some(Proc(c)),
                Err(e) => {
                    eprintln!(
                        "relay-sfu-fanout: cannot start nats-server ({e}); apt-get install nats-server, or --nats URL"
                    );
                    std::process::exit(2);
                }
            }
            if !wait_for_port(port) {
                eprintln!("relay-sfu-fanout: nats-server did not listen");
                std::process::exit(1);
            }
            format!("nats://127.0.0.1:{port}")
        }
    };
    let client = match async_nats::connect(&nats).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("relay-sfu-fanout: cannot connect to {nats}: {e}");
            std::process::exit(1);
        }
    };
    let bench = Arc::new(Bench {
        client,
        epoch: Instant::now(),
        packets: broadcast::channel(1024).0,
        window: Mutex::new((0, 0)),
        latencies: Mutex::new(Vec::new()),
        sent_in_window: AtomicU64::new(0),
    });
    tokio::spawn(bench.clone().generate(args.kbps));
    let mut topologies = vec![Topology::Direct];
    let sizes: HashSet<usize> = args.sizes.iter().copied().filter(|n| *n > 0).collect();
    let mut sizes: Vec<_> = sizes.into_iter().collect();
    sizes.sort();
    topologies.extend(sizes.iter().map(|n| Topology::Chain(*n)));
    topologies.extend(sizes.iter().map(|n| Topology::Star(*n)));
    println!(
        "fan-out: one {} kbit/s track (30 frames/s x 10 packets), {} s window after {} s warm-up, relay-sfu {}",
        args.kbps,
        args.seconds,
        args.warmup,
        bin.display()
    );
    let mut outcomes = Vec::new();
    for (i, t) in topologies.iter().enumerate() {
        match run(&bench, &args, &bin, &nats, i, *t).await {
            Ok(o) => {
                eprintln!(
                    "{}: {} of {} delivered, median {:.0} µs, p99 {:.0} µs",
                    t.name(),
                    o.received,
                    o.sent * o.sinks as u64,
                    o.median_us,
                    o.p99_us
                );
                outcomes.push(o);
            }
            Err(e) => {
                eprintln!("relay-sfu-fanout: {}: {e}", t.name());
                std::process::exit(1);
            }
        }
    }
    let direct = outcomes[0].clone();
    print_table(&outcomes, &direct);
    if args.json {
        let list: Vec<Value> = outcomes
            .iter()
            .map(|o| {
                json!({
                    "topology": o.topology.name(), "servers": o.servers, "sinks": o.sinks,
                    "sent": o.sent, "received": o.received,
                    "median_us": o.median_us, "p99_us": o.p99_us,
                    "cpu_ns": o.cpu_ns, "idle_cpu_ns": o.idle_ns, "forwarded": o.forwarded,
                })
            })
            .collect();
        println!("{}", Value::Array(list));
    }
}
