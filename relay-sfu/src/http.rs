//! HTTP: the page, WHIP and WHEP for browsers, `POST /relay` for other
//! servers (PROTOCOL.md A.5), and the client side of A.5 for `--relay-to`.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use relay_tokio::PeerMeta;
use tokio::net::{TcpListener, TcpStream};

use crate::Server;

/// Largest SDP or relay signal accepted.
const MAX_BODY: usize = 64 * 1024;

const PAGE: &str = include_str!("page.html");

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Reply {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .unwrap_or_default()
}

fn refuse(status: StatusCode, why: &str) -> Reply {
    reply(status, "text/plain", format!("{why}\n"))
}

/// Serves HTTP on `listener` until the process ends.
pub async fn serve(listener: TcpListener, server: Arc<Server>) {
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                continue;
            }
        };
        let server = server.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let server = server.clone();
                async move { Ok::<_, Infallible>(route(&server, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!("connection from {from}: {e}");
            }
        });
    }
}

async fn route(server: &Arc<Server>, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let method = req.method().clone();
    let (endpoint, session) = match path.trim_start_matches('/').split_once('/') {
        Some((e, s)) => (e, s),
        None => (path.trim_start_matches('/'), ""),
    };
    match (&method, endpoint) {
        (&Method::GET, "") => reply(StatusCode::OK, "text/html; charset=utf-8", PAGE),
        (&Method::POST, "whip" | "whep") => {
            if session.is_empty()
                || session.len() > 64
                || !(session.bytes()).all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
            {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "session names are 1 to 64 of A-Z a-z 0-9 - _",
                );
            }
            let Some(body) = body(req).await else {
                return refuse(StatusCode::PAYLOAD_TOO_LARGE, "offer too large");
            };
            let offer = String::from_utf8_lossy(&body);
            let session = server.session(session);
            let answer = if endpoint == "whip" {
                crate::browser::publish(server.ip, &server.name, session, &offer).await
            } else {
                crate::browser::watch(server.ip, session, &offer).await
            };
            match answer {
                Ok(sdp) => reply(StatusCode::CREATED, "application/sdp", sdp),
                Err(why) => refuse(StatusCode::BAD_REQUEST, &why),
            }
        }
        (&Method::POST, "relay") => {
            let mut peer_id = None;
            let mut session_id = None;
            for pair in query.split('&') {
                match pair.split_once('=') {
                    Some(("peer_id", v)) => peer_id = Some(decode(v)),
                    Some(("session_id", v)) => session_id = Some(decode(v)),
                    _ => {}
                }
            }
            let (Some(peer_id), Some(session_id)) = (peer_id, session_id) else {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "peer_id and session_id are required query parameters",
                );
            };
            let Some(offer) = body(req).await else {
                return refuse(StatusCode::PAYLOAD_TOO_LARGE, "offer too large");
            };
            let meta = PeerMeta::new(peer_id, session_id);
            match crate::relay::accept(server, meta, &offer).await {
                Ok(answer) => reply(StatusCode::OK, "application/json", answer),
                Err(e) => refuse(StatusCode::BAD_REQUEST, &format!("offer refused: {e}")),
            }
        }
        (_, "" | "whip" | "whep" | "relay") => {
            refuse(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => refuse(StatusCode::NOT_FOUND, "not found"),
    }
}

async fn body(req: Request<Incoming>) -> Option<Bytes> {
    let collected = Limited::new(req.into_body(), MAX_BODY).collect().await;
    collected.ok().map(|b| b.to_bytes())
}

/// Posts a relay offer to `url` (A.5) and returns the answer.
pub async fn post_offer(
    url: String,
    meta: PeerMeta,
    offer: Vec<u8>,
) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> {
    let uri: Uri = url.parse()?;
    let authority = uri.authority().ok_or("the relay URL needs a host")?.clone();
    if uri.scheme_str() != Some("http") {
        return Err(format!("{url}: only http:// URLs are supported").into());
    }
    let addr = format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(80)
    );
    let stream = TcpStream::connect(&addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let target = format!(
        "{}?peer_id={}&session_id={}",
        uri.path(),
        encode(&meta.peer_id),
        encode(&meta.session_id)
    );
    let req = Request::builder()
        .method(Method::POST)
        .uri(target)
        .header("host", authority.as_str())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(offer)))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await?
        .to_bytes();
    if status != StatusCode::OK {
        let why = String::from_utf8_lossy(&body);
        return Err(format!("answer refused: HTTP {status}: {}", why.trim()).into());
    }
    Ok(body.to_vec())
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Decodes a percent-encoded query value.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_round_trip() {
        for s in ["plain", "with space", "a&b=c", "ünïcode", "100%"] {
            assert_eq!(decode(&encode(s)), s);
        }
        assert_eq!(decode("%zz%4"), "%zz%4");
    }
}
