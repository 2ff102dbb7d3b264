//! End to end with real ffmpeg: a test pattern encoded to RTP goes into
//! `relay offer --rtp-in`, crosses to `relay answer --rtp-out`, and ffmpeg
//! decodes the far side. Needs ffmpeg (Debian's; `.ci/run` installs it):
//! `cargo test -p relay-cli --test ffmpeg -- --ignored`.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SECONDS: u32 = 4;
const FPS: u32 = 30;

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An even UDP port whose successor is free too (RTP, then RTCP).
fn free_udp_pair() -> u16 {
    for _ in 0..100 {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if port.is_multiple_of(2)
            && port < 65_000
            && UdpSocket::bind(("127.0.0.1", port + 1)).is_ok()
        {
            return port;
        }
    }
    panic!("no free UDP port pair");
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawns a command whose stdout lines arrive on a channel.
fn spawn_lines(cmd: &mut Command) -> (Kill, mpsc::Receiver<String>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            println!("| {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (Kill(child), rx)
}

fn wait_line(rx: &mpsc::Receiver<String>, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if pred(&line) => return line,
            Ok(_) => {}
            Err(_) => panic!("no line for {what} within 20 s"),
        }
    }
}

/// Frames ffmpeg reports decoded (its last `frame=` figure).
fn frames_in(log: &str) -> u32 {
    log.rsplit("frame=")
        .next()
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn relay_through(codec: &str, encoder: &[&str]) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ffmpeg-{}", codec.replace('/', "-")));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let http = free_tcp_port();
    let rtp_in = free_udp_pair();
    let rtp_out = free_udp_pair();
    let relay = env!("CARGO_BIN_EXE_relay");

    let (_answer, answer_lines) = spawn_lines(Command::new(relay).args([
        "answer",
        "--listen",
        &format!("127.0.0.1:{http}"),
        "--rtp-out",
        &format!("127.0.0.1:{rtp_out}"),
        "--sdp-dir",
        dir.to_str().unwrap(),
    ]));
    wait_line(&answer_lines, "the answerer listening", |l| {
        l.contains("POST offers")
    });
    let (_offer, offer_lines) = spawn_lines(Command::new(relay).args([
        "offer",
        "--signal",
        &format!("http://127.0.0.1:{http}/relay"),
        "--rtp-in",
        &rtp_in.to_string(),
        "--codec",
        codec,
        "--pt",
        "96",
    ]));
    wait_line(&offer_lines, "Ready", |l| l.starts_with("ready after"));
    let sdp_line = wait_line(&answer_lines, "the SDP file", |l| l.contains("SDP in "));
    let sdp = sdp_line
        .rsplit("SDP in ")
        .next()
        .unwrap()
        .trim()
        .to_string();

    // The decoder first, so it sees the stream from the start.
    let decoder = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-protocol_whitelist",
            "file,udp,rtp",
            "-i",
            &sdp,
            "-f",
            "null",
            "-",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg runs");
    std::thread::sleep(Duration::from_millis(500));
    let t = SECONDS.to_string();
    let src = format!("testsrc=size=320x240:rate={FPS}");
    let dest = format!("rtp://127.0.0.1:{rtp_in}?pkt_size=1200");
    let mut enc_args = vec![
        "-hide_banner",
        "-nostdin",
        "-re",
        "-f",
        "lavfi",
        "-i",
        &src,
        "-t",
        &t,
    ];
    enc_args.extend_from_slice(encoder);
    enc_args.extend_from_slice(&["-payload_type", "96", "-f", "rtp", &dest]);
    let sent = Command::new("ffmpeg")
        .args(&enc_args)
        .output()
        .expect("ffmpeg encodes");
    assert!(
        sent.status.success(),
        "encoder: {}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let sent_frames = frames_in(&String::from_utf8_lossy(&sent.stderr));
    std::thread::sleep(Duration::from_secs(2));
    // SIGINT makes ffmpeg print its final count and exit.
    let _ = Command::new("kill")
        .args(["-INT", &decoder.id().to_string()])
        .status();
    let out = decoder.wait_with_output().unwrap();
    let decoded = frames_in(&String::from_utf8_lossy(&out.stderr));
    println!("{codec}: ffmpeg sent {sent_frames} frames, the far side decoded {decoded}");
    assert!(
        sent_frames >= SECONDS * FPS - 2,
        "the encoder sent {sent_frames}"
    );
    assert!(
        decoded as f64 >= 0.95 * sent_frames as f64,
        "{codec}: decoded {decoded} of {sent_frames}"
    );
}

#[test]
#[ignore = "needs ffmpeg (installed by .ci/run)"]
fn h264_test_pattern_crosses_the_relay() {
    relay_through(
        "video/H264",
        &[
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
            "-tune",
            "zerolatency",
            "-g",
            "30",
            "-pix_fmt",
            "yuv420p",
        ],
    );
}

#[test]
#[ignore = "needs ffmpeg (installed by .ci/run)"]
fn vp8_test_pattern_crosses_the_relay() {
    relay_through(
        "video/VP8",
        &[
            "-c:v",
            "libvpx",
            "-deadline",
            "realtime",
            "-b:v",
            "500k",
            "-g",
            "30",
        ],
    );
}
