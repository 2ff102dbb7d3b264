//! HTTP: the page, WHIP and WHEP for browsers, and `POST /relay` for other
//! servers (PROTOCOL.md A.5, through relay-http).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

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
    let method = req.method().clone();
    let (endpoint, session) = match path.trim_start_matches('/').split_once('/') {
        Some((e, s)) => (e, s),
        None => (path.trim_start_matches('/'), ""),
    };
    match (&method, endpoint) {
        (&Method::GET, "") => reply(StatusCode::OK, "text/html; charset=utf-8", PAGE),
        (&Method::GET, "sessions") if session.is_empty() => sessions(server),
        (&Method::GET, "cluster") if session.is_empty() => cluster(server),
        (&Method::DELETE, "whip" | "whep") => {
            // `DELETE /whip/{session}/{id}`: the resource POST gave.
            let Some((session, id)) = session.split_once('/') else {
                return refuse(StatusCode::NOT_FOUND, "DELETE the resource the POST gave");
            };
            if server.clients.stop(session, id) {
                reply(StatusCode::OK, "text/plain", "ended\n")
            } else {
                refuse(StatusCode::NOT_FOUND, "no such publisher or watcher")
            }
        }
        (&Method::POST, "whip" | "whep") => {
            if !crate::valid_session_name(session) {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "session names are 1 to 64 of A-Z a-z 0-9 - _",
                );
            }
            let Some(body) = body(req).await else {
                return refuse(StatusCode::PAYLOAD_TOO_LARGE, "offer too large");
            };
            let offer = String::from_utf8_lossy(&body);
            let name = session;
            let session = server.session(name);
            let clients = server.clients.clone();
            let answer = if endpoint == "whip" {
                crate::browser::publish(server.ip, &server.name, session, clients, &offer).await
            } else {
                crate::browser::watch(server.ip, session, clients, &offer).await
            };
            match answer {
                Ok((sdp, id)) => {
                    let mut r = reply(StatusCode::CREATED, "application/sdp", sdp);
                    let location = format!("/{endpoint}/{name}/{id}");
                    if let Ok(v) = hyper::header::HeaderValue::from_str(&location) {
                        r.headers_mut().insert(hyper::header::LOCATION, v);
                    }
                    r
                }
                Err(why) => refuse(StatusCode::BAD_REQUEST, &why),
            }
        }
        (&Method::POST, "relay") => {
            // PROTOCOL.md A.5, as the `relay` command serves it.
            relay_http::answer(req, None, |meta, offer| async move {
                crate::relay::accept(server, meta, &offer)
                    .await
                    .map_err(|e| (StatusCode::BAD_REQUEST, format!("offer refused: {e}")))
            })
            .await
        }
        (_, "" | "whip" | "whep" | "relay" | "sessions" | "cluster") => {
            refuse(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => refuse(StatusCode::NOT_FOUND, "not found"),
    }
}

/// `GET /sessions`: each session with its members and tracks, as JSON.
fn sessions(server: &Server) -> Reply {
    let list: Vec<_> = server
        .sessions()
        .iter()
        .map(|s| {
            let tracks: Vec<_> = s
                .tracks()
                .iter()
                .map(|t| {
                    serde_json::json!({
                        "stream": t.meta.stream_id,
                        "track": t.meta.track_id,
                        "codec": t.codec.mime_type,
                        "origin": match t.origin {
                            crate::session::Origin::Local => "local",
                            crate::session::Origin::Relay => "relay",
                        },
                        "path": t.path,
                        "keyframe_requests": t.keyframe_requests(),
                    })
                })
                .collect();
            let relays: Vec<_> = (s.relays().into_iter())
                .map(|r| serde_json::json!({"remote": r.remote, "direction": r.direction, "via": r.via}))
                .collect();
            serde_json::json!({
                "name": s.name,
                "members": s.members(),
                "watchers": s.watchers(),
                "tracks": tracks,
                "relays": relays,
            })
        })
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({ "sessions": list })).unwrap_or_default();
    reply(StatusCode::OK, "application/json", body)
}

/// `GET /cluster`: this server's name and the servers it hears on NATS.
fn cluster(server: &Server) -> Reply {
    let servers: Vec<_> = (server.cluster.iter())
        .flat_map(|c| c.servers())
        .map(|(name, age, tracks)| {
            serde_json::json!({"name": name, "heard_ms_ago": age.as_millis() as u64, "tracks": tracks})
        })
        .collect();
    let body = serde_json::json!({
        "name": server.name,
        "nats": server.cluster.is_some(),
        "servers": servers,
    });
    reply(StatusCode::OK, "application/json", body.to_string())
}

async fn body(req: Request<Incoming>) -> Option<Bytes> {
    let collected = Limited::new(req.into_body(), MAX_BODY).collect().await;
    collected.ok().map(|b| b.to_bytes())
}
