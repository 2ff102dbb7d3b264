//! relay-tokio and relay-smol share every module but `rt.rs` (and the crate
//! docs): this keeps the two copies from drifting apart.

#[test]
fn shared_modules_match_relay_tokio() {
    macro_rules! same {
        ($($file:literal),*) => {$(
            assert!(
                include_str!(concat!("../src/", $file))
                    == include_str!(concat!("../../relay-tokio/src/", $file)),
                "src/{} differs between relay-smol and relay-tokio",
                $file
            );
        )*};
    }
    same!(
        "channel.rs",
        "config.rs",
        "driver.rs",
        "endpoint.rs",
        "error.rs",
        "peer.rs",
        "request.rs"
    );
}
