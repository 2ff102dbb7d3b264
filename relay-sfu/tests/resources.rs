//! WHIP and WHEP resources over plain HTTP, no browser: a POST gives a
//! `Location`, `DELETE` on it ends the publisher or watcher, and a session
//! nobody takes part in any more is forgotten (`GET /sessions`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use str0m::media::{Direction, MediaKind};
use str0m::{Candidate, Rtc};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sfu() -> (Proc, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_relay-sfu"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--name", "sfu-r"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start relay-sfu");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "relay-sfu did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Proc(child), port)
}

/// One HTTP/1.1 request; returns the status, the `Location` header and the
/// body.
fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, Option<String>, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let location = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or_else(|| l.strip_prefix("Location: "))
        })
        .map(str::to_string);
    (status, location, body.to_string())
}

/// An SDP offer as a browser would make it: one video track to send, and
/// for a watcher a data channel.
fn offer(watcher: bool) -> String {
    let mut rtc = Rtc::builder()
        .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
        .build(Instant::now());
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let c = Candidate::host(socket.local_addr().unwrap(), "udp").unwrap();
    rtc.add_local_candidate(c);
    let mut change = rtc.sdp_api();
    if watcher {
        change.add_channel("sfu".into());
        change.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    } else {
        change.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    }
    let (offer, _pending) = change.apply().unwrap();
    offer.to_sdp_string()
}

fn sessions(port: u16) -> Vec<Value> {
    let (status, _, body) = http(port, "GET", "/sessions", "");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["sessions"].as_array().unwrap().clone()
}

#[test]
fn delete_ends_publishers_and_watchers_and_empty_sessions_are_forgotten() {
    let (_sfu, port) = sfu();
    let (status, publisher, body) = http(port, "POST", "/whip/room", &offer(false));
    assert_eq!(status, 201, "{body}");
    let publisher = publisher.expect("a Location for the publisher");
    assert!(publisher.starts_with("/whip/room/"), "{publisher}");
    let (status, watcher, body) = http(port, "POST", "/whep/room", &offer(true));
    assert_eq!(status, 201, "{body}");
    let watcher = watcher.expect("a Location for the watcher");
    assert!(watcher.starts_with("/whep/room/"), "{watcher}");

    let s = sessions(port);
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(
        (s[0]["name"].as_str(), s[0]["members"].as_u64()),
        (Some("room"), Some(2))
    );

    // The wrong session, or a resource that does not exist: 404.
    let other = publisher.replace("/room/", "/elsewhere/");
    assert_eq!(http(port, "DELETE", &other, "").0, 404);
    assert_eq!(http(port, "DELETE", "/whip/room/nobody", "").0, 404);
    assert_eq!(http(port, "DELETE", "/whip/room", "").0, 404);

    assert_eq!(http(port, "DELETE", &publisher, "").0, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while sessions(port)[0]["members"].as_u64() != Some(1) {
        assert!(Instant::now() < deadline, "{:?}", sessions(port));
        std::thread::sleep(Duration::from_millis(20));
    }
    // A resource ends once.
    assert_eq!(http(port, "DELETE", &publisher, "").0, 404);

    assert_eq!(http(port, "DELETE", &watcher, "").0, 200);
    while !sessions(port).is_empty() {
        assert!(Instant::now() < deadline, "{:?}", sessions(port));
        std::thread::sleep(Duration::from_millis(20));
    }
    // The name can be used again: a new session.
    assert_eq!(http(port, "POST", "/whip/room", &offer(false)).0, 201);
    assert_eq!(sessions(port).len(), 1);
}
