//! The HTTP endpoint (hyper, on the agent's tokio runtime, keep-alive):
//! `/health`, Prometheus `/metrics`, and Graphite's read API
//! (`crate::graphite`) when the store is on. GET and POST (form bodies,
//! merged over the query string as graphite-web merges them), bounded
//! bodies, optional CORS, and a bound on renders running at once; the
//! page at `/` (`page`).

mod page;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::graphite::events::EventRequest;
use crate::graphite::tags::Method as TagMethod;
use crate::graphite::{Params, ReadApi, Reply};
use crate::net::accept_loop;
use crate::shutdown::Shutdown;
use crate::telemetry::{prometheus_text, unix_now_rounded, Readings, Telemetry};

/// What the HTTP endpoint reads.
pub struct HttpContext {
    /// The agent's counters.
    pub telemetry: Arc<Telemetry>,
    /// The agent's gauges, read per request.
    pub readings: Readings,
    /// The admin interface's health flag.
    pub healthy: Arc<AtomicBool>,
    /// When the agent started.
    pub started: Instant,
    /// Graphite's read API over the store (None: the store is off).
    pub graphite: Option<Arc<ReadApi>>,
    /// Transport settings.
    pub settings: HttpSettings,
    /// The live tap, streamed by `/tap`.
    pub tap: Arc<crate::tap::Tap>,
}

/// Transport bounds and CORS.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Renders evaluated at once; more wait up to a second, then get 429.
    pub max_concurrent_renders: usize,
    /// `Access-Control-Allow-Origin` to send (None: no CORS headers).
    pub cors_origin: Option<String>,
}

/// Serves HTTP until `shutdown`; open connections finish their request
/// (within 5 s).
pub async fn serve(listener: TcpListener, ctx: Arc<HttpContext>, shutdown: Shutdown) {
    let renders = Arc::new(Semaphore::new(ctx.settings.max_concurrent_renders.max(1)));
    let app = axum::Router::new().fallback(move |request: Request<Body>| {
        let ctx = ctx.clone();
        let renders = renders.clone();
        async move { handle(ctx, renders, request).await }
    });
    accept_loop("HTTP", &listener, shutdown.clone(), |stream, _| {
        let app = app.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    app.clone().oneshot(request.map(Body::new))
                });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = stop.wait() => {
                    connection.as_mut().graceful_shutdown();
                    // A tap stream never finishes by itself.
                    let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
                }
            }
        });
    })
    .await;
}

fn reply(status: u16, content_type: &str, body: impl Into<Body>) -> Response<Body> {
    let mut response = Response::new(body.into());
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

fn from_reply(r: Reply) -> Response<Body> {
    reply(r.status, r.content_type, r.body)
}

/// The query string and an urlencoded body, merged (body last).
fn params(query: Option<&str>, body: &[u8]) -> Params {
    let mut pairs: Vec<(String, String)> = query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    pairs.extend(form_urlencoded::parse(body).into_owned());
    Params(pairs)
}

async fn handle(
    ctx: Arc<HttpContext>,
    renders: Arc<Semaphore>,
    request: Request<Body>,
) -> Response<Body> {
    let cors = ctx.settings.cors_origin.clone();
    let mut response = route(ctx, renders, request).await;
    if let Some(origin) = cors.and_then(|o| HeaderValue::from_str(&o).ok()) {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Authorization, Content-Type"),
        );
    }
    response
}

async fn route(
    ctx: Arc<HttpContext>,
    renders: Arc<Semaphore>,
    request: Request<Body>,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    if parts.method == Method::OPTIONS {
        return reply(204, "text/plain", String::new());
    }
    if !matches!(parts.method, Method::GET | Method::POST | Method::HEAD) {
        return reply(405, "text/plain; charset=utf-8", "GET, POST or OPTIONS\n");
    }
    let body = match axum::body::to_bytes(body, ctx.settings.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return reply(
                413,
                "text/plain; charset=utf-8",
                format!(
                    "request body over {} bytes (http.max_body_bytes)\n",
                    ctx.settings.max_body_bytes
                ),
            )
        }
    };
    let path = parts.uri.path().trim_end_matches('/');
    let path = if path.is_empty() { "/" } else { path };
    let params = params(parts.uri.query(), &body);
    if let Some((content_type, text)) = page::asset(path) {
        let mut response = reply(200, content_type, text);
        response.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(page::CONTENT_SECURITY_POLICY),
        );
        return response;
    }
    match (path, &ctx.graphite) {
        ("/tap", _) => tap_stream(&ctx.tap, params.get("pattern").unwrap_or("*")),
        ("/health", _) => {
            if ctx.healthy.load(Ordering::Relaxed) {
                reply(200, "text/plain", "up\n")
            } else {
                reply(503, "text/plain", "down\n")
            }
        }
        // Prometheus, unless it is graphite-web's /metrics (find) alias.
        ("/metrics", Some(api)) if params.has("query") => {
            from_reply(api.find(&params, unix_now_rounded()))
        }
        ("/metrics", _) => reply(
            200,
            "text/plain; version=0.0.4",
            prometheus_text(
                &ctx.telemetry,
                &(ctx.readings)(),
                ctx.started.elapsed().as_secs(),
            ),
        ),
        ("/version", Some(api)) => from_reply(api.version()),
        ("/render", Some(api)) => render(api.clone(), renders, params).await,
        ("/metrics/find", Some(api)) => from_reply(api.find(&params, unix_now_rounded())),
        ("/metrics/expand", Some(api)) => from_reply(api.expand_names(&params)),
        ("/metrics/index.json", Some(api)) => from_reply(api.index_json(&params)),
        ("/functions", Some(api)) => from_reply(api.functions(None)),
        (p, Some(api)) if p.starts_with("/functions/") => {
            from_reply(api.functions(p.strip_prefix("/functions/")))
        }
        (p, Some(api)) if p == "/events" || p.starts_with("/events/") => {
            let query = self::params(parts.uri.query(), &[]);
            let request = EventRequest {
                post: parts.method == Method::POST,
                query: &query,
                body: &body,
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            match api.events(p, &request, now) {
                Some(r) => from_reply(r),
                None => reply(
                    404,
                    "text/plain; charset=utf-8",
                    format!("no endpoint {path}\n"),
                ),
            }
        }
        (p, Some(api)) if p == "/tags" || p.starts_with("/tags/") => {
            let method = if parts.method == Method::POST {
                TagMethod::Post
            } else {
                TagMethod::Get
            };
            match api.tags(p, method, &params) {
                Some(r) => from_reply(r),
                None => reply(
                    404,
                    "text/plain; charset=utf-8",
                    format!("no endpoint {path}\n"),
                ),
            }
        }
        (_, None) => reply(
            404,
            "text/plain; charset=utf-8",
            "not found (Graphite's read API needs the whisper store: whisper.enabled)\n",
        ),
        _ => reply(
            404,
            "text/plain; charset=utf-8",
            format!("no endpoint {path}\n"),
        ),
    }
}

