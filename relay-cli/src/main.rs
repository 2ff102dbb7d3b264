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
    #[arg(long, global = true, default_value = "warn")]
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
    /// IP the relay peers bind to (one UDP socket per peer).
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,
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
    /// IP to bind the relay peer to.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,
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
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Demo(args) => demo::run(args).await,
            Command::Answer(args) => peers::answer(args).await,
            Command::Offer(args) => peers::offer(args).await,
            Command::Bench(args) => bench::run(args).await,
        }
    });
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
