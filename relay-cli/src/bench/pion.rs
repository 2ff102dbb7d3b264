//! pion's relay measured in the same run: `relay-go-peer -bench` (pion
//! 3.1.56, ion-sfu's relay behaviour, both ends in its process; see
//! tests/interop/README.md, "Benchmark"), with the sizes of our run, read
//! back as JSON.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::CliError;

/// Where the Go peer is looked for when no path is given: the interop
/// build's output, from the current directory or from this crate's source.
pub fn find(given: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = given {
        return if path.is_file() {
            Ok(path.to_path_buf())
        } else {
            Err(format!("{} does not exist", path.display()))
        };
    }
    let candidates = [
        PathBuf::from("tests/interop/bin/relay-go-peer"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/interop/bin/relay-go-peer"),
    ];
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        "tests/interop/bin/relay-go-peer not found (build it with bash tests/interop/build.sh, \
         or pass --go-peer PATH)"
            .to_string()
    })
}

/// The sizes both benches use.
pub struct Sizes {
    pub window: Duration,
    pub connects: usize,
    pub requests: usize,
    pub pairs: usize,
    pub quick: bool,
    /// Parts of `memory,ready,requests,rtp` to run.
    pub parts: Vec<&'static str>,
}

/// pion's numbers, as `relay-go-peer -bench` printed them.
#[derive(Debug, Clone)]
pub struct Pion(pub Value);

impl Pion {
    /// A number under `part.key`, when that part was measured.
    pub fn get(&self, part: &str, key: &str) -> Option<f64> {
        self.0.get(part)?.get(key)?.as_f64()
    }

    /// Why a part was not measured, if it failed.
    pub fn error(&self, part: &str) -> Option<String> {
        self.0.get(part)?.get("error")?.as_str().map(str::to_owned)
    }
}

/// Runs the Go bench (a minute or so at full size) and parses its output.
pub async fn measure(path: &Path, sizes: &Sizes) -> Result<Pion, CliError> {
    let mut cmd = tokio::process::Command::new(path);
    cmd.arg("-bench")
        .arg("-bench-window")
        .arg(format!("{}", sizes.window.as_secs_f64()))
        .arg("-bench-connects")
        .arg(sizes.connects.to_string())
        .arg("-bench-requests")
        .arg(sizes.requests.to_string())
        .arg("-bench-pairs")
        .arg(sizes.pairs.to_string())
        .arg("-bench-only")
        .arg(sizes.parts.join(","));
    if sizes.quick {
        cmd.arg("-bench-quick");
    }
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let json = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| format!("{} printed no JSON (exit {})", path.display(), out.status))?;
    let value: Value = serde_json::from_str(json)?;
    Ok(Pion(value))
}
