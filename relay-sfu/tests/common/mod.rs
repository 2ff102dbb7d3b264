//! What the browser tests share: child processes, ports, a WebDriver
//! client for headless Chromium, and polling.
#![allow(dead_code)] // each test uses its part

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// A child process killed when the test ends, however it ends.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A relay-sfu process named `name` on HTTP port `port`, with `args`
/// more; its log goes to `target/tmp/relay-sfu/{name}.log`.
pub fn sfu(port: u16, name: &str, args: &[String]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_relay-sfu"));
    cmd.args(["--listen", &format!("127.0.0.1:{port}"), "--name", name]);
    cmd.args(["--log", "relay_sfu=debug"]);
    cmd.args(args);
    let log = log_dir().join(format!("{name}.log"));
    let log = std::fs::File::create(&log).expect("log file");
    cmd.stdout(Stdio::null()).stderr(log);
    let child = Proc(cmd.spawn().expect("start relay-sfu"));
    wait_for_port(port, name);
    child
}

/// How many keyframe requests server `name` has sent its publishers so
/// far, from its debug log.
pub fn keyframe_requests(name: &str) -> usize {
    std::fs::read_to_string(log_dir().join(format!("{name}.log")))
        .unwrap_or_default()
        .matches("keyframe requested")
        .count()
}

/// chromedriver on `port`, logging to `target/tmp/relay-sfu/chromedriver.log`.
pub fn chromedriver(port: u16) -> Proc {
    let log = std::fs::File::create(log_dir().join("chromedriver.log")).expect("log");
    let driver = Proc(
        Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("chromedriver (apt-get install chromium-driver)"),
    );
    wait_for_port(port, "chromedriver");
    driver
}

pub fn log_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tmp/relay-sfu");
    std::fs::create_dir_all(&dir).expect("target/tmp");
    dir
}

/// One HTTP/1.1 request to chromedriver; the JSON body of its answer.
pub fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> Value {
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
pub struct Browser {
    port: u16,
    session: String,
}

impl Browser {
    pub fn open(port: u16) -> Browser {
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

    pub fn cmd(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        http(self.port, method, &path, body)["value"].take()
    }

    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(&json!({ "url": url })));
    }

    /// Runs `body` (JavaScript returning a value) and returns its value.
    pub fn eval(&self, body: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(&json!({"script": body, "args": []})),
        )
    }

    /// Awaits a promise-returning expression; panics with its error.
    pub fn run(&self, expr: &str) {
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

    pub fn screenshot(&self, name: &str) -> PathBuf {
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

pub fn chromium() -> String {
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
pub fn poll<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
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
pub fn playing(watcher: &Browser, i: usize, frames: u64, limit: Duration) -> Option<Value> {
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

/// Panics with `what`, each page's log and screenshot (named as given),
/// and where the servers' logs are.
pub fn fail_with(pages: &[(&Browser, &str)], what: &str) -> ! {
    let mut report = format!("{what}\n");
    for (page, name) in pages {
        let log = page.eval("return document.getElementById('log').textContent;");
        let shot = page.screenshot(name);
        report += &format!(
            "{name} log:\n{}\n{name} screenshot: {}\n",
            log.as_str().unwrap_or(""),
            shot.display()
        );
    }
    panic!("{report}server logs: {}", log_dir().display());
}
