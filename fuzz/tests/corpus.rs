//! Replays the committed corpus (`corpus/<target>/`) through every fuzz
//! body, so `cargo test --workspace` catches a regression on any input the
//! fuzzers ever found interesting (or crashing). CI replays; it does not fuzz.

use std::path::Path;

fn replay(target: &str) {
    let body = relay_fuzz::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, body)| *body)
        .expect("a known target");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let files = relay_fuzz::corpus_files(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    assert!(!files.is_empty(), "{}: no corpus", dir.display());
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let outcome = std::panic::catch_unwind(|| body(&data));
        assert!(
            outcome.is_ok(),
            "{target}: {} breaks an invariant",
            file.display()
        );
    }
    println!("{target}: {} inputs replayed", files.len());
}

#[test]
fn signal_corpus() {
    replay("signal");
}

#[test]
fn envelope_corpus() {
    replay("envelope");
}

#[test]
fn extensions_corpus() {
    replay("extensions");
}

#[test]
fn track_signal_corpus() {
    replay("track_signal");
}

#[test]
fn peer_datagrams_corpus() {
    replay("peer_datagrams");
}

#[test]
fn pair_ops_corpus() {
    replay("pair_ops");
}

#[test]
fn every_target_has_a_test_and_a_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (name, _) in relay_fuzz::TARGETS {
        assert!(
            root.join("corpus").join(name).is_dir(),
            "corpus/{name} missing"
        );
        assert!(
            root.join("fuzz_targets")
                .join(format!("{name}.rs"))
                .is_file(),
            "fuzz_targets/{name}.rs missing"
        );
    }
}
