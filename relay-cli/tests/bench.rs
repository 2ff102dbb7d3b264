//! `relay bench --quick`: every measurement is made and lands in the JSON.
//! The numbers themselves are never checked against anything: they are for
//! the bench, not for a timed test.

use std::process::Command;

/// Every metric of ours the bench reports.
const METRICS: &[&str] = &[
    "ready_both_median_ms",
    "ready_both_p99_ms",
    "ready_offerer_median_ms",
    "ready_answerer_median_ms",
    "request_rtt_median_us",
    "request_rtt_p99_us",
    "requests_per_s_64_in_flight",
    "udp_limit_packets_per_s",
    "rtp_lossless_packets_per_s",
    "rtp_lossless_mbit_per_s",
    "rtp_ratio_to_udp_limit",
    "rtp_cpu_us_per_packet",
    "rss_kib_per_idle_pair",
];

/// Metrics pion is measured on when the Go peer is built.
const PION_METRICS: &[&str] = &[
    "ready_both_median_ms",
    "request_rtt_median_us",
    "requests_per_s_64_in_flight",
    "rtp_lossless_packets_per_s",
    "rtp_cpu_us_per_packet",
    "rss_kib_per_idle_pair",
];

#[test]
fn quick_bench_reports_every_metric() {
    let json = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("relay-bench-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&json);
    let out = Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(["bench", "--quick", "--json"])
        .arg(&json)
        .output()
        .expect("relay runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}\n{stderr}");
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("offer to Ready on both sides"), "{stdout}");

    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("the JSON file")).expect("JSON");
    assert_eq!(doc["quick"], true);
    let metrics = doc["metrics"].as_object().expect("metrics");
    for key in METRICS {
        let m = &metrics[*key];
        let value = m["value"].as_f64();
        assert!(
            value.is_some_and(|v| v > 0.0 && v.is_finite()),
            "{key}: {m}"
        );
        assert!(m["unit"].is_string(), "{key}: {m}");
    }
    for key in [
        "ready_both_median_ms",
        "rtp_cpu_us_per_packet",
        "rss_kib_per_idle_pair",
    ] {
        let m = &metrics[key];
        assert!(m["target"].is_object(), "{key} has a target: {m}");
        assert!(m["met"].is_boolean(), "{key} has a verdict: {m}");
        assert!(
            m["miss_factor"].as_f64().is_some_and(|f| f >= 1.0),
            "{key}: {m}"
        );
    }
    // The search always ends with a confirmed rate, and says how many
    // step-downs it took.
    assert!(
        metrics["rtp_confirmation_steps"]["value"]
            .as_f64()
            .is_some_and(|s| s >= 0.0),
        "{}",
        metrics["rtp_confirmation_steps"]
    );
    // pion: measured in the same run (then with numbers and ratios) or not,
    // with the reason.
    let pion = &doc["pion"];
    if pion["measured"] == true {
        for key in PION_METRICS {
            let v = metrics[*key]["pion"].as_f64();
            assert!(v.is_some_and(|v| v > 0.0), "{key}: pion {v:?}");
            assert!(metrics[*key]["ratio_to_pion"].as_f64().is_some(), "{key}");
        }
    } else {
        assert!(pion["reason"].is_string(), "{pion}");
        assert!(stdout.contains("pion: not measured"), "{stdout}");
    }
    let _ = std::fs::remove_file(&json);
}
