//! An optional HTTP endpoint (off by default; bind it to loopback) for
//! operators who scrape rather than push: `GET /health` (200 "up" or 503
//! "down", the same flag as the admin `health` command) and `GET /metrics`
//! (Prometheus text format: the agent's own counters and gauges).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::net::accept_loop;
use crate::shutdown::Shutdown;
use crate::telemetry::{prometheus_text, Readings, Telemetry};

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
}

/// The response to a request for `path`: (status line, body).
pub fn respond(ctx: &HttpContext, path: &str) -> (&'static str, String) {
    match path {
        "/health" => {
            if ctx.healthy.load(Ordering::Relaxed) {
                ("200 OK", "up\n".into())
            } else {
                ("503 Service Unavailable", "down\n".into())
            }
        }
        "/metrics" => (
            "200 OK",
            prometheus_text(
                &ctx.telemetry,
                &(ctx.readings)(),
                ctx.started.elapsed().as_secs(),
            ),
        ),
        _ => ("404 Not Found", "not found\n".into()),
    }
}

/// Serves HTTP until `shutdown`. One request per connection.
pub async fn serve(listener: TcpListener, ctx: Arc<HttpContext>, shutdown: Shutdown) {
    accept_loop("HTTP", &listener, shutdown, |mut stream, _| {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let mut head = Vec::with_capacity(1024);
            let mut buf = [0u8; 1024];
            let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
            });
            if read.await.is_err() {
                return;
            }
            let text = String::from_utf8_lossy(&head);
            let mut parts = text.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let (status, body) = if method == "GET" {
                respond(&ctx, path.split('?').next().unwrap_or(""))
            } else {
                ("405 Method Not Allowed", "GET only\n".into())
            };
            let kind = if path.starts_with("/metrics") {
                "text/plain; version=0.0.4"
            } else {
                "text/plain"
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    })
    .await;
}
