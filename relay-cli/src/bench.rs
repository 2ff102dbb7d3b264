//! `relay bench`: connect time, request round trips and rate, RTP
//! throughput against this machine's plain-UDP limit, CPU per packet and
//! memory per idle pair, all on loopback in this process; then pion's relay
//! (`relay-go-peer -bench`, pion to pion in its own process) with the same
//! sizes, so both are measured in one run. Prints ours, pion's and the
//! ratio, with the targets (absolute, and relative to pion's numbers of the
//! same run), and writes the numbers as JSON (`--json FILE`).
//!
//! Numbers are for reading, never for a timed test: they depend on the
//! machine and on whatever else runs on it.

mod pairs;
mod pion;
mod rtp;
mod sys;
mod udp;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::CliError;
use crate::report::human;

/// Arguments of `relay bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// A short run (seconds, not minutes) with few samples: checks that
    /// every measurement works, numbers are rough.
    #[arg(long)]
    pub quick: bool,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Measurement window of the RTP confirmation run and of the plain UDP
    /// limit, in seconds (default 10; 0.5 with --quick).
    #[arg(long, value_name = "SECS")]
    pub window: Option<f64>,
    /// Connects measured for the time to Ready (default 25; 3 with --quick).
    #[arg(long)]
    pub connects: Option<usize>,
    /// Sequential requests measured for the round trip (default 5,000; 200
    /// with --quick); the rate with 64 in flight uses ten times as many.
    #[arg(long)]
    pub requests: Option<usize>,
    /// Idle connected pairs for the memory measurement (default 100; 5 with
    /// --quick).
    #[arg(long)]
    pub pairs: Option<usize>,
    /// The Go peer whose `-bench` mode measures pion (default:
    /// tests/interop/bin/relay-go-peer).
    #[arg(long, value_name = "PATH")]
    pub go_peer: Option<PathBuf>,
    /// Do not measure pion.
    #[arg(long, alias = "no-go")]
    pub no_pion: bool,
    /// Run only these parts (for profiling one of them), comma-separated:
    /// memory, ready, requests, udp, rtp, pion.
    #[arg(long, value_delimiter = ',', value_name = "PARTS")]
    pub only: Vec<String>,
}

impl BenchArgs {
    fn runs(&self, part: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == part)
    }
}

const SKIPPED: &str = "skipped (--only)";

/// The heap profile of a `dhat-heap` build, written when the idle pairs of
/// the memory part are all connected (see `pairs::memory`).
#[cfg(feature = "dhat-heap")]
static HEAP_PROFILE: std::sync::Mutex<Option<dhat::Profiler>> = std::sync::Mutex::new(None);

/// Starts recording every allocation (`dhat-heap` builds).
#[cfg(feature = "dhat-heap")]
pub fn start_heap_profile() {
    let profiler = dhat::Profiler::builder()
        .file_name(std::env::var("RELAY_DHAT_FILE").unwrap_or_else(|_| "dhat-heap.json".into()))
        .build();
    *HEAP_PROFILE.lock().unwrap_or_else(|e| e.into_inner()) = Some(profiler);
}

/// Writes the heap profile now: what is live is what the idle pairs hold
/// (plus the process's own). A no-op without `dhat-heap`.
pub fn write_heap_profile() {
    #[cfg(feature = "dhat-heap")]
    drop(
        HEAP_PROFILE
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(),
    );
}

/// RTP payload and plain-UDP datagram size, as the issue asks.
const PAYLOAD: usize = 1_200;
/// Requests in flight for the rate.
const IN_FLIGHT: usize = 64;

/// What a metric must reach: an absolute bound and, where pion was
/// measured in the same run, a bound relative to pion's figure (and, for
/// the RTP rate, to this machine's plain UDP limit). The stricter wins.
#[derive(Debug, Clone, Copy)]
enum Rule {
    None,
    AtMost {
        abs: f64,
        pion: Option<f64>,
    },
    AtLeast {
        abs: f64,
        pion: Option<f64>,
        udp: Option<f64>,
    },
}

