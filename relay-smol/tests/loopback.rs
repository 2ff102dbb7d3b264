//! The adapter over real loopback sockets, under smol. The tests
//! themselves are relay-tokio's `tests/shared/loopback.rs`, run here on this
//! adapter.

use std::future::Future;
use std::time::Duration;

use async_io::Timer;
use futures_lite::future;
use relay_smol as relay;

#[path = "../../relay-tokio/tests/shared/loopback.rs"]
mod loopback;

async fn sleep(d: Duration) {
    Timer::after(d).await;
}

/// Runs `f` on its own, not waited for.
fn spawn(f: impl Future<Output = ()> + Send + 'static) {
    smol::spawn(f).detach();
}

/// Runs `f` on its own; the result gives its output.
fn task<T: Send + 'static>(f: impl Future<Output = T> + Send + 'static) -> impl Future<Output = T> {
    smol::spawn(f)
}

/// Runs a test, bounded: a hang is a failure, not a stuck CI.
fn within<T>(secs: u64, f: impl Future<Output = T>) -> T {
    smol::block_on(future::or(f, async {
        Timer::after(Duration::from_secs(secs)).await;
        panic!("timed out")
    }))
}

#[test]
fn connect_and_request_both_ways() {
    within(20, loopback::connect_and_request_both_ways())
}

#[test]
fn connect_and_request_over_ipv6() {
    within(20, loopback::connect_and_request_over_ipv6())
}

#[test]
fn events_as_a_stream_and_emits() {
    within(20, loopback::events_as_a_stream_and_emits())
}

#[test]
fn data_channel_both_ways() {
    within(20, loopback::data_channel_both_ways())
}

#[test]
fn close_is_noticed_by_the_remote() {
    within(20, loopback::close_is_noticed_by_the_remote())
}

#[test]
fn calls_on_a_peer_that_just_closed_return() {
    within(30, loopback::calls_on_a_peer_that_just_closed_return())
}

#[test]
fn a_failing_signal_ends_the_offer_and_frees_the_socket() {
    within(
        10,
        loopback::a_failing_signal_ends_the_offer_and_frees_the_socket(),
    )
}

#[test]
fn an_answer_that_never_comes_times_out() {
    within(10, loopback::an_answer_that_never_comes_times_out())
}

#[test]
fn request_timeout_cancel_and_unanswered_requests() {
    within(
        20,
        loopback::request_timeout_cancel_and_unanswered_requests(),
    )
}

#[test]
fn a_consumer_that_falls_behind_stalls_nothing() {
    within(20, loopback::a_consumer_that_falls_behind_stalls_nothing())
}

#[test]
fn fifty_peers_share_one_socket() {
    within(60, loopback::fifty_peers_share_one_socket())
}

#[test]
fn stun_and_nat_addresses_are_announced() {
    within(10, loopback::stun_and_nat_addresses_are_announced())
}

#[test]
fn a_nat_rebinding_in_front_of_the_offerer_is_followed() {
    within(
        30,
        loopback::a_nat_rebinding_in_front_of_the_offerer_is_followed(),
    )
}
