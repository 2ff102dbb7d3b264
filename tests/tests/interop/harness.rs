//! One of our peers on a real loopback UDP socket, one Go peer
//! (`tests/interop/bin/relay-go-peer`) as a child process driven over its
//! stdin/stdout JSON-lines control protocol (`tests/interop/README.md`), and
//! bounded waits that step both.
//!
//! Everything runs on the test's thread: each step feeds our peer at most one
//! datagram or timeout (waiting at most a few milliseconds), then takes every
//! control line the Go peer printed meanwhile (a reader thread hands them
//! over). Every wait has a deadline and fails with what was seen so far.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use relay_proto::{Config, Event, Peer, PeerMeta};
use serde_json::{Value, json};

/// Longest a single wait may take unless a test says otherwise.
pub const WAIT: Duration = Duration::from_secs(20);

/// Longest our peer blocks on its socket in one step, so Go's lines are
/// picked up promptly.
const STEP: Duration = Duration::from_millis(5);

/// The Go interop peer's binary, built by `bash tests/interop/build.sh`.
pub fn go_binary() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/bin/relay-go-peer");
    assert!(
        bin.is_file(),
        "{} is missing: build it first with `bash tests/interop/build.sh` \
         (installs Go and pion from Debian if needed)",
        bin.display()
    );
    bin
}

pub fn b64(data: &[u8]) -> String {
    B64.encode(data)
}

pub fn unb64(v: &Value) -> Option<Vec<u8>> {
    v.as_str()
        .map(|s| B64.decode(s).expect("Go prints standard base64"))
}

/// A deterministic, non-repeating test payload of `len` bytes.
pub fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(31).wrapping_add(salt as u32) as u8)
        .collect()
}

// ------------------------------------------------------------------ Go peer

/// The Go peer process and every control line it printed so far.
pub struct GoPeer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<(Instant, Value)>,
    /// Every event line, with the time it was read.
    pub events: Vec<(Instant, Value)>,
    /// Where the process's stderr (its and pion's logs) goes.
    pub log_path: PathBuf,
    exit: Option<ExitStatus>,
}

