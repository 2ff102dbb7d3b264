//! The `relay-sfu` command: see the library's docs and the README's
//! "relay-sfu" section.
#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use relay_sfu::{Server, cluster, http, valid_session_name};

/// A small SFU: WHIP and WHEP for browsers, and cascading to other servers
/// over the relay.
#[derive(Parser, Debug)]
#[command(name = "relay-sfu", version)]
struct Args {
    /// HTTP address: the page, WHIP, WHEP and the relay endpoint.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Address browsers and other servers reach this server's media on
    /// (UDP sockets bind it, on ephemeral ports).
    #[arg(long, default_value = "127.0.0.1")]
    public_ip: IpAddr,
    /// Relay every session's local publishers to this server's relay
    /// endpoint (`http://host:port/relay`); repeat for several servers.
    #[arg(long, value_name = "URL")]
    relay_to: Vec<String>,
    /// This server's name toward other servers (the relay peer id, and its
    /// name in the cluster): 1 to 64 of A-Z a-z 0-9 - _.
    #[arg(long)]
    name: Option<String>,
    /// Join the cluster on this NATS server: find the other servers there,
    /// and pull a session's tracks from them while it has a watcher here.
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
    /// With --nats: the only servers to pull tracks from and feed them to
    /// (comma-separated names; default all).
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    peers: Vec<String>,
    /// Log filter, such as `info` or `relay_sfu=debug`.
    #[arg(long, default_value = "relay_sfu=info")]
    log: String,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log))
        .with_writer(std::io::stderr)
        .init();
    // Caught from here on: a signal later closes the relay peers first.
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        eprintln!("relay-sfu: cannot catch SIGINT and SIGTERM");
        std::process::exit(1);
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("relay-sfu: cannot listen on {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    let name = (args.name).unwrap_or_else(|| format!("sfu-{}", std::process::id()));
    if !valid_session_name(&name) {
        eprintln!("relay-sfu: --name takes 1 to 64 of A-Z a-z 0-9 - _");
        std::process::exit(2);
    }
    let cluster = match &args.nats {
        Some(url) => {
            let allow = (!args.peers.is_empty()).then(|| args.peers.iter().cloned().collect());
            match cluster::Cluster::connect(url, &name, allow).await {
                Ok(c) => Some(c),
                Err(e) => {
                    eprintln!("relay-sfu: {e}");
                    std::process::exit(1);
                }
            }
        }
        None if !args.peers.is_empty() => {
            eprintln!("relay-sfu: --peers needs --nats");
            std::process::exit(2);
        }
        None => None,
    };
    let server = Arc::new(Server::new(
        name,
        args.public_ip,
        args.relay_to,
        cluster.clone(),
    ));
    println!("relay-sfu {} on http://{}/", server.name, args.listen);
    for url in server.relay_to() {
        println!("relaying publishers to {url}");
    }
    if let (Some(c), Some(url)) = (cluster.clone(), &args.nats) {
        let peers: HashSet<&String> = args.peers.iter().collect();
        if peers.is_empty() {
            println!("cluster on {url}");
        } else {
            let mut peers: Vec<_> = peers.into_iter().map(String::as_str).collect();
            peers.sort();
            println!("cluster on {url}, with {}", peers.join(", "));
        }
        tokio::spawn(cluster::run(server.clone(), c));
    }
    tokio::select! {
        _ = http::serve(listener, server.clone()) => {}
        signal = async {
            tokio::select! {
                _ = interrupt.recv() => "interrupted",
                _ = terminate.recv() => "terminated",
            }
        } => {
            // Each other server learns at once, not from ICE seconds later.
            if let Some(c) = &server.cluster {
                c.leave().await;
            }
            let open = server.peers.len();
            let closed = server.peers.close_all(Duration::from_secs(1)).await;
            println!("relay-sfu: {signal}: closed {closed} of {open} relay peers");
        }
    }
}