/// One row of the table (one key of the JSON).
struct Metric {
    key: &'static str,
    label: &'static str,
    unit: &'static str,
    value: Result<f64, String>,
    pion: Option<f64>,
    rule: Rule,
    /// This run's plain UDP limit, for [`Rule::AtLeast::udp`].
    udp_limit: Option<f64>,
}

/// A resolved target.
#[derive(Debug, Clone, Copy)]
enum Target {
    AtMost(f64),
    AtLeast(f64),
}

impl Metric {
    fn new(key: &'static str, label: &'static str, unit: &'static str, rule: Rule) -> Metric {
        Metric {
            key,
            label,
            unit,
            value: Err("not measured".into()),
            pion: None,
            rule,
            udp_limit: None,
        }
    }

    fn target(&self) -> Option<Target> {
        match self.rule {
            Rule::None => None,
            Rule::AtMost { abs, pion } => {
                let rel = pion.zip(self.pion).map(|(f, p)| f * p);
                Some(Target::AtMost(rel.map_or(abs, |r| r.min(abs))))
            }
            Rule::AtLeast { abs, pion, udp } => {
                let mut t = abs;
                if let Some(r) = pion.zip(self.pion).map(|(f, p)| f * p) {
                    t = t.max(r);
                }
                if let Some(r) = udp.zip(self.udp_limit).map(|(f, u)| f * u) {
                    t = t.max(r);
                }
                Some(Target::AtLeast(t))
            }
        }
    }

    /// Ours over pion's.
    fn ratio(&self) -> Option<f64> {
        let v = *self.value.as_ref().ok()?;
        self.pion.filter(|p| *p > 0.0).map(|p| v / p)
    }

    /// `None` without a target or a value; else met, and how many times
    /// worse than the target when missed (1.0 when met).
    fn verdict(&self) -> Option<(bool, f64)> {
        let v = *self.value.as_ref().ok()?;
        Some(match self.target()? {
            Target::AtMost(t) => (v <= t, (v / t).max(1.0)),
            Target::AtLeast(t) => (v >= t, (t / v.max(1e-12)).max(1.0)),
        })
    }

    fn verdict_text(&self) -> String {
        match (&self.value, self.verdict()) {
            (Err(e), _) => format!("not measured: {e}"),
            (Ok(_), None) => "-".into(),
            (Ok(_), Some((true, _))) => "met".into(),
            (Ok(_), Some((false, f))) => format!("MISSED x{f:.2}"),
        }
    }

    fn target_text(&self) -> String {
        let bound = |t: f64| number(t);
        let why = match self.rule {
            Rule::AtMost { abs, pion: Some(f) } if self.pion.is_some() => {
                format!(" ({f}x pion, <= {})", number(abs))
            }
            Rule::AtLeast {
                abs,
                pion: Some(f),
                udp,
            } if self.pion.is_some() => match udp {
                Some(u) => format!(" ({f}x pion, {}% UDP)", u * 100.0),
                None => format!(" ({f}x pion, >= {})", number(abs)),
            },
            Rule::AtLeast { udp: Some(u), .. } if self.udp_limit.is_some() => {
                format!(" ({}% UDP)", u * 100.0)
            }
            _ => String::new(),
        };
        match self.target() {
            None => "-".into(),
            Some(Target::AtMost(t)) => format!("<= {}{why}", bound(t)),
            Some(Target::AtLeast(t)) => format!(">= {}{why}", bound(t)),
        }
    }

    fn json(&self) -> Value {
        let (met, factor) = match self.verdict() {
            Some((met, f)) => (json!(met), json!(f)),
            None => (Value::Null, Value::Null),
        };
        let target = match self.target() {
            None => Value::Null,
            Some(Target::AtMost(t)) => json!({"at_most": t}),
            Some(Target::AtLeast(t)) => json!({"at_least": t}),
        };
        json!({
            "label": self.label,
            "unit": self.unit,
            "value": self.value.as_ref().ok(),
            "error": self.value.as_ref().err(),
            "pion": self.pion,
            "ratio_to_pion": self.ratio(),
            "target": target,
            "met": met,
            "miss_factor": factor,
        })
    }
}

