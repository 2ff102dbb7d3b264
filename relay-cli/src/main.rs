//! `relay`: a relay peer from the command line.
//!
//! - `relay demo`: two peers on loopback in one process, with a summary;
//! - `relay answer --listen ADDR`: answers offers over HTTP (PROTOCOL.md A.5);
//! - `relay offer --signal URL`: offers to such an endpoint;
//! - `relay bench`: measurements against the project's targets (table, JSON).
//!
//! Exit codes: 0 success, 1 the run failed (something did not cross, the
//! remote refused, ...), 2 bad usage.

mod bench;
mod demo;

mod media;
mod peers;
mod report;
mod rtp;
mod soak;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "relay",
    version,
    about = "A relay between media servers, wire-compatible with ion-sfu's"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log filter (tracing's env-filter syntax), e.g. `info` or `relay_proto=debug`.
    /// The default leaves out str0m's warnings, which repeat per packet in
    /// some states (a closed channel's stream reset); `--log warn` shows them.
    #[arg(long, global = true, default_value = "warn,str0m=error")]
    log: String,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Two relay peers on loopback in one process: connect, relay synthetic
    /// video and audio tracks, a burst of requests, emits and a data
    /// channel; prints a summary. Exit 0 only if everything crossed.
    Demo(demo::DemoArgs),
    /// Serve `POST /relay` and answer every offer with a relay peer; print
    /// a line per peer event.
    Answer(AnswerArgs),
    /// Offer to a `relay answer` (or any implementation of PROTOCOL.md A.5)
    /// and fire requests.
    Offer(OfferArgs),
    /// Measure connect time, request round trips, RTP throughput, CPU and
    /// memory on loopback; print a table against the targets.
    Bench(bench::BenchArgs),
}

/// Arguments of `relay answer`.
#[derive(clap::Args, Debug)]
pub struct AnswerArgs {
    /// Address to serve HTTP signalling on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Reply to every request with its own payload.
    #[arg(long)]
    pub echo: bool,
    /// Require `Authorization: Bearer TOKEN` on offers.
    #[arg(long)]
    pub token: Option<String>,
    /// Refuse offers past this many live peers (503).
    #[arg(long, default_value_t = 64)]
    pub max_peers: usize,
    /// Where the relay peers bind: an IP gives each peer a UDP socket of
    /// its own on an ephemeral port; IP:PORT puts every peer on that one
    /// socket (one port to open in a firewall).
    #[arg(long, default_value = "127.0.0.1", value_parser = parse_bind)]
    pub bind: SocketAddr,
    /// A public IP that reaches `--bind` through a 1:1 NAT, announced as a
    /// candidate with the bound port (repeatable).
    #[arg(long, value_name = "IP")]
    pub announce: Vec<std::net::IpAddr>,
    /// Play each received track as plain RTP: the first to HOST:PORT, the
    /// next to PORT + 2, and so on, with an SDP file per track.
    #[arg(long, value_name = "HOST:PORT")]
    pub rtp_out: Option<SocketAddr>,
    /// Where `--rtp-out` writes its SDP files.
    #[arg(long, default_value = ".")]
    pub sdp_dir: std::path::PathBuf,
}

