//! The HTTP side of `--metrics`: `/metrics` (OpenMetrics text) and `/healthz` (200 while
//! the event loop turns, for the DaemonSet's probes), on a thread of its own so a slow
//! scrape never holds up the ring reader.
use std::{net::SocketAddr, sync::atomic::Ordering, time::Duration};

use anyhow::{anyhow, Result};
use prometheus_client::{encoding::text::encode, registry::Registry};
use tiny_http::{Header, Response, Server};

use super::Metrics;

/// `/healthz` fails when the event loop has not turned for this long (it turns at least
/// every 500 ms).
const STALL: Duration = Duration::from_secs(10);
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Listens on `addr` and serves `metrics` until the process ends.
pub fn serve(addr: SocketAddr, metrics: &Metrics) -> Result<()> {
    let server =
        Server::http(addr).map_err(|e| anyhow!("--metrics: cannot listen on {addr}: {e}"))?;
    let registry = metrics.registry();
    let alive = metrics.alive.clone();
    metrics.alive();
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                let response = match request.url() {
                    "/metrics" => scrape(&registry),
                    "/healthz" => {
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs());
                        if now.saturating_sub(alive.load(Ordering::Relaxed)) < STALL.as_secs() {
                            Response::from_string("ok\n")
                        } else {
                            Response::from_string("the event loop is stalled\n")
                                .with_status_code(503)
                        }
                    }
                    _ => Response::from_string("not found: /metrics or /healthz\n")
                        .with_status_code(404),
                };
                let _ = request.respond(response);
            }
        })?;
    Ok(())
}

fn scrape(registry: &Registry) -> Response<std::io::Cursor<Vec<u8>>> {
    let mut text = String::new();
    if let Err(e) = encode(&mut text, registry) {
        return Response::from_string(format!("encoding failed: {e}\n")).with_status_code(500);
    }
    let header = Header::from_bytes("Content-Type", OPENMETRICS).expect("a valid header");
    Response::from_string(text).with_header(header)
}
