//! The adapter over real loopback sockets, under tokio. The tests
//! themselves are in `shared/loopback.rs`, which relay-smol runs too.

use std::future::Future;
use std::time::Duration;

use relay_tokio as relay;

#[path = "shared/loopback.rs"]
mod loopback;

async fn sleep(d: Duration) {
    tokio::time::sleep(d).await;
}

/// Runs `f` on its own, not waited for.
fn spawn(f: impl Future<Output = ()> + Send + 'static) {
    tokio::spawn(f);
}

/// Runs `f` on its own; the result gives its output.
fn task<T: Send + 'static>(f: impl Future<Output = T> + Send + 'static) -> impl Future<Output = T> {
    let handle = tokio::spawn(f);
    async move { handle.await.unwrap() }
}

/// Bounds every test: a hang is a failure, not a stuck CI.
async fn within<T>(secs: u64, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("timed out")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_request_both_ways() {
    within(20, loopback::connect_and_request_both_ways()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_request_over_ipv6() {
    within(20, loopback::connect_and_request_over_ipv6()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_as_a_stream_and_emits() {
    within(20, loopback::events_as_a_stream_and_emits()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_channel_both_ways() {
    within(20, loopback::data_channel_both_ways()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_is_noticed_by_the_remote() {
    within(20, loopback::close_is_noticed_by_the_remote()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_on_a_peer_that_just_closed_return() {
    within(30, loopback::calls_on_a_peer_that_just_closed_return()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_signal_ends_the_offer_and_frees_the_socket() {
    within(
        10,
        loopback::a_failing_signal_ends_the_offer_and_frees_the_socket(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_never_comes_times_out() {
    within(10, loopback::an_answer_that_never_comes_times_out()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_timeout_cancel_and_unanswered_requests() {
    within(
        20,
        loopback::request_timeout_cancel_and_unanswered_requests(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_falls_behind_stalls_nothing() {
    within(20, loopback::a_consumer_that_falls_behind_stalls_nothing()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_peers_share_one_socket() {
    within(60, loopback::fifty_peers_share_one_socket()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stun_and_nat_addresses_are_announced() {
    within(10, loopback::stun_and_nat_addresses_are_announced()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nat_rebinding_in_front_of_the_offerer_is_followed() {
    within(
        30,
        loopback::a_nat_rebinding_in_front_of_the_offerer_is_followed(),
    )
    .await
}
