//! Three relay-sfu servers in a NATS cluster, in a line by `--peers`:
//! A reaches only B, C reaches only B. Headless Chromium publishes on A and
//! watches on C, so every track crosses A → B → C.
//!
//! Needs Debian's `chromium`, `chromium-driver` and `nats-server` (`.ci/run`
//! installs them and starts nats-server, whose URL it passes in
//! `RELAY_SFU_NATS`; without it the test starts its own), so it is ignored
//! by default:
//!
//! ```sh
//! cargo test -p relay-sfu --test cluster -- --ignored --nocapture
//! ```

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The NATS server's URL, and the server if this test started it.
fn nats() -> (String, Option<Proc>) {
    if let Ok(url) = std::env::var("RELAY_SFU_NATS") {
        return (url, None);
    }
    let port = free_port();
    let log = std::fs::File::create(log_dir().join("nats-server.log")).expect("log");
    let server = Proc(
        Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server (apt-get install nats-server)"),
    );
    wait_for_port(port, "nats-server");
    (format!("nats://127.0.0.1:{port}"), Some(server))
}

fn get(port: u16, path: &str) -> Value {
    http(port, "GET", path, None)
}

/// The session `name` as `GET /sessions` on `port` shows it, if it exists.
fn session(port: u16, name: &str) -> Option<Value> {
    let all = get(port, "/sessions");
    (all["sessions"].as_array()?.iter())
        .find(|s| s["name"] == name)
        .cloned()
}

fn tracks(port: u16, name: &str) -> Vec<Value> {
    (session(port, name))
        .and_then(|s| s["tracks"].as_array().cloned())
        .unwrap_or_default()
}

/// The session's relay peers toward `remote` in `direction` ("in"/"out").
fn relays(port: u16, name: &str, remote: &str, direction: &str) -> usize {
    (session(port, name).and_then(|s| s["relays"].as_array().cloned()))
        .unwrap_or_default()
        .iter()
        .filter(|r| r["remote"] == remote && r["direction"] == direction)
        .count()
}

