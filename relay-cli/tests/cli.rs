//! The `relay` command as a person runs it: real processes on loopback.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn relay() -> Command {
    Command::new(env!("CARGO_BIN_EXE_relay"))
}

fn run(args: &[&str]) -> Output {
    relay().args(args).output().expect("relay runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `relay answer` in the background, killed on drop.
struct Answerer(Child);

impl Answerer {
    fn start(port: u16, extra: &[&str]) -> Answerer {
        let listen = format!("127.0.0.1:{port}");
        let mut child = relay()
            .args(["answer", "--listen", &listen, "--echo"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("relay answer starts");
        // Wait for its first line: it is listening.
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().expect("a line").expect("utf-8");
        assert!(first.contains("POST offers to"), "{first}");
        std::thread::spawn(move || for _ in lines.by_ref() {});
        Answerer(child)
    }
}

impl Drop for Answerer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn demo_runs_and_everything_crosses() {
    let out = run(&[
        "demo",
        "--requests",
        "200",
        "--emits",
        "50",
        "--messages",
        "50",
    ]);
    let t = text(&out);
    println!("{t}");
    assert!(out.status.success(), "{t}");
    assert!(t.contains("200/200 answered"), "{t}");
    assert!(t.contains("50/50 received"), "{t}");
    assert!(t.contains("everything crossed"), "{t}");
}

#[test]
fn offer_to_answer_over_http_with_requests() {
    let port = free_port();
    let _answerer = Answerer::start(port, &["--token", "s3cret"]);
    let url = format!("http://127.0.0.1:{port}/relay");
    let out = run(&[
        "offer",
        "--signal",
        &url,
        "--token",
        "s3cret",
        "--requests",
        "20",
    ]);
    let t = text(&out);
    println!("{t}");
    assert!(out.status.success(), "{t}");
    assert!(t.contains("20/20 requests answered"), "{t}");

    // A wrong token is refused, and the reason is printed.
    let out = run(&["offer", "--signal", &url, "--token", "wrong"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("HTTP 401") && t.contains("bearer token"), "{t}");
}

#[test]
fn errors_name_their_cause() {
    // Nothing listens there.
    let port = free_port();
    let out = run(&[
        "offer",
        "--signal",
        &format!("http://127.0.0.1:{port}/relay"),
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("unreachable"), "{t}");

    // Not a URL we can use.
    let out = run(&["offer", "--signal", "ftp://example/relay"]);
    assert!(
        text(&out).contains("is not http://host:port/path"),
        "{}",
        text(&out)
    );

    // The port is taken.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(&["answer", "--listen", &addr]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("port in use"), "{t}");

    // Bad usage is exit code 2.
    assert_eq!(run(&["offer"]).status.code(), Some(2));
}

#[test]
fn the_peer_limit_refuses_with_a_reason() {
    let port = free_port();
    let _answerer = Answerer::start(port, &["--max-peers", "1"]);
    let url = format!("http://127.0.0.1:{port}/relay");
    // The first peer stays connected...
    let mut first = relay()
        .args(["offer", "--signal", &url, "--stay"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    let started = Instant::now();
    let ready = lines.next().unwrap().unwrap();
    assert!(ready.starts_with("ready"), "{ready}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // ...so the second is refused.
    let out = run(&["offer", "--signal", &url]);
    let t = text(&out);
    let _ = first.kill();
    let _ = first.wait();
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("HTTP 503") && t.contains("peer limit"), "{t}");
}

/// A one-shot HTTP server that answers every request with `body` and 200.
fn fake_answerer(body: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut stream in listener.incoming().map_while(Result::ok) {
            let mut buf = [0u8; 8192];
            let _ = stream.read(&mut buf);
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    port
}

#[test]
fn an_answer_that_does_not_parse_is_named() {
    let port = fake_answerer("this is not an answer");
    let out = run(&[
        "offer",
        "--signal",
        &format!("http://127.0.0.1:{port}/relay"),
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("does not parse"), "{t}");
}

#[test]
fn no_ready_within_the_timeout_is_named() {
    // A well-formed answer whose only candidate has nobody behind it.
    let port = fake_answerer(
        r#"{"iceCandidates":[{"foundation":"1","priority":2130706431,"address":"127.0.0.1","protocol":1,"port":9,"type":1,"component":1,"relatedAddress":"","relatedPort":0,"tcpType":""}],"iceParameters":{"usernameFragment":"abcdefgh","password":"abcdefghijklmnopqrstuvwx","iceLite":false},"dtlsParameters":{"role":1,"fingerprints":[{"algorithm":"sha-256","value":"85:b3:e3:7a:d3:9e:42:b4:fd:0a:31:54:b7:2d:52:0a:b5:e7:d9:3c:46:4d:37:b3:ae:bb:f8:e8:8c:63:34:e0"}]},"sctpCapabilities":{"maxMessageSize":0}}"#,
    );
    let started = Instant::now();
    let out = run(&[
        "offer",
        "--signal",
        &format!("http://127.0.0.1:{port}/relay"),
        "--ready-timeout",
        "2",
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("no Ready within 2 s"), "{t}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// A player on the answering side asks for a keyframe when it starts; the
/// request crosses the relay and reaches the RTP source's RTCP port as PLI.
#[test]
fn a_keyframe_request_reaches_the_rtp_source_as_pli() {
    use std::net::UdpSocket;
    let http = free_port();
    let out_port = {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let dir = std::env::temp_dir().join(format!("relay-pli-{http}"));
    std::fs::create_dir_all(&dir).unwrap();
    let _answerer = Answerer::start(
        http,
        &[
            "--rtp-out",
            &format!("127.0.0.1:{out_port}"),
            "--sdp-dir",
            dir.to_str().unwrap(),
        ],
    );
    // The source: RTP from an even port, RTCP on the next one.
    let (rtp, rtcp) = loop {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if port.is_multiple_of(2)
            && let Ok(b) = UdpSocket::bind(("127.0.0.1", port + 1))
        {
            break (a, b);
        }
    };
    let rtp_in = {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = s.local_addr().unwrap().port();
        drop(s);
        p
    };
    let mut offer = relay()
        .args([
            "offer",
            "--signal",
            &format!("http://127.0.0.1:{http}/relay"),
            "--rtp-in",
            &rtp_in.to_string(),
            "--codec",
            "video/VP8",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(offer.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("ready"), "{first}");
    let second = lines.next().unwrap().unwrap();
    assert!(second.starts_with("relaying RTP"), "{second}");
    std::thread::spawn(move || for _ in lines.by_ref() {});
    rtcp.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let ssrc: u32 = 0x1234_5678;
    let mut pli = None;
    let started = Instant::now();
    let mut seq: u16 = 0;
    while started.elapsed() < Duration::from_secs(10) && pli.is_none() {
        let mut pkt = vec![0x80, 96];
        pkt.extend_from_slice(&seq.to_be_bytes());
        pkt.extend_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
        pkt.extend_from_slice(&ssrc.to_be_bytes());
        pkt.extend_from_slice(&[0x10; 100]);
        rtp.send_to(&pkt, ("127.0.0.1", rtp_in)).unwrap();
        seq = seq.wrapping_add(1);
        let mut buf = [0u8; 1500];
        if let Ok((n, _)) = rtcp.recv_from(&mut buf) {
            pli = Some(buf[..n].to_vec());
        }
    }
    let _ = offer.kill();
    let _ = offer.wait();
    let pli = pli.expect("a PLI within 10 s");
    // RTCP PSFB (206), FMT 1, naming the source's SSRC.
    assert_eq!((pli[0] & 0x1f, pli[1]), (1, 206), "{pli:?}");
    assert_eq!(u32::from_be_bytes(pli[8..12].try_into().unwrap()), ssrc);
}

/// A `relay` process whose stdout lines arrive, stamped, on a channel.
struct Lines {
    child: Child,
    lines: std::sync::mpsc::Receiver<(Instant, String)>,
}

impl Lines {
    fn start(args: &[&str]) -> Lines {
        let mut child = relay()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("relay starts");
        let (tx, lines) = std::sync::mpsc::channel();
        fn forward(
            from: impl std::io::Read + Send + 'static,
            tx: std::sync::mpsc::Sender<(Instant, String)>,
        ) {
            std::thread::spawn(move || {
                for line in BufReader::new(from).lines() {
                    let Ok(line) = line else { break };
                    println!("  {line}");
                    if tx.send((Instant::now(), line)).is_err() {
                        break;
                    }
                }
            });
        }
        forward(child.stdout.take().unwrap(), tx.clone());
        forward(child.stderr.take().unwrap(), tx);
        Lines { child, lines }
    }

    /// The first line containing `what` within `secs`, with its time.
    fn wait_for(&self, what: &str, secs: u64) -> Instant {
        let until = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((at, line)) if line.contains(what) => return at,
                Ok(_) => {}
                Err(_) => panic!("no line with {what:?} within {secs} s"),
            }
        }
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill -{name}");
    }

    /// Waits for the process to end (at most `secs`); its exit code.
    fn exit_code(&mut self, secs: u64) -> Option<i32> {
        let until = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(Instant::now() < until, "still running after {secs} s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pair of processes: `relay answer` and `relay offer --stay`, connected.
fn connected_pair() -> (Lines, Lines) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let answerer = Lines::start(&["answer", "--listen", &listen, "--echo"]);
    answerer.wait_for("POST offers to", 10);
    let url = format!("http://{listen}/relay");
    let offerer = Lines::start(&["offer", "--signal", &url, "--requests", "0", "--stay"]);
    offerer.wait_for("ready after", 15);
    answerer.wait_for("ready", 5);
    (answerer, offerer)
}

/// A remote killed outright (no goodbye) is noticed within the grace of 5 s
/// plus one check interval.
#[test]
fn a_killed_remote_is_noticed_within_seven_seconds() {
    let (mut answerer, mut offerer) = connected_pair();
    let killed = Instant::now();
    answerer.signal("KILL");
    let _ = answerer.exit_code(5);
    let closed = offerer.wait_for("closed: remote unreachable", 12);
    let after = closed.duration_since(killed);
    println!("the offerer noticed after {after:?}");
    assert!(after <= Duration::from_secs(7), "{after:?}");
    assert_eq!(offerer.exit_code(5), Some(0));
}

/// SIGTERM (and SIGINT) close every peer: the remote sees "closed by
/// remote" at once, and the process exits 0 within its one-second wait.
#[test]
fn a_terminated_answerer_closes_its_peers_first() {
    let (mut answerer, offerer) = connected_pair();
    let sent = Instant::now();
    answerer.signal("TERM");
    answerer.wait_for("terminated: closed 1 of 1 relay peers", 3);
    assert_eq!(answerer.exit_code(3), Some(0));
    let seen = offerer.wait_for("closed: closed by remote", 3);
    let after = seen.duration_since(sent);
    println!("the offerer saw the close after {after:?}");
    assert!(after <= Duration::from_millis(1500), "{after:?}");
}

#[test]
fn an_interrupted_offerer_closes_its_peer_first() {
    let (answerer, mut offerer) = connected_pair();
    let sent = Instant::now();
    offerer.signal("INT");
    offerer.wait_for("interrupted: closed", 3);
    assert_eq!(offerer.exit_code(3), Some(0));
    let seen = answerer.wait_for("closed: closed by remote", 3);
    assert!(seen.duration_since(sent) <= Duration::from_millis(1500));
}

/// `relay offer --rtp-in` refuses RTP packets too large for a pion
/// receiver, says so once with the fix, and relays the ones that fit.
#[test]
fn rtp_too_large_for_the_remote_is_refused_with_the_fix() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let answerer = Lines::start(&["answer", "--listen", &listen]);
    answerer.wait_for("POST offers to", 10);
    let rtp_port = free_port();
    let url = format!("http://{listen}/relay");
    let offerer = Lines::start(&[
        "offer",
        "--signal",
        &url,
        "--requests",
        "0",
        "--rtp-in",
        &rtp_port.to_string(),
    ]);
    offerer.wait_for("ready after", 15);
    let source = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let packet = |seq: u16, len: usize| {
        let mut p = vec![0u8; len];
        p[0] = 0x80;
        p[1] = 96;
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        p
    };
    // ffmpeg's default: 1,472 bytes with the RTP header. Then ones that fit.
    for seq in 0..5u16 {
        source
            .send_to(&packet(seq, 1472), ("127.0.0.1", rtp_port))
            .unwrap();
    }
    offerer.wait_for("-pkt_size 1200", 5);
    for seq in 5..50u16 {
        source
            .send_to(&packet(seq, 1200), ("127.0.0.1", rtp_port))
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    offerer.wait_for("relayed 45 RTP packets", 5);
    // Once only.
    let warnings = offerer
        .lines
        .try_iter()
        .filter(|(_, l)| l.contains("do not fit"))
        .count();
    assert_eq!(warnings, 0, "the warning came again");
}
