//! `relay-http`: HTTP signalling for relay peers (PROTOCOL.md A.5), the
//! convention the `relay` command and relay-sfu speak, and anything that
//! wants to interoperate with them: `POST <url>?peer_id=P&session_id=S`
//! with the offer as the body; `200` with the answer, or `4xx`/`5xx` with a
//! one-line reason.
//!
//! - [`post_offer`] is the client: the signal function of an offering peer.
//! - [`answer`] handles one request on the answering side (bearer token,
//!   query, body limit), for a server of one's own; [`serve`] is a whole
//!   server of `POST /relay` on a listener.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use relay_proto::PeerMeta;
use tokio::net::{TcpListener, TcpStream};

/// Largest offer or answer body accepted (the core refuses signals over
/// 64 KiB anyway).
pub const MAX_BODY: usize = 64 * 1024;

/// Why the signal round trip failed, in words a person can act on.
#[derive(Debug)]
pub enum SignalError {
    /// The URL is not `http://host:port/path`.
    BadUrl(String),
    /// Nothing answered at the URL's address.
    Unreachable(String, std::io::Error),
    /// The HTTP exchange broke off.
    Http(String),
    /// The answering side refused, with its reason.
    Refused(StatusCode, String),
}

impl std::fmt::Display for SignalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignalError::BadUrl(u) => write!(f, "signal URL {u:?} is not http://host:port/path"),
            SignalError::Unreachable(a, e) => write!(f, "signal URL unreachable ({a}): {e}"),
            SignalError::Http(e) => write!(f, "signal exchange failed: {e}"),
            SignalError::Refused(s, why) => write!(f, "answer refused: HTTP {s}: {why}"),
        }
    }
}

impl std::error::Error for SignalError {}

/// Posts an offer to `url` (whose own query, if any, is kept) with the
/// peer's meta in the query, and returns the answer body.
pub async fn post_offer(
    url: &str,
    meta: &PeerMeta,
    offer: Vec<u8>,
    token: Option<&str>,
) -> Result<Vec<u8>, SignalError> {
    let uri: Uri = url.parse().map_err(|_| SignalError::BadUrl(url.into()))?;
    if uri.scheme_str() != Some("http") {
        return Err(SignalError::BadUrl(url.into()));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| SignalError::BadUrl(url.into()))?
        .clone();
    let addr = format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(80)
    );
    let stream = TcpStream::connect(&addr)
        .await
        .map_err(|e| SignalError::Unreachable(addr.clone(), e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| SignalError::Http(e.to_string()))?;
    tokio::spawn(conn);
    let path = uri.path();
    let sep = if uri.query().is_some() { "&" } else { "?" };
    let target = format!(
        "{path}{}{}{sep}peer_id={}&session_id={}",
        if uri.query().is_some() { "?" } else { "" },
        uri.query().unwrap_or(""),
        encode(&meta.peer_id),
        encode(&meta.session_id)
    );
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(target)
        .header("host", authority.as_str())
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req
        .body(Full::new(Bytes::from(offer)))
        .map_err(|e| SignalError::Http(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| SignalError::Http(e.to_string()))?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| SignalError::Http(e.to_string()))?
        .to_bytes();
    if status != StatusCode::OK {
        let why = String::from_utf8_lossy(&body);
        return Err(SignalError::Refused(
            status,
            why.lines().next().unwrap_or("").to_string(),
        ));
    }
    Ok(body.to_vec())
}

/// What the answering side decides for one offer: the answer, or a status
/// with a one-line reason.
pub type Answered = Result<Vec<u8>, (StatusCode, String)>;

/// The response type of [`answer`].
pub type Reply = Response<Full<Bytes>>;

/// Serves `POST /relay` on `listener` until the task is dropped: each offer
/// goes to `answer` with the peer's meta, after the checks of [`answer`].
pub async fn serve<F, Fut>(listener: TcpListener, token: Option<String>, answer: F)
where
    F: Fn(PeerMeta, Vec<u8>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Answered> + Send + 'static,
{
    let answer = Arc::new(answer);
    let token = Arc::new(token);
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                continue;
            }
        };
        let answer = answer.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let answer = answer.clone();
                let token = token.clone();
                async move { Ok::<_, Infallible>(handle(req, from, &token, &*answer).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!("connection from {from}: {e}");
            }
        });
    }
}

async fn handle<F, Fut>(
    req: Request<Incoming>,
    from: SocketAddr,
    token: &Option<String>,
    answer_with: &F,
) -> Reply
where
    F: Fn(PeerMeta, Vec<u8>) -> Fut,
    Fut: Future<Output = Answered>,
{
    if req.uri().path() != "/relay" {
        return text(
            StatusCode::NOT_FOUND,
            "not found: offers go to POST /relay".into(),
        );
    }
    tracing::debug!(%from, "relay offer");
    answer(req, token.as_deref(), answer_with).await
}

fn text(status: StatusCode, body: String) -> Reply {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(body + "\n")))
        .unwrap_or_default()
}

/// Answers one A.5 request, whatever its path: checks the method, the
/// bearer token (when `token` is set), the `peer_id` and `session_id`
/// query parameters and the body size, then hands the meta and the offer
/// to `answer_with`, whose answer (or refusal) becomes the response.
pub async fn answer<F, Fut>(req: Request<Incoming>, token: Option<&str>, answer_with: F) -> Reply
where
    F: FnOnce(PeerMeta, Vec<u8>) -> Fut,
    Fut: Future<Output = Answered>,
{
    let reply = text;
    if req.method() != Method::POST {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: POST the offer".into(),
        );
    }
    if let Some(expected) = token {
        let given = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(expected) {
            return reply(
                StatusCode::UNAUTHORIZED,
                "unauthorized: missing or wrong bearer token".into(),
            );
        }
    }
    let query = parse_query(req.uri().query().unwrap_or(""));
    let (Some(peer_id), Some(session_id)) = (query.get("peer_id"), query.get("session_id")) else {
        return reply(
            StatusCode::BAD_REQUEST,
            "bad request: peer_id and session_id are required query parameters".into(),
        );
    };
    let meta = PeerMeta::new(peer_id.clone(), session_id.clone());
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("offer too large: at most {MAX_BODY} bytes"),
            );
        }
    };
    tracing::debug!(peer = %meta.peer_id, session = %meta.session_id, "offer received");
    match answer_with(meta, body.to_vec()).await {
        Ok(answer) => Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(answer)))
            .unwrap_or_default(),
        Err((status, why)) => reply(status, why),
    }
}

/// Percent-encodes a query value (everything but unreserved characters).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_round_trip() {
        for s in ["plain", "with space", "a&b=c", "ünïcode", "100%"] {
            assert_eq!(decode(&encode(s)), s);
        }
        let q = parse_query("peer_id=a%20b&session_id=s&x");
        assert_eq!(q["peer_id"], "a b");
        assert_eq!(q["session_id"], "s");
        assert_eq!(q["x"], "");
        assert_eq!(decode("%zz%4"), "%zz%4");
    }
}