impl GoPeer {
    pub fn spawn(test: &str, args: &[&str]) -> GoPeer {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("interop");
        std::fs::create_dir_all(&dir).expect("create the Go log directory");
        let log_path = dir.join(format!("{test}.go.log"));
        let log = File::create(&log_path).expect("create the Go log file");
        let mut child = Command::new(go_binary())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start relay-go-peer");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value = serde_json::from_str::<Value>(&line)
                    .unwrap_or_else(|_| json!({"type": "_not_json", "line": line}));
                if tx.send((Instant::now(), value)).is_err() {
                    break;
                }
            }
        });
        GoPeer {
            stdin: child.stdin.take(),
            child,
            lines,
            events: Vec::new(),
            log_path,
            exit: None,
        }
    }

    /// Writes one control line.
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("write to relay-go-peer's stdin");
        stdin.flush().expect("flush relay-go-peer's stdin");
    }

    pub fn cmd(&mut self, cmd: Value) {
        self.send_line(&cmd.to_string());
    }

    /// Takes the lines printed so far.
    pub fn collect(&mut self) {
        while let Ok((at, v)) = self.lines.try_recv() {
            assert_ne!(
                v["type"], "_not_json",
                "relay-go-peer's stdout must be JSON lines only: {v}"
            );
            self.events.push((at, v));
        }
    }

    pub fn all<'a>(&'a self, ty: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.events
            .iter()
            .map(|(_, v)| v)
            .filter(move |v| v["type"] == ty)
    }

    pub fn find(&self, ty: &str, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        self.all(ty).find(|v| pred(v)).cloned()
    }

    pub fn count(&self, ty: &str, pred: impl Fn(&Value) -> bool) -> usize {
        self.all(ty).filter(|v| pred(v)).count()
    }

    /// When the first event of this type was read.
    pub fn time_of(&self, ty: &str) -> Option<Instant> {
        self.events
            .iter()
            .find(|(_, v)| v["type"] == ty)
            .map(|(t, _)| *t)
    }

    /// Closes stdin (the peer closes as on `close`) and waits for the exit.
    pub fn finish(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.stdin.take();
        let deadline = Instant::now() + timeout;
        while self.exit.is_none() && Instant::now() < deadline {
            self.exit = self.child.try_wait().expect("try_wait");
            if self.exit.is_none() {
                thread::sleep(Duration::from_millis(10));
            }
        }
        self.collect();
        self.exit
    }

    /// The end of the process's stderr, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for GoPeer {
    fn drop(&mut self) {
        if self.finish(Duration::from_secs(2)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------- our peer

/// Our peer on a loopback socket, with everything it reported.
pub struct Ours {
    pub peer: Peer,
    socket: UdpSocket,
    pub local: SocketAddr,
    buf: Vec<u8>,
    /// Every event, with the time it was polled.
    pub log: Vec<(Instant, Event)>,
    /// Reply to requests whose event starts with `echo` with their payload,
    /// as the Go peer does.
    pub echo: bool,
    /// What we sent as (S)RTP and SRTCP, read from the clear headers.
    pub sniffed: Sniffed,
}

/// Outgoing media datagrams by their clear header fields: the RTP header,
/// and an SRTCP packet's first RTCP header (the rest is encrypted).
#[derive(Debug, Default)]
pub struct Sniffed {
    /// (SSRC, payload type) -> RTP packets.
    pub rtp: std::collections::BTreeMap<(u32, u8), u64>,
    /// (first packet type, its sender SSRC) -> SRTCP datagrams.
    pub rtcp: std::collections::BTreeMap<(u8, u32), u64>,
    /// SRTCP first packet types, in the order sent.
    pub rtcp_order: Vec<u8>,
}

impl Sniffed {
    fn record(&mut self, d: &[u8]) {
        if d.len() < 12 || d[0] >> 6 != 2 {
            return; // STUN, DTLS
        }
        let ssrc = |at: usize| u32::from_be_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]]);
        if (192..=223).contains(&d[1]) {
            *self.rtcp.entry((d[1], ssrc(4))).or_default() += 1;
            self.rtcp_order.push(d[1]);
        } else {
            *self.rtp.entry((ssrc(8), d[1] & 0x7f)).or_default() += 1;
        }
    }
}

impl Ours {
    pub fn new(peer_id: &str, tweak: impl FnOnce(&mut Config)) -> Ours {
        init_tracing();
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a loopback UDP socket");
        let local = socket.local_addr().expect("local address");
        let mut config = Config::new(vec![local]);
        config.seed = fastrand::u64(..);
        config.connect_timeout = Duration::from_secs(10);
        tweak(&mut config);
        let peer = Peer::new(PeerMeta::new(peer_id, "interop"), config, Instant::now())
            .expect("a valid config");
        Ours {
            peer,
            socket,
            local,
            buf: vec![0; 4096],
            log: Vec::new(),
            echo: true,
            sniffed: Sniffed::default(),
        }
    }

    fn flush(&mut self) {
        while let Some(t) = self.peer.poll_transmit() {
            self.sniffed.record(&t.contents);
            // A datagram the kernel refuses (the Go peer is gone) is lost,
            // like on any network.
            let _ = self.socket.send_to(&t.contents, t.destination);
        }
    }

    /// Takes the events queued now, answering echo requests.
    pub fn take_events(&mut self) {
        while let Some(event) = self.peer.poll_event() {
            if self.echo
                && let Event::Request(req) = &event
                && req.event.starts_with("echo")
            {
                self.peer
                    .reply(Instant::now(), req.id, req.payload.clone())
                    .expect("echo reply");
            }
            self.log.push((Instant::now(), event));
        }
        self.flush();
    }

