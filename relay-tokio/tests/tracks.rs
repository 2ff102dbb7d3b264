//! Media tracks over real loopback sockets, under tokio. The tests
//! themselves are in `shared/tracks.rs`, which relay-smol runs too.

use std::time::Duration;

use relay_tokio as relay;

#[path = "shared/tracks.rs"]
mod tracks;

async fn sleep(d: Duration) {
    tokio::time::sleep(d).await;
}

/// Bounds every test: a hang is a failure, not a stuck CI.
async fn within<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("timed out")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtp_crosses_both_ways_in_order() {
    within(20, tracks::rtp_crosses_both_ways_in_order()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyframe_request_reaches_the_sender() {
    within(20, tracks::a_keyframe_request_reaches_the_sender()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_tracks_end_their_readers() {
    within(20, tracks::removed_tracks_end_their_readers()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_track_fails_when_the_remote_is_gone() {
    within(20, tracks::adding_a_track_fails_when_the_remote_is_gone()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaced_burst_arrives_whole() {
    within(20, tracks::an_unpaced_burst_arrives_whole()).await
}
