//! The same measurements against `relay-go-peer` (pion 3.1.56, ion-sfu's
//! relay behaviour; tests/interop/README.md), driven through its
//! line-delimited JSON control protocol: our peer offers, the Go peer
//! answers and echoes requests whose event starts with `echo`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use relay_tokio::{Config, Peer, PeerMeta};
use serde_json::Value;
use tokio::sync::mpsc;

use super::pairs::{self, RequestResults};
use crate::CliError;
use crate::report::Spread;

/// Where the Go peer is looked for when no path is given: the interop
/// build's output, from the current directory or from this crate's source.
pub fn find(given: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = given {
        return if path.is_file() {
            Ok(path.to_path_buf())
        } else {
            Err(format!("{} does not exist", path.display()))
        };
    }
    let candidates = [
        PathBuf::from("tests/interop/bin/relay-go-peer"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/interop/bin/relay-go-peer"),
    ];
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        "tests/interop/bin/relay-go-peer not found (build it with bash tests/interop/build.sh, \
             or pass --go-peer PATH)"
            .to_string()
    })
}

/// One `relay-go-peer -role answer` process; closed and reaped on drop.
struct GoPeer {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<(Instant, Value)>,
}

impl GoPeer {
    fn answerer(path: &Path) -> Result<GoPeer, CliError> {
        let mut child = Command::new(path)
            .args(["-role", "answer"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", path.display()))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, lines) = mpsc::unbounded_channel();
        // Every line is read (so the Go side never blocks on a full pipe),
        // stamped on arrival; the per-request lines are not needed.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let at = Instant::now();
                let Ok(value) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if value["type"] == "request" {
                    continue;
                }
                if tx.send((at, value)).is_err() {
                    break;
                }
            }
        });
        Ok(GoPeer {
            child,
            stdin,
            lines,
        })
    }

    fn send(&mut self, line: &str) -> Result<(), CliError> {
        writeln!(self.stdin, "{line}")?;
        self.stdin.flush()?;
        Ok(())
    }

    /// The next line of type `kind`, with its arrival time.
    async fn wait(&mut self, kind: &str, within: Duration) -> Result<(Instant, Value), CliError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let next = tokio::time::timeout_at(deadline, self.lines.recv()).await;
            match next {
                Err(_) => {
                    return Err(format!("the Go peer sent no {kind} within {within:?}").into());
                }
                Ok(None) => return Err(format!("the Go peer exited before {kind}").into()),
                Ok(Some((at, v))) if v["type"] == kind => return Ok((at, v)),
                Ok(Some((_, v))) if v["type"] == "closed" => {
                    return Err(format!("the Go peer closed before {kind}: {}", v["reason"]).into());
                }
                Ok(Some(_)) => {}
            }
        }
    }
}

impl Drop for GoPeer {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, r#"{{"cmd":"close"}}"#);
        let _ = self.stdin.flush();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Our offerer connected to a Go answerer.
struct GoPair {
    offerer: Peer,
    go: GoPeer,
    ours_ready: Duration,
    go_ready: Duration,
}

async fn connect(path: &Path, index: usize) -> Result<GoPair, CliError> {
    let mut go = GoPeer::answerer(path)?;
    let config = Config::bind(vec!["127.0.0.1:0".parse().expect("a literal address")]);
    let offerer = Peer::new(
        PeerMeta::new("bench-offerer", format!("bench-go-{index}")),
        config,
    )
    .await?;
    let started = Instant::now();
    {
        let go = &mut go;
        let signal = move |meta: PeerMeta, offer: Vec<u8>| async move {
            let offer = String::from_utf8(offer)?;
            let line = serde_json::json!({
                "type": "offer",
                "peerId": meta.peer_id,
                "sessionId": meta.session_id,
                "signal": serde_json::from_str::<Value>(&offer)?,
            });
            go.send(&line.to_string())?;
            let (_, answer) = go.wait("answer", Duration::from_secs(10)).await?;
            Ok::<_, CliError>(serde_json::to_vec(&answer["signal"])?)
        };
        offerer.offer(signal).await?;
    }
    let ours_ready = started.elapsed();
    let (go_at, _) = go.wait("ready", Duration::from_secs(15)).await?;
    Ok(GoPair {
        offerer,
        go,
        ours_ready,
        go_ready: go_at.saturating_duration_since(started),
    })
}

/// What was measured against the Go peer.
pub struct GoResults {
    pub ours_ready: Spread,
    pub go_ready: Spread,
    pub both_ready: Spread,
    pub requests: RequestResults,
}

/// `connects` connects (one Go process each, started before the clock), then
/// requests on one more.
pub async fn measure(
    path: &Path,
    connects: usize,
    sequential: usize,
    burst: usize,
    in_flight: usize,
) -> Result<GoResults, CliError> {
    // Warm-up: the first start of a Go binary pays for page-ins.
    let warm = connect(path, usize::MAX).await?;
    warm.offerer.close().await;
    drop(warm.go);
    let (mut ours, mut theirs, mut both) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..connects {
        let pair = connect(path, i).await?;
        ours.push(pair.ours_ready);
        theirs.push(pair.go_ready);
        both.push(pair.ours_ready.max(pair.go_ready));
        pair.offerer.close().await;
        drop(pair.go);
    }
    let pair = connect(path, connects).await?;
    let requests = pairs::requests(&pair.offerer, sequential, burst, in_flight).await;
    pair.offerer.close().await;
    drop(pair.go);
    let spread = |s: &[Duration]| Spread::of(s).ok_or("no connect measured");
    Ok(GoResults {
        ours_ready: spread(&ours)?,
        go_ready: spread(&theirs)?,
        both_ready: spread(&both)?,
        requests: requests?,
    })
}