/// A number with as many digits as it needs.
fn number(v: f64) -> String {
    let a = v.abs();
    if a >= 10_000.0 {
        // Thousands separated, as the issue writes them.
        let s = format!("{:.0}", v);
        let (sign, digits) = s.split_at(usize::from(s.starts_with('-')));
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        format!("{sign}{out}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Sizes of one run.
struct Plan {
    window: Duration,
    probe: Duration,
    connects: usize,
    sequential: usize,
    burst: usize,
    pairs: usize,
    idle: Duration,
}

impl Plan {
    fn of(args: &BenchArgs) -> Plan {
        let q = args.quick;
        let window = args.window.unwrap_or(if q { 0.5 } else { 10.0 }).max(0.1);
        let sequential = args.requests.unwrap_or(if q { 200 } else { 5_000 }).max(1);
        Plan {
            window: Duration::from_secs_f64(window),
            probe: Duration::from_secs_f64(if q { 0.3_f64 } else { 1.0 }.min(window)),
            connects: args.connects.unwrap_or(if q { 3 } else { 25 }).max(1),
            sequential,
            burst: sequential * 10,
            pairs: args.pairs.unwrap_or(if q { 5 } else { 100 }).max(1),
            idle: Duration::from_millis(if q { 300 } else { 2_000 }),
        }
    }
}

fn step(what: &str) {
    eprintln!("bench: {what} ...");
}

/// Sets `e` as the error of every metric in `ms`.
fn fail(ms: &mut [&mut Metric], e: &str) {
    for m in ms {
        m.value = Err(e.to_string());
    }
}

/// Runs the bench; fails when a measurement of ours could not be made.
pub async fn run(args: BenchArgs) -> Result<(), CliError> {
    let plan = Plan::of(&args);
    let started = Instant::now();
    let date = sys::unix_now();
    let command: Vec<String> = std::env::args().collect();
    let mut notes: Vec<String> = Vec::new();
    let load_before = sys::load_average();

    let at_most = |abs: f64, pion: Option<f64>| Rule::AtMost { abs, pion };
    let mut m_ready = Metric::new(
        "ready_both_median_ms",
        "offer to Ready on both sides, median",
        "ms",
        at_most(1.8, Some(0.5)),
    );
    let mut m_ready_p99 = Metric::new(
        "ready_both_p99_ms",
        "offer to Ready on both sides, p99",
        "ms",
        Rule::None,
    );
    let mut m_ready_off = Metric::new(
        "ready_offerer_median_ms",
        "offer to Ready, offerer, median",
        "ms",
        Rule::None,
    );
    let mut m_ready_ans = Metric::new(
        "ready_answerer_median_ms",
        "offer to Ready, answerer, median",
        "ms",
        Rule::None,
    );
    let mut m_rtt = Metric::new(
        "request_rtt_median_us",
        "request round trip, median (100 B)",
        "µs",
        at_most(30.0, Some(0.4)),
    );
    let mut m_rtt99 = Metric::new(
        "request_rtt_p99_us",
        "request round trip, p99",
        "µs",
        at_most(100.0, None),
    );
    let mut m_rps = Metric::new(
        "requests_per_s_64_in_flight",
        "requests/s, 64 in flight",
        "1/s",
        Rule::AtLeast {
            abs: 100_000.0,
            pion: Some(3.0),
            udp: None,
        },
    );
    let mut m_udp = Metric::new(
        "udp_limit_packets_per_s",
        "plain UDP loopback limit (1 sender, 1 receiver thread)",
        "packets/s",
        Rule::None,
    );
    let mut m_rtp = Metric::new(
        "rtp_lossless_packets_per_s",
        "RTP one way, <= 0.1 % loss over the window",
        "packets/s",
        Rule::AtLeast {
            abs: 0.0,
            pion: Some(3.0),
            udp: Some(0.5),
        },
    );
    let mut m_rtp_mbit = Metric::new(
        "rtp_lossless_mbit_per_s",
        "RTP one way, payload bit rate",
        "Mbit/s",
        Rule::None,
    );
    let mut m_rtp_ratio = Metric::new(
        "rtp_ratio_to_udp_limit",
        "RTP rate / plain UDP limit",
        "ratio",
        Rule::AtLeast {
            abs: 0.5,
            pion: None,
            udp: None,
        },
    );
    let mut m_rtp_steps = Metric::new(
        "rtp_confirmation_steps",
        "RTP: 10 % step-downs before a window held",
        "steps",
        Rule::None,
    );
    let mut m_cpu_pkt = Metric::new(
        "rtp_cpu_us_per_packet",
        "CPU per delivered RTP packet, both peers",
        "µs",
        at_most(6.0, Some(0.5)),
    );
    let mut m_mem = Metric::new(
        "rss_kib_per_idle_pair",
        "resident memory per connected idle pair",
        "KiB",
        at_most(100.0, None),
    );

    // Memory first, before the heap has grown and shrunk.
    let memory = if args.runs("memory") {
        step(&format!("memory: {} idle pairs", plan.pairs));
        pairs::memory(plan.pairs, plan.idle).await
    } else {
        Err(SKIPPED.into())
    };
    match memory {
        Ok(mem) => {
            m_mem.value = Ok(mem.kib_per_pair);
            notes.push(format!(
                "memory: VmRSS {} KiB before, {} KiB with {} pairs connected and idle for {}",
                mem.before_kib,
                mem.after_kib,
                mem.pairs,
                human(plan.idle)
            ));
        }
        Err(e) => m_mem.value = Err(e.to_string()),
    }

    let ready = if args.runs("ready") {
        step(&format!("time to Ready: {} connects", plan.connects));
        pairs::ready_times(plan.connects).await
    } else {
        Err(SKIPPED.into())
    };
    match ready {
        Ok(r) => {
            m_ready.value = Ok(ms(r.both.median));
            m_ready_p99.value = Ok(ms(r.both.p99));
            m_ready_off.value = Ok(ms(r.offerer.median));
            m_ready_ans.value = Ok(ms(r.answerer.median));
        }
        Err(e) => fail(
            &mut [
                &mut m_ready,
                &mut m_ready_p99,
                &mut m_ready_off,
                &mut m_ready_ans,
            ],
            &e.to_string(),
        ),
    }

    let requests = async {
        if !args.runs("requests") {
            return Err(SKIPPED.into());
        }
        step(&format!(
            "requests: {} sequential, {} with {IN_FLIGHT} in flight",
            plan.sequential, plan.burst
        ));
        let pair = pairs::connect(0, pairs::echo).await?;
        let r = pairs::requests(&pair.offerer, plan.sequential, plan.burst, IN_FLIGHT).await;
        pair.close().await;
        r
    };
    match requests.await {
        Ok(r) => {
            m_rtt.value = Ok(us(r.sequential.median));
            m_rtt99.value = Ok(us(r.sequential.p99));
            m_rps.value = Ok(r.per_s);
        }
        Err(e) => fail(&mut [&mut m_rtt, &mut m_rtt99, &mut m_rps], &e.to_string()),
    }

    let udp_window = plan.window;
    let udp = if args.runs("udp") {
        step(&format!("plain UDP limit: {}", human(plan.window)));
        tokio::task::spawn_blocking(move || {
            udp::measure(PAYLOAD, Duration::from_millis(300), udp_window)
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
    } else {
        Err(SKIPPED.to_string())
    };
    match &udp {
        Ok(u) => {
            m_udp.value = Ok(u.received_per_s);
            m_rtp.udp_limit = Some(u.received_per_s);
            notes.push(format!(
                "plain UDP: {} datagrams/s sent, {} received ({:.1} % lost: the sender outruns the receiver)",
                number(u.sent_per_s),
                number(u.received_per_s),
                u.loss() * 100.0
            ));
        }
        Err(e) => m_udp.value = Err(e.clone()),
    }

    let ceiling = udp.as_ref().map_or(250_000.0, |u| u.received_per_s);
    let start = if args.quick { 5_000.0 } else { 10_000.0 };
    let throughput = async {
        if !args.runs("rtp") {
            return Err(SKIPPED.into());
        }
        step("RTP throughput: search, then full-window confirmations");
        let mut link = rtp::Link::open(PAYLOAD).await?;
        let r = rtp::search(&mut link, start, ceiling, plan.probe, plan.window).await;
        let counters = link.counters().await;
        link.close().await;
        r.map(|r| (r, counters))
    };
    match throughput.await {
        Ok((t, counters)) => {
            notes.push(counters);
            for trial in &t.trials {
                notes.push(format!(
                    "rtp trial: {} packets/s offered for {}: {} written, {} received, loss {:.3} %, {:.2} µs CPU/packet, {} kernel receive-buffer drops{}",
                    number(trial.rate),
                    human(trial.window),
                    trial.written,
                    trial.received,
                    trial.loss() * 100.0,
                    trial.cpu_us_per_packet(),
                    trial.rcvbuf_drops,
                    if trial.passed() { "" } else { " (over 0.1 %)" }
                ));
            }
            m_rtp_steps.value = Ok(t.steps as f64);
            match t.best {
                Some(best) => {
                    let pps = best.received_per_s();
                    m_rtp.value = Ok(pps);
                    m_rtp_mbit.value = Ok(pps * (PAYLOAD * 8) as f64 / 1e6);
                    m_cpu_pkt.value = Ok(best.cpu_us_per_packet());
                    m_rtp_ratio.value = match &udp {
                        Ok(u) => Ok(pps / u.received_per_s),
                        Err(e) if e == SKIPPED => Err(SKIPPED.into()),
                        Err(e) => Err(format!("no UDP limit: {e}")),
                    };
                }
                None => fail(
                    &mut [
                        &mut m_rtp,
                        &mut m_rtp_mbit,
                        &mut m_rtp_ratio,
                        &mut m_cpu_pkt,
                    ],
                    &format!("not even {} packets/s held a window", rtp::FLOOR),
                ),
            }
        }
        Err(e) => fail(
            &mut [
                &mut m_rtp,
                &mut m_rtp_mbit,
                &mut m_rtp_ratio,
                &mut m_rtp_steps,
                &mut m_cpu_pkt,
            ],
            &e.to_string(),
        ),
    }

    // pion, same sizes, same machine, right after.
    let pion_status: Result<(), String> = if args.no_pion {
        Err("--no-pion".into())
    } else if !args.runs("pion") {
        Err(SKIPPED.into())
    } else {
        match pion::find(args.go_peer.as_deref()) {
            Err(e) => Err(e),
            Ok(path) => {
                let parts: Vec<&'static str> = ["memory", "ready", "requests", "rtp"]
                    .into_iter()
                    .filter(|p| args.only.is_empty() || args.runs(p))
                    .collect();
                step(&format!(
                    "pion: {} -bench ({})",
                    path.display(),
                    parts.join(",")
                ));
                let sizes = pion::Sizes {
                    window: plan.window,
                    connects: plan.connects,
                    requests: plan.sequential,
                    pairs: plan.pairs,
                    quick: args.quick,
                    parts,
                };
                match pion::measure(&path, &sizes).await {
                    Ok(p) => {
                        m_ready.pion = p.get("ready", "both_median_ms");
                        m_ready_p99.pion = p.get("ready", "both_p99_ms");
                        m_ready_off.pion = p.get("ready", "offerer_median_ms");
                        m_ready_ans.pion = p.get("ready", "answerer_median_ms");
                        m_rtt.pion = p.get("requests", "rtt_median_us");
                        m_rtt99.pion = p.get("requests", "rtt_p99_us");
                        m_rps.pion = p.get("requests", "per_s");
                        m_rtp.pion = p.get("rtp", "rate");
                        m_rtp_mbit.pion = p.get("rtp", "mbit_s");
                        m_rtp_steps.pion = p.get("rtp", "steps");
                        m_cpu_pkt.pion = p.get("rtp", "cpu_us_per_packet");
                        m_mem.pion = p.get("memory", "kib_per_pair");
                        if let (Some(rate), Ok(u)) = (m_rtp.pion, &udp) {
                            m_rtp_ratio.pion = Some(rate / u.received_per_s);
                        }
                        for part in ["memory", "ready", "requests", "rtp"] {
                            if let Some(e) = p.error(part) {
                                notes.push(format!("pion {part}: not measured: {e}"));
                            }
                        }
                        if let Some(v) = p.0.get("go_version").and_then(|v| v.as_str()) {
                            notes.push(format!(
                                "pion: relay-go-peer -bench, pion {}, {v}, both ends in its process",
                                p.0.get("pion_version").and_then(|v| v.as_str()).unwrap_or("?")
                            ));
                        }
                        Ok(())
                    }
                    Err(e) => Err(format!("failed: {e}")),
                }
            }
        }
    };

    let metrics = [
        m_ready,
        m_ready_p99,
        m_ready_off,
        m_ready_ans,
        m_rtt,
        m_rtt99,
        m_rps,
        m_udp,
        m_rtp,
        m_rtp_mbit,
        m_rtp_ratio,
        m_rtp_steps,
        m_cpu_pkt,
        m_mem,
    ];

    print_table(&metrics, &plan, args.quick, pion_status.as_ref().err());
    println!();
    for note in &notes {
        println!("  {note}");
    }
    let load_after = sys::load_average();
    let load = |l: Option<f64>| l.map_or("?".into(), |l| format!("{l:.2}"));
    println!(
        "  {} CPUs online, shared with whatever else runs (load average {} at the start, {} at the end): \
         numbers are noisy; run took {}",
        sys::cpus(),
        load(load_before),
        load(load_after),
        human(started.elapsed())
    );

    if let Some(file) = &args.json {
        let mut all = serde_json::Map::new();
        for m in &metrics {
            all.insert(m.key.to_string(), m.json());
        }
        let doc = json!({
            "date_unix": date,
            "date": sys::utc_string(date),
            "command": command.join(" "),
            "quick": args.quick,
            "cpus": sys::cpus(),
            "load_average_start": load_before,
            "load_average_end": load_after,
            "payload_bytes": PAYLOAD,
            "in_flight": IN_FLIGHT,
            "window_s": plan.window.as_secs_f64(),
            "connects": plan.connects,
            "sequential_requests": plan.sequential,
            "burst_requests": plan.burst,
            "idle_pairs": plan.pairs,
            "metrics": Value::Object(all),
            "pion": match &pion_status {
                Ok(()) => json!({"measured": true, "what": PION_WHAT}),
                Err(e) => json!({"measured": false, "reason": e}),
            },
            "notes": notes,
        });
        std::fs::write(file, serde_json::to_string_pretty(&doc)? + "\n")
            .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        println!("  JSON written to {}", file.display());
    }

    let failed: Vec<&str> = metrics
        .iter()
        .filter(|m| m.value.as_ref().is_err_and(|e| e != SKIPPED))
        .map(|m| m.key)
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("not measured: {}", failed.join(", ")).into())
    }
}

const PION_WHAT: &str = "relay-go-peer -bench: pion 3.1.56 relay peer to pion relay peer (ion-sfu's \
                         relay behaviour), both in its own process, same sizes and methods, run \
                         right after ours";

fn print_table(metrics: &[Metric], plan: &Plan, quick: bool, pion_missing: Option<&String>) {
    println!(
        "relay bench{}: loopback, both peers in one process, {}-byte RTP payloads, window {}",
        if quick {
            " --quick (rough numbers)"
        } else {
            ""
        },
        PAYLOAD,
        human(plan.window)
    );
    println!();
    let header = [
        "metric",
        "unit",
        "ours",
        "pion",
        "ours/pion",
        "target",
        "verdict",
    ];
    let rows: Vec<[String; 7]> = metrics
        .iter()
        .map(|m| {
            [
                m.label.to_string(),
                m.unit.to_string(),
                m.value.as_ref().map_or("-".into(), |v| number(*v)),
                m.pion.map_or("-".into(), number),
                m.ratio().map_or("-".into(), |r| format!("{r:.2}")),
                m.target_text(),
                m.verdict_text(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            let pad = w - cell.chars().count();
            // Text left, numbers right.
            if (2..=4).contains(&i) {
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            } else {
                out.push_str(cell);
                out.push_str(&" ".repeat(pad));
            }
            out.push_str("  ");
        }
        println!("{}", out.trim_end());
    };
    line(&header.map(String::from));
    for row in &rows {
        line(row);
    }
    println!();
    println!(
        "  MISSED xF: F times worse than the target (value/target, or target/value for rates)."
    );
    match pion_missing {
        None => println!("  pion: {PION_WHAT}."),
        Some(reason) => println!("  pion: not measured: {reason}; targets are the absolute ones."),
    }
}