    /// One step: send what is queued, then feed one datagram or timeout.
    pub fn step(&mut self, max_wait: Duration) {
        self.take_events();
        let now = Instant::now();
        let wait = self
            .peer
            .poll_timeout()
            .map_or(max_wait, |t| t.saturating_duration_since(now).min(max_wait));
        self.socket
            .set_read_timeout(Some(wait.max(Duration::from_micros(100))))
            .expect("set_read_timeout");
        match self.socket.recv_from(&mut self.buf) {
            Ok((n, from)) => {
                let data = self.buf[..n].to_vec();
                self.peer
                    .handle_datagram(Instant::now(), from, self.local, &data)
            }
            Err(_) => {
                // Timeout, or an ICMP error from a Go peer that exited.
                if self
                    .peer
                    .poll_timeout()
                    .is_some_and(|t| t <= Instant::now())
                {
                    self.peer.handle_timeout(Instant::now());
                }
            }
        }
        self.take_events();
    }

    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.log.iter().map(|(_, e)| e)
    }

    pub fn time_of(&self, pred: impl Fn(&Event) -> bool) -> Option<Instant> {
        self.log.iter().find(|(_, e)| pred(e)).map(|(t, _)| *t)
    }

    pub fn count(&self, pred: impl Fn(&Event) -> bool) -> usize {
        self.events().filter(|e| pred(e)).count()
    }

    pub fn closed(&self) -> Option<&relay_proto::CloseReason> {
        self.events().find_map(|e| match e {
            Event::Closed(r) => Some(r),
            _ => None,
        })
    }
}

// ----------------------------------------------------------------- session

/// Which side offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offerer {
    Us,
    Go,
}

/// Our peer and the Go peer, signalled to each other.
pub struct Session {
    pub name: String,
    pub ours: Ours,
    pub go: GoPeer,
    /// When both sides had both signals.
    pub signalled: Instant,
}

