//! End to end in headless Chromium: a fake-camera publisher on server A,
//! which relays to server B (another process), and a watcher on B.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs
//! them), so it is ignored by default:
//!
//! ```sh
//! cargo test -p relay-sfu --test browser -- --ignored --nocapture
//! ```
//!
//! Drives Chromium through chromedriver's W3C WebDriver protocol (plain
//! HTTP/1.1 on loopback). On failure it saves screenshots of both pages to
//! `target/tmp/` and prints their paths.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
#[ignore = "needs chromium and chromium-driver (see .ci/run)"]
fn publisher_on_a_watcher_on_b() {
    let (port_a, port_b, port_driver) = (free_port(), free_port(), free_port());
    let _b = sfu(port_b, "sfu-b", &[]);
    let relay_to = format!("http://127.0.0.1:{port_b}/relay");
    let _a = sfu(port_a, "sfu-a", &["--relay-to".into(), relay_to]);
    let _driver = chromedriver(port_driver);

    let publisher = Browser::open(port_driver);
    let watcher = Browser::open(port_driver);
    let started = Instant::now();
    let fail =
        |what: &str| -> ! { fail_with(&[(&publisher, "publisher"), (&watcher, "watcher")], what) };

    publisher.goto(&format!("http://127.0.0.1:{port_a}/"));
    publisher.run("sfu.publish('e2e')");
    // Join a while later, so that the picture needs a keyframe the watcher
    // asks for (through B, the relay and A, to the publisher's browser).
    std::thread::sleep(Duration::from_secs(2));
    let before = keyframe_requests("sfu-a");
    let joined = Instant::now();
    watcher.goto(&format!("http://127.0.0.1:{port_b}/"));
    watcher.run("sfu.watch('e2e')");

    let Some(v) = playing(&watcher, 0, 30, Duration::from_secs(30)) else {
        fail("the watcher's video did not play within 30 s");
    };
    println!(
        "browser: video playing on B {:.1} s after the watcher joined \
         ({:.1} s after publishing began): {v}",
        joined.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    // The watcher's keyframe request went B -> relay -> A and A asked the
    // publisher's browser for one (A has no watchers of its own).
    let after = keyframe_requests("sfu-a");
    if after <= before {
        fail(&format!(
            "no keyframe request reached the publisher on A after the watcher \
             joined on B ({before} before, {after} after)"
        ));
    }
    println!(
        "browser: keyframe requests to the publisher on A: {before} before the watcher joined, {after} after"
    );

    // A message from the publisher reaches the watcher across the relay.
    publisher.run("Promise.resolve(sfu.send('hello from A'))");
    let got = poll(Duration::from_secs(10), || {
        let m = watcher.eval("return sfu.messages.map((m) => m.text);");
        m.as_array()?
            .iter()
            .any(|t| t == "hello from A")
            .then_some(())
    });
    if got.is_none() {
        fail("the publisher's message did not reach the watcher");
    }
    println!("browser: message crossed the relay");

    // Many watchers and publishers per session: a second watcher on B gets
    // the picture too, and a second publisher on A reaches both watchers.
    let watcher2 = Browser::open(port_driver);
    watcher2.goto(&format!("http://127.0.0.1:{port_b}/"));
    watcher2.run("sfu.watch('e2e')");
    let Some(v) = playing(&watcher2, 0, 30, Duration::from_secs(30)) else {
        fail("a second watcher on B did not play within 30 s");
    };
    println!("browser: second watcher on B playing: {v}");
    let publisher2 = Browser::open(port_driver);
    publisher2.goto(&format!("http://127.0.0.1:{port_a}/"));
    publisher2.run("sfu.publish('e2e')");
    for (who, w) in [("first", &watcher), ("second", &watcher2)] {
        let Some(v) = playing(w, 1, 30, Duration::from_secs(30)) else {
            fail(&format!(
                "the second publisher's video did not play on the {who} watcher within 30 s"
            ));
        };
        println!("browser: second publisher playing on the {who} watcher: {v}");
    }

    // A track added after the relay is up reaches the watcher too.
    publisher.run("sfu.addTrack()");
    let Some(v) = playing(&watcher, 2, 30, Duration::from_secs(30)) else {
        fail("the track added later did not play within 30 s");
    };
    println!("browser: second track playing on B: {v}");

    // Each publisher leaves in turn: its tracks, and only its, leave B's page.
    for (who, p, remaining) in [("first", &publisher, 1), ("second", &publisher2, 0)] {
        let left = Instant::now();
        p.eval("sfu.stop(); return null;");
        let gone = poll(Duration::from_secs(15), || {
            let n = watcher.eval("return sfu.videos().length;").as_u64()?;
            (n == remaining).then_some(())
        });
        if gone.is_none() {
            fail(&format!(
                "the {who} publisher's tracks were not removed on B within 15 s"
            ));
        }
        println!(
            "browser: the {who} publisher's tracks removed on B {:.1} s after it left",
            left.elapsed().as_secs_f64()
        );
    }
}
