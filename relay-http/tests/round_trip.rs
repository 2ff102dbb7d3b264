//! The client against the server, over loopback TCP: what both the `relay`
//! command and relay-sfu rely on.

use hyper::StatusCode;
use relay_http::{SignalError, post_offer, serve};
use relay_proto::PeerMeta;

async fn server(token: Option<&str>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(
        listener,
        token.map(String::from),
        |meta, offer| async move {
            if offer == b"refuse" {
                return Err((StatusCode::SERVICE_UNAVAILABLE, "too many peers".into()));
            }
            // Echo what arrived, so the test sees the meta and the body.
            let mut answer = format!("{}|{}|", meta.peer_id, meta.session_id).into_bytes();
            answer.extend(offer);
            Ok(answer)
        },
    ));
    format!("http://{addr}/relay")
}

#[tokio::test]
async fn offer_meta_and_answer_cross() {
    let url = server(None).await;
    let meta = PeerMeta::new("peer one", "s&1");
    let answer = post_offer(&url, &meta, b"{}".to_vec(), None).await.unwrap();
    assert_eq!(answer, b"peer one|s&1|{}");
}

#[tokio::test]
async fn a_query_already_in_the_url_is_kept() {
    let url = server(None).await;
    let meta = PeerMeta::new("p", "s");
    // The handler reads peer_id and session_id from the query; one already
    // in the URL must not get in their way.
    let answer = post_offer(&format!("{url}?region=eu"), &meta, b"o".to_vec(), None)
        .await
        .unwrap();
    assert_eq!(answer, b"p|s|o");
}

#[tokio::test]
async fn tokens_and_refusals_are_named() {
    let url = server(Some("secret")).await;
    let meta = PeerMeta::new("p", "s");
    match post_offer(&url, &meta, b"o".to_vec(), None).await {
        Err(SignalError::Refused(StatusCode::UNAUTHORIZED, why)) => {
            assert!(why.contains("bearer token"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    assert!(
        post_offer(&url, &meta, b"o".to_vec(), Some("secret"))
            .await
            .is_ok()
    );
    match post_offer(&url, &meta, b"refuse".to_vec(), Some("secret")).await {
        Err(SignalError::Refused(StatusCode::SERVICE_UNAVAILABLE, why)) => {
            assert_eq!(why, "too many peers")
        }
        other => panic!("{other:?}"),
    }
    match post_offer("http://127.0.0.1:1/relay", &meta, b"o".to_vec(), None).await {
        Err(SignalError::Unreachable(..)) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        post_offer("ftp://x/relay", &meta, b"o".to_vec(), None).await,
        Err(SignalError::BadUrl(_))
    ));
}