impl Session {
    /// Runs the one out-of-band round trip (not waiting for Ready).
    /// `go_args` are extra flags for the Go peer (`-flip-dtls`).
    pub fn signal(
        name: &str,
        offerer: Offerer,
        go_args: &[&str],
        tweak: impl FnOnce(&mut Config),
    ) -> Session {
        let now = Instant::now;
        match offerer {
            Offerer::Us => {
                let mut ours = Ours::new("rust-offerer", tweak);
                let offer = ours.peer.create_offer(now()).expect("create_offer");
                let mut args = vec!["-role", "answer"];
                args.extend_from_slice(go_args);
                let go = GoPeer::spawn(name, &args);
                let mut s = Session {
                    name: name.into(),
                    ours,
                    go,
                    signalled: now(),
                };
                // The signal is embedded byte for byte as a JSON object.
                let offer = std::str::from_utf8(&offer).expect("the offer is JSON");
                s.go.send_line(&format!(
                    r#"{{"type":"offer","peerId":"rust-offerer","sessionId":"interop","signal":{offer}}}"#
                ));
                let answer = s.wait_go("the answer", WAIT, "answer", |_| true);
                let bytes = serde_json::to_vec(&answer["signal"]).unwrap();
                s.ours
                    .peer
                    .accept_answer(now(), &bytes)
                    .expect("Go's answer is accepted");
                s.signalled = now();
                s
            }
            Offerer::Go => {
                let ours = Ours::new("rust-answerer", tweak);
                let mut args = vec![
                    "-role",
                    "offer",
                    "-peer-id",
                    "go-offerer",
                    "-session-id",
                    "interop",
                ];
                args.extend_from_slice(go_args);
                let go = GoPeer::spawn(name, &args);
                let mut s = Session {
                    name: name.into(),
                    ours,
                    go,
                    signalled: now(),
                };
                let offer = s.wait_go("the offer", WAIT, "offer", |_| true);
                assert_eq!(
                    offer["peerId"], "go-offerer",
                    "meta travels beside the offer"
                );
                assert_eq!(offer["sessionId"], "interop");
                assert!(offer["signal"].is_object(), "signal embedded as an object");
                let bytes = serde_json::to_vec(&offer["signal"]).unwrap();
                let answer = s
                    .ours
                    .peer
                    .accept_offer(now(), &bytes)
                    .expect("Go's offer is accepted");
                let answer = std::str::from_utf8(&answer).expect("the answer is JSON");
                s.go.send_line(&format!(r#"{{"type":"answer","signal":{answer}}}"#));
                s.signalled = now();
                s
            }
        }
    }

    /// Signals and waits until both sides are Ready; returns the time each
    /// side took from the moment both signals were known.
    pub fn connect(
        name: &str,
        offerer: Offerer,
        tweak: impl FnOnce(&mut Config),
    ) -> (Session, Duration, Duration) {
        let mut s = Session::signal(name, offerer, &[], tweak);
        s.until("both sides Ready", WAIT, |s| {
            (s.ours.time_of(|e| *e == Event::Ready).is_some() && s.go.time_of("ready").is_some())
                .then_some(())
        });
        let ours = s.ours.time_of(|e| *e == Event::Ready).unwrap() - s.signalled;
        let go =
            s.go.time_of("ready")
                .unwrap()
                .saturating_duration_since(s.signalled);
        (s, ours, go)
    }

    /// One step of both sides.
    pub fn step(&mut self) {
        self.ours.step(STEP);
        self.go.collect();
    }

    /// Steps until `f` yields, or fails after `timeout` naming `what`.
    pub fn until<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&mut Session) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            self.go.collect();
            if let Some(v) = f(self) {
                return v;
            }
            if Instant::now() >= deadline {
                self.fail(&format!("timed out after {timeout:?} waiting for {what}"));
            }
            self.step();
        }
    }

    /// Steps for a while, whatever happens.
    pub fn run_for(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        while Instant::now() < deadline {
            self.step();
        }
    }

    /// Waits for a Go event of type `ty` matching `pred`.
    pub fn wait_go(
        &mut self,
        what: &str,
        timeout: Duration,
        ty: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        self.until(what, timeout, |s| s.go.find(ty, &pred))
    }

    /// Waits for one of our events matching `f`.
    pub fn wait_ours<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        f: impl Fn(&Event) -> Option<T>,
    ) -> T {
        self.until(what, timeout, |s| s.ours.events().find_map(&f))
    }

    /// Panics with what both sides saw.
    pub fn fail(&self, msg: &str) -> ! {
        let ours: Vec<String> = self
            .ours
            .events()
            .filter(|e| !matches!(e, Event::Rtp(_)))
            .map(|e| {
                let mut s = format!("{e:?}");
                s.truncate(300);
                s
            })
            .collect();
        let go: Vec<String> = self
            .go
            .events
            .iter()
            .filter(|(_, v)| v["type"] != "rtp")
            .map(|(_, v)| {
                let mut s = v.to_string();
                s.truncate(300);
                s
            })
            .collect();
        panic!(
            "[{}] {msg}\n--- our events (RTP omitted):\n{}\n--- our stats: {:?}\n--- Go events (rtp omitted):\n{}\n--- Go stderr ({}), last lines:\n{}",
            self.name,
            ours.join("\n"),
            self.ours.peer.stats(),
            go.join("\n"),
            self.go.log_path.display(),
            self.go.log_tail(40),
        )
    }

    /// Asserts, or fails with both sides' logs.
    pub fn check(&self, cond: bool, msg: impl FnOnce() -> String) {
        if !cond {
            self.fail(&msg());
        }
    }

    /// Ends the test: closes our peer (sending its goodbyes) and the Go
    /// process, and checks neither side reported an unexpected error.
    pub fn finish(mut self) {
        self.ours.peer.close(Instant::now());
        self.ours.take_events();
        self.go.finish(Duration::from_secs(3));
    }
}

// ------------------------------------------------------------------ tracing

/// With `RELAY_INTEROP_TRACE=1` (or a level: `trace`, `debug`, `info`),
/// relay-proto's and str0m's logs go to stderr. A tiny subscriber, so the
/// suite needs no logging crate.
pub fn init_tracing() {
    use std::sync::Once;
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let level = match std::env::var("RELAY_INTEROP_TRACE").as_deref() {
            Ok("trace") => tracing::Level::TRACE,
            Ok("info") => tracing::Level::INFO,
            Ok(_) => tracing::Level::DEBUG,
            Err(_) => return,
        };
        let _ = tracing::subscriber::set_global_default(StderrSubscriber(level));
    });
}

struct StderrSubscriber(tracing::Level);

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl tracing::Subscriber for StderrSubscriber {
    fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
        *meta.level() <= self.0
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        let meta = event.metadata();
        eprintln!("{} {}:{}", meta.level(), meta.target(), fields.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}