/// Arguments of `relay offer`.
#[derive(clap::Args, Debug)]
pub struct OfferArgs {
    /// The answering side's signalling URL, e.g. http://127.0.0.1:8080/relay.
    #[arg(long)]
    pub signal: String,
    /// Bearer token for the answering side.
    #[arg(long)]
    pub token: Option<String>,
    /// Requests to fire once ready (event `echo`); their round trips are
    /// reported.
    #[arg(long, default_value_t = 0)]
    pub requests: usize,
    /// Peer id sent with the offer.
    #[arg(long, default_value = "relay-offer")]
    pub peer_id: String,
    /// Session id sent with the offer.
    #[arg(long, default_value = "default")]
    pub session_id: String,
    /// IP (or IP:PORT) to bind the relay peer to.
    #[arg(long, default_value = "127.0.0.1", value_parser = parse_bind)]
    pub bind: SocketAddr,
    /// A public IP that reaches `--bind` through a 1:1 NAT, announced as a
    /// candidate with the bound port (repeatable).
    #[arg(long, value_name = "IP")]
    pub announce: Vec<std::net::IpAddr>,
    /// Seconds to wait for Ready.
    #[arg(long, default_value_t = 15)]
    pub ready_timeout: u64,
    /// Stay connected after the requests until interrupted (Ctrl-C).
    #[arg(long)]
    pub stay: bool,
    /// Relay plain RTP arriving on this local UDP port (RTCP on the next
    /// one) as a track, e.g. from `ffmpeg ... -f rtp rtp://127.0.0.1:PORT`.
    #[arg(long, value_name = "PORT")]
    pub rtp_in: Option<u16>,
    /// The codec of `--rtp-in`: video/H264, video/VP8 or audio/opus.
    #[arg(long, default_value = "video/VP8")]
    pub codec: String,
    /// The payload type the source sends (ffmpeg's default is 96).
    #[arg(long, default_value_t = 96)]
    pub pt: u8,
    /// A soak of this many seconds, against `relay answer --echo`: 10,000
    /// requests spread over it, numbered data-channel messages echoed back,
    /// and a video track (30 fps, about 1.3 Mbit/s); prints a summary and
    /// exits 1 if a request had no outcome or a message came back wrong or
    /// out of order. See tests/soak/run.sh.
    #[arg(long, value_name = "SECS")]
    pub soak: Option<u64>,
}

/// `IP` (port 0: chosen by the system) or `IP:PORT`.
fn parse_bind(s: &str) -> Result<SocketAddr, String> {
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, 0));
    }
    s.parse::<SocketAddr>()
        .map_err(|_| format!("{s:?} is neither an IP nor IP:PORT"))
}

/// Every allocation goes through dhat in a heap-profiling build.
#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    #[cfg(feature = "dhat-heap")]
    bench::start_heap_profile();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The command runs as a task of the runtime, as a server's code would,
    // not on this thread: a task woken by another on the same worker runs
    // there next, with no thread to wake (a request's round trip in the
    // bench: 190 µs from this thread, 75 µs from a task).
    let command = runtime.spawn(async move {
        match cli.command {
            Command::Demo(args) => demo::run(args).await,
            Command::Answer(args) => peers::answer(args).await,
            Command::Offer(args) => peers::offer(args).await,
            Command::Bench(args) => bench::run(args).await,
        }
    });
    let result = runtime
        .block_on(command)
        .unwrap_or_else(|e| Err(format!("the command's task failed: {e}").into()));
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// How long a command waits, on SIGINT or SIGTERM, for its peers to close.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(1);

/// SIGINT (Ctrl-C) and SIGTERM, caught from the moment this is made (a
/// signal before would end the process without its goodbyes).
pub struct Shutdown {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Shutdown {
    pub fn catch() -> Result<Shutdown, CliError> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Shutdown {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Completes on the next signal, naming it.
    pub async fn signalled(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "interrupted",
            _ = self.terminate.recv() => "terminated",
        }
    }
}

/// Errors of a command, already worded for the person running it.
pub type CliError = Box<dyn std::error::Error + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::parse_bind;

    #[test]
    fn bind_takes_an_ip_or_an_ip_and_port() {
        assert_eq!(
            parse_bind("10.0.0.1").unwrap(),
            "10.0.0.1:0".parse().unwrap()
        );
        assert_eq!(
            parse_bind("[::1]:5000").unwrap(),
            "[::1]:5000".parse().unwrap()
        );
        assert_eq!(parse_bind("::1").unwrap(), "[::1]:0".parse().unwrap());
        assert!(parse_bind("10.0.0.1:").is_err());
        assert!(parse_bind("host:5000").unwrap_err().contains("neither"));
    }
}
