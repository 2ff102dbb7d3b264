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

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// A child process killed when the test ends, however it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sfu(port: u16, name: &str, relay_to: Option<u16>) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_relay-sfu"));
    cmd.args(["--listen", &format!("127.0.0.1:{port}"), "--name", name]);
    cmd.args(["--log", "relay_sfu=debug"]);
    if let Some(b) = relay_to {
        cmd.args(["--relay-to", &format!("http://127.0.0.1:{b}/relay")]);
    }
    let log = log_dir().join(format!("{name}.log"));
    let log = std::fs::File::create(&log).expect("log file");
    cmd.stdout(Stdio::null()).stderr(log);
    let child = Proc(cmd.spawn().expect("start relay-sfu"));
    wait_for_port(port, name);
    child
}

/// How many keyframe requests server A has sent its publisher so far, from
/// its debug log.
fn keyframe_requests_on_a() -> usize {
    std::fs::read_to_string(log_dir().join("sfu-a.log"))
        .unwrap_or_default()
        .matches("keyframe requested")
        .count()
}

fn log_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tmp/relay-sfu");
    std::fs::create_dir_all(&dir).expect("target/tmp");
    dir
}

/// One HTTP/1.1 request to chromedriver; the JSON body of its answer.
fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> Value {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("chromedriver");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("write");
    stream.write_all(body.as_bytes()).expect("write");
    let mut reader = BufReader::new(stream);
    let mut chunked = false;
    let mut length = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read");
        let line = line.trim_end().to_ascii_lowercase();
        if line.is_empty() {
            break;
        }
        if line.starts_with("transfer-encoding:") && line.contains("chunked") {
            chunked = true;
        }
        if let Some(n) = line.strip_prefix("content-length:") {
            length = n.trim().parse::<usize>().ok();
        }
    }
    let mut raw = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).expect("read");
            let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
            if n == 0 {
                break;
            }
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk).expect("read");
            raw.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = length {
        // chromedriver keeps the connection open despite `Connection: close`.
        raw.resize(n, 0);
        reader.read_exact(&mut raw).expect("read");
    } else {
        reader.read_to_end(&mut raw).expect("read");
    }
    serde_json::from_slice(&raw).unwrap_or(Value::Null)
}

/// A Chromium window driven over WebDriver.
struct Browser {
    port: u16,
    session: String,
}

impl Browser {
    fn open(port: u16) -> Browser {
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            "--autoplay-policy=no-user-gesture-required",
            "--allow-loopback-in-peer-connection",
            "--window-size=1000,800",
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium(), "args": args},
        }}});
        let v = http(port, "POST", "/session", Some(&caps));
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"))
            .to_string();
        Browser { port, session }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        http(self.port, method, &path, body)["value"].take()
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(&json!({ "url": url })));
    }

    /// Runs `body` (JavaScript returning a value) and returns its value.
    fn eval(&self, body: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(&json!({"script": body, "args": []})),
        )
    }

    /// Awaits a promise-returning expression; panics with its error.
    fn run(&self, expr: &str) {
        let script = format!(
            "const done = arguments[arguments.length - 1];\
             ({expr}).then(() => done('ok'), (e) => done('error: ' + e));"
        );
        let v = self.cmd(
            "POST",
            "/execute/async",
            Some(&json!({"script": script, "args": []})),
        );
        assert_eq!(v, json!("ok"), "{expr}");
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        let path = log_dir().join(format!("{name}.png"));
        if let Some(png) = self.cmd("GET", "/screenshot", None).as_str() {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(png)
                .unwrap_or_default();
            let _ = std::fs::write(&path, bytes);
        }
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let path = format!("/session/{}", self.session);
        http(self.port, "DELETE", &path, None);
    }
}

fn chromium() -> String {
    // Debian's /usr/bin/chromium is a shell wrapper; chromedriver wants the
    // browser itself.
    for c in ["/usr/lib/chromium/chromium", "/usr/bin/chromium"] {
        if std::path::Path::new(c).exists() {
            return c.into();
        }
    }
    "chromium".into()
}

/// Polls `check` every 250 ms until it returns `Some` or `limit` passes.
fn poll<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Video `i` on the watcher's page is playing: decoded frames over
/// `frames`, a width, and its time advancing by more than a second.
fn playing(watcher: &Browser, i: usize, frames: u64, limit: Duration) -> Option<Value> {
    let mut first_time: Option<f64> = None;
    poll(limit, || {
        let videos = watcher.eval("return sfu.videos();");
        let v = videos.get(i)?.clone();
        let time = v["time"].as_f64()?;
        if v["width"].as_u64()? == 0 || time == 0.0 {
            return None;
        }
        let t0 = *first_time.get_or_insert(time);
        (v["frames"].as_u64()? > frames && time - t0 > 1.0).then_some(v)
    })
}

#[test]
#[ignore = "needs chromium and chromium-driver (see .ci/run)"]
fn publisher_on_a_watcher_on_b() {
    let (port_a, port_b, port_driver) = (free_port(), free_port(), free_port());
    let _b = sfu(port_b, "sfu-b", None);
    let _a = sfu(port_a, "sfu-a", Some(port_b));
    let driver_log = std::fs::File::create(log_dir().join("chromedriver.log")).expect("log");
    let _driver = Proc(
        Command::new("chromedriver")
            .arg(format!("--port={port_driver}"))
            .stdout(Stdio::null())
            .stderr(driver_log)
            .spawn()
            .expect("chromedriver (apt-get install chromium-driver)"),
    );
    wait_for_port(port_driver, "chromedriver");

    let publisher = Browser::open(port_driver);
    let watcher = Browser::open(port_driver);
    let started = Instant::now();
    let fail = |what: &str| -> ! {
        let a = publisher.screenshot("publisher");
        let b = watcher.screenshot("watcher");
        let logs = watcher.eval("return document.getElementById('log').textContent;");
        let pub_logs = publisher.eval("return document.getElementById('log').textContent;");
        panic!(
            "{what}\nwatcher log:\n{}\npublisher log:\n{}\nscreenshots: {} {}\nserver logs: {}",
            logs.as_str().unwrap_or(""),
            pub_logs.as_str().unwrap_or(""),
            a.display(),
            b.display(),
            log_dir().display()
        );
    };

    publisher.goto(&format!("http://127.0.0.1:{port_a}/"));
    publisher.run("sfu.publish('e2e')");
    // Join a while later, so that the picture needs a keyframe the watcher
    // asks for (through B, the relay and A, to the publisher's browser).
    std::thread::sleep(Duration::from_secs(2));
    let before = keyframe_requests_on_a();
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
    let after = keyframe_requests_on_a();
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