/// The servers `port` hears on NATS.
fn heard(port: u16) -> Vec<String> {
    (get(port, "/cluster")["servers"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s["name"].as_str().map(str::to_string))
        .collect()
}

#[test]
#[ignore = "needs chromium, chromium-driver and nats-server (see .ci/run)"]
fn a_track_crosses_three_servers_and_follows_its_watchers() {
    let (url, _nats) = nats();
    let (pa, pb, pc, pd) = (free_port(), free_port(), free_port(), free_port());
    let args = |peers: &str| -> Vec<String> {
        vec!["--nats".into(), url.clone(), "--peers".into(), peers.into()]
    };
    let _a = sfu(pa, "sfu-a", &args("sfu-b"));
    let b = sfu(pb, "sfu-b", &args("sfu-a,sfu-c"));
    let _c = sfu(pc, "sfu-c", &args("sfu-b"));
    let _driver = chromedriver(pd);
    let hears = |port: u16, names: &[&str]| {
        poll(Duration::from_secs(10), || {
            let h = heard(port);
            names.iter().all(|n| h.iter().any(|s| s == n)).then_some(())
        })
    };
    assert!(hears(pa, &["sfu-b", "sfu-c"]).is_some(), "A hears nobody");
    assert!(hears(pc, &["sfu-a", "sfu-b"]).is_some(), "C hears nobody");

    let publisher = Browser::open(pd);
    let watcher_c = Browser::open(pd);
    let fail = |what: &str| -> ! {
        fail_with(
            &[
                (&publisher, "cluster-publisher"),
                (&watcher_c, "cluster-watcher"),
            ],
            what,
        )
    };

    // 1. Published on A, watched on C: the tracks come through B, and the
    // watcher's keyframe request goes back over both hops to A.
    publisher.goto(&format!("http://127.0.0.1:{pa}/"));
    publisher.run("sfu.publish('mesh')");
    std::thread::sleep(Duration::from_secs(2));
    let before = keyframe_requests("sfu-a");
    assert_eq!(
        relays(pa, "mesh", "sfu-b", "out"),
        0,
        "A relays to B before anyone watches"
    );
    let joined = Instant::now();
    watcher_c.goto(&format!("http://127.0.0.1:{pc}/"));
    watcher_c.run("sfu.watch('mesh')");
    let Some(v) = playing(&watcher_c, 0, 30, Duration::from_secs(30)) else {
        fail("the video published on A did not play on C within 30 s");
    };
    println!(
        "cluster: video from A playing on C {:.1} s after the watcher joined: {v}",
        joined.elapsed().as_secs_f64()
    );
    let on_c = tracks(pc, "mesh");
    assert!(!on_c.is_empty(), "C lists no track");
    for t in &on_c {
        assert_eq!(
            t["path"],
            serde_json::json!(["sfu-a", "sfu-b", "sfu-c"]),
            "track path on C: {t}"
        );
    }
    let after = keyframe_requests("sfu-a");
    if after <= before {
        fail(&format!(
            "no keyframe request reached the publisher on A ({before} before, {after} after)"
        ));
    }
    println!("cluster: keyframe requests to the publisher on A: {before} before, {after} after");
    assert_eq!(relays(pa, "mesh", "sfu-b", "out"), 1, "A feeds B once");
    assert_eq!(relays(pb, "mesh", "sfu-c", "out"), 1, "B feeds C once");
    assert_eq!(relays(pa, "mesh", "sfu-c", "out"), 0, "A is not C's peer");

    // 2. A second watcher, on B: the same A -> B relay peer serves it.
    let watcher_b = Browser::open(pd);
    watcher_b.goto(&format!("http://127.0.0.1:{pb}/"));
    watcher_b.run("sfu.watch('mesh')");
    if playing(&watcher_b, 0, 30, Duration::from_secs(30)).is_none() {
        fail("a watcher on B did not play within 30 s");
    }
    assert_eq!(relays(pb, "mesh", "sfu-a", "in"), 1, "B pulls from A once");
    assert_eq!(relays(pa, "mesh", "sfu-b", "out"), 1, "A feeds B once");
    println!("cluster: a watcher on B plays over the one A -> B relay peer");

    // 3. C's watcher leaves: B -> C closes.
    let left = Instant::now();
    watcher_c.run("sfu.unwatch()");
    let closed = poll(Duration::from_secs(10), || {
        (relays(pb, "mesh", "sfu-c", "out") == 0 && relays(pc, "mesh", "sfu-b", "in") == 0)
            .then_some(())
    });
    if closed.is_none() {
        fail("B -> C did not close within 10 s of C's last watcher leaving");
    }
    println!(
        "cluster: B -> C closed {:.2} s after C's last watcher left",
        left.elapsed().as_secs_f64()
    );
    assert_eq!(
        relays(pb, "mesh", "sfu-a", "in"),
        1,
        "B still pulls for its watcher"
    );

    // 4. The publisher leaves: its tracks are gone everywhere within 1 s.
    let left = Instant::now();
    publisher.eval("sfu.stop(); return null;");
    let gone = poll(Duration::from_secs(5), || {
        [pa, pb, pc]
            .iter()
            .all(|p| tracks(*p, "mesh").is_empty())
            .then(|| left.elapsed())
    });
    let Some(gone) = gone else {
        fail("the publisher's tracks were not removed everywhere within 5 s");
    };
    println!(
        "cluster: the publisher's tracks gone on A, B and C {:.2} s after it left",
        gone.as_secs_f64()
    );
    assert!(
        gone <= Duration::from_secs(1),
        "tracks took {gone:?} to go (bound 1 s)"
    );

    // 5. B dies (SIGKILL) with a track crossing it: A and C clean up.
    publisher.run("sfu.publish('mesh')");
    watcher_c.run("sfu.watch('mesh')");
    if playing(&watcher_c, 0, 30, Duration::from_secs(30)).is_none() {
        fail("the second publishing did not play on C within 30 s");
    }
    let killed = Instant::now();
    drop(b);
    let clean = poll(Duration::from_secs(20), || {
        let c_clean = tracks(pc, "mesh").is_empty() && relays(pc, "mesh", "sfu-b", "in") == 0;
        let a_clean = relays(pa, "mesh", "sfu-b", "out") == 0;
        let forgotten =
            !heard(pa).iter().any(|s| s == "sfu-b") && !heard(pc).iter().any(|s| s == "sfu-b");
        (c_clean && a_clean && forgotten).then(|| killed.elapsed())
    });
    let Some(clean) = clean else {
        fail("A and C did not clean up within 20 s of B's SIGKILL");
    };
    println!(
        "cluster: B killed; A and C forgot it, closed its relays and dropped its tracks in {:.2} s",
        clean.as_secs_f64()
    );
    // A still has its publisher's tracks, C none.
    assert!(!tracks(pa, "mesh").is_empty(), "A lost its own tracks");
}