/// `/tap?pattern=GLOB`: the tapped lines as server-sent events (`data:`
/// per line, an `event: missed` when a slow reader lost some), until the
/// client goes away.
fn tap_stream(tap: &Arc<crate::tap::Tap>, pattern: &str) -> Response<Body> {
    let Some(sub) = tap.subscribe(pattern) else {
        return reply(400, "text/plain; charset=utf-8", "pattern too complex\n");
    };
    let tick = tokio::time::interval(Duration::from_secs(1));
    // Opens the stream at once, so the browser sees the connection live.
    let opening = futures_util::stream::once(async {
        Ok::<_, std::convert::Infallible>(Bytes::from_static(b": tapping\n\n"))
    });
    let events = futures_util::stream::unfold((sub, tick), |(mut sub, mut tick)| async move {
        loop {
            let event = tokio::select! {
                line = sub.lines.recv() => {
                    let line = line?;
                    format!("data: {}\n\n", String::from_utf8_lossy(&line))
                }
                _ = tick.tick() => match sub.take_missed() {
                    0 => continue,
                    n => format!("event: missed\ndata: {n}\n\n"),
                },
            };
            return Some((Ok(Bytes::from(event)), (sub, tick)));
        }
    });
    let mut response = Response::new(Body::from_stream(futures_util::StreamExt::chain(
        opening, events,
    )));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn render(api: Arc<ReadApi>, renders: Arc<Semaphore>, params: Params) -> Response<Body> {
    let permit = match tokio::time::timeout(Duration::from_secs(1), renders.acquire_owned()).await {
        Ok(Ok(p)) => p,
        _ => {
            return reply(
                429,
                "text/plain; charset=utf-8",
                "too many renders at once (http.max_concurrent_renders)\n",
            )
        }
    };
    // A render of a few plain paths reads a few files from the page cache
    // in less time than handing it to a blocking thread and back takes;
    // anything with a glob may read thousands, so it goes off the workers.
    if is_small_render(&params) {
        let r = api.render(&params, unix_now_rounded());
        drop(permit);
        return from_reply(r);
    }
    let done = tokio::task::spawn_blocking(move || {
        let r = api.render(&params, unix_now_rounded());
        drop(permit);
        r
    })
    .await;
    match done {
        Ok(r) => from_reply(r),
        Err(_) => reply(500, "text/plain; charset=utf-8", "render failed\n"),
    }
}

/// Targets rendered inline on the runtime, at most.
const SMALL_RENDER_TARGETS: usize = 4;
/// Characters per inline target, at most: few paths fit in it.
const SMALL_RENDER_LENGTH: usize = 256;

/// Whether a render names only a few plain paths (one file each).
fn is_small_render(params: &Params) -> bool {
    let targets = params.all("target");
    targets.len() <= SMALL_RENDER_TARGETS
        && targets.iter().all(|t| {
            t.len() <= SMALL_RENDER_LENGTH
                && !crate::store::index::has_glob(t)
                && !t.contains("seriesByTag")
        })
}

/// Bytes of a body, for tests of the transport.
pub fn body_params(query: Option<&str>, body: &Bytes) -> Params {
    params(query, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_merged_after_the_query_string() {
        let p = body_params(
            Some("target=a&from=-1h"),
            &Bytes::from_static(b"target=sum(b.*)&from=-2h&format=json"),
        );
        assert_eq!(p.all("target"), ["a", "sum(b.*)"]);
        assert_eq!(p.get("from"), Some("-2h"));
    }
}
