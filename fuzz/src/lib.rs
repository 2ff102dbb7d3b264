//! Fuzz bodies for relay: the message parsers, one peer fed hostile
//! datagrams, and operation sequences on a connected pair.
//!
//! Each module has one `pub fn body(data: &[u8])`. The cargo-fuzz targets in
//! `fuzz_targets/` are one line each around these bodies, and this library is
//! compiled by every `cargo build --workspace`, so the targets cannot rot. A
//! body panics only when an invariant of relay breaks; any other input is
//! simply uninteresting. `cargo test -p relay-fuzz` replays the committed
//! corpus (`corpus/<target>/`) through the bodies.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod envelope;
pub mod extensions;
pub mod pair_ops;
pub mod peer_datagrams;
pub mod signal;
pub mod track_signal;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by [`replay_main`] when `RELAY_FUZZ_TRACE` is in the environment:
/// the operation bodies then print each operation (to read a crash).
static TRACE: AtomicBool = AtomicBool::new(false);

/// Whether bodies print their operations.
pub(crate) fn tracing() -> bool {
    TRACE.load(Ordering::Relaxed)
}

/// A fuzz body.
pub type Body = fn(&[u8]);

/// The targets, by name (as in `fuzz/Cargo.toml` and `corpus/<name>/`), with
/// their bodies.
pub const TARGETS: &[(&str, Body)] = &[
    ("signal", signal::body),
    ("envelope", envelope::body),
    ("extensions", extensions::body),
    ("track_signal", track_signal::body),
    ("peer_datagrams", peer_datagrams::body),
    ("pair_ops", pair_ops::body),
];

/// Every file under `dir`, recursively, sorted (so replays are reproducible).
pub fn corpus_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// `main` of a target outside `cargo fuzz`: runs `body` on every file named
/// on the command line (directories are walked), or on the target's
/// committed corpus when none is named. For reproducing a crash on stable:
/// `cargo run -p relay-fuzz --bin pair_ops -- crash-file`.
/// Set `RELAY_FUZZ_TRACE=1` to print each operation of the `peer_datagrams`
/// and `pair_ops` bodies.
pub fn replay_main(target: &str, body: Body) {
    TRACE.store(
        std::env::var_os("RELAY_FUZZ_TRACE").is_some(),
        Ordering::Relaxed,
    );
    let mut paths: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if paths.is_empty() {
        paths.push(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("corpus")
                .join(target),
        );
    }
    let mut count = 0;
    for path in paths {
        let files = if path.is_dir() {
            corpus_files(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        } else {
            vec![path]
        };
        for file in files {
            let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            eprintln!("{target}: {}", file.display());
            body(&data);
            count += 1;
        }
    }
    eprintln!("{target}: {count} inputs replayed, no invariant broken");
}
