//! Media tracks over real loopback sockets, under smol. The tests
//! themselves are relay-tokio's `tests/shared/tracks.rs`, run here on this
//! adapter.

use std::time::Duration;

use async_io::Timer;
use futures_lite::future;
use relay_smol as relay;

#[path = "../../relay-tokio/tests/shared/tracks.rs"]
mod tracks;

async fn sleep(d: Duration) {
    Timer::after(d).await;
}

/// Runs a test, bounded: a hang is a failure, not a stuck CI.
fn within<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    smol::block_on(future::or(f, async {
        Timer::after(Duration::from_secs(secs)).await;
        panic!("timed out")
    }))
}

#[test]
fn rtp_crosses_both_ways_in_order() {
    within(20, tracks::rtp_crosses_both_ways_in_order())
}

#[test]
fn a_keyframe_request_reaches_the_sender() {
    within(20, tracks::a_keyframe_request_reaches_the_sender())
}

#[test]
fn removed_tracks_end_their_readers() {
    within(20, tracks::removed_tracks_end_their_readers())
}

#[test]
fn adding_a_track_fails_when_the_remote_is_gone() {
    within(20, tracks::adding_a_track_fails_when_the_remote_is_gone())
}

#[test]
fn an_unpaced_burst_arrives_whole() {
    within(20, tracks::an_unpaced_burst_arrives_whole())
}
