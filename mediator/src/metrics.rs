//! A tiny Prometheus endpoint: `GET /metrics` in the text exposition format, anything else 404.
//!
//! One request at a time, each bounded in size (4 KiB) and time (2 s), `Connection: close`: this serves a
//! scraper on a private address, not the public.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::shared::{Shared, Snapshot, ABORT_LABELS, REFUSAL_LABELS};

const REQUEST_LIMIT: usize = 4096;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &shared)).await;
    }
}

async fn answer(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < REQUEST_LIMIT {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let line = request.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (parts.next(), parts.next());
    let response = match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => {
            let body = render(&shared.snapshot());
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                body.len(),
                body
            )
        }
        _ => String::from(
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\nConnection: close\r\n\r\nnot found\n",
        ),
    };
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// The metrics, in the Prometheus text format.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::with_capacity(4096);
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP p2psc_mediator_{name} {help}");
        let _ = writeln!(out, "# TYPE p2psc_mediator_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "p2psc_mediator_{name}{labels} {value}");
        }
    };
    let t = &s.table;
    metric(
        "connections",
        "gauge",
        "Connections open now.",
        &[("", s.connections as u64)],
    );
    metric(
        "waiting",
        "gauge",
        "Peers waiting in the table now.",
        &[("", s.waiting as u64)],
    );
    metric(
        "connections_accepted_total",
        "counter",
        "Connections admitted.",
        &[("", s.accepted)],
    );
    let refused: Vec<(String, u64)> = REFUSAL_LABELS
        .iter()
        .map(|label| (format!("{{limit=\"{label}\"}}"), s.refused_by(label)))
        .collect();
    let samples: Vec<(&str, u64)> = refused.iter().map(|(l, v)| (l.as_str(), *v)).collect();
    metric(
        "connections_refused_total",
        "counter",
        "Connections refused with Abort(TooManyConnections), by limit.",
        &samples,
    );
    metric(
        "disconnects_total",
        "counter",
        "Connections the peer closed or reset before the mediator was done.",
        &[("", s.disconnects)],
    );
    metric(
        "waiting_disconnects_total",
        "counter",
        "Waiting peers that disconnected (their entry was removed).",
        &[("", s.waiting_disconnects)],
    );
    metric(
        "registrations_total",
        "counter",
        "Verified registrations offered to the table.",
        &[("", t.registrations)],
    );
    metric(
        "matches_total",
        "counter",
        "Pairs matched.",
        &[("", t.matches)],
    );
    metric(
        "replaced_total",
        "counter",
        "Registrations replaced by a newer one of the same key.",
        &[("", t.replaced)],
    );
    metric(
        "evicted_total",
        "counter",
        "Waiting peers evicted (RetryAfter) to make room for a registration from a lighter network.",
        &[("", t.evicted)],
    );
    metric(
        "expired_total",
        "counter",
        "Waits that ran out.",
        &[("", t.expired)],
    );
    metric(
        "table_full_total",
        "counter",
        "Registrations answered with RetryAfter because the table was full.",
        &[("", t.full)],
    );
    let labels: Vec<(String, u64)> = ABORT_LABELS
        .iter()
        .map(|(reason, label)| (format!("{{reason=\"{label}\"}}"), s.aborts(*reason)))
        .chain(std::iter::once((
            String::from("{reason=\"other\"}"),
            t.aborts[0],
        )))
        .collect();
    let samples: Vec<(&str, u64)> = labels.iter().map(|(l, v)| (l.as_str(), *v)).collect();
    metric(
        "aborts_total",
        "counter",
        "Sessions aborted, by reason.",
        &samples,
    );
    metric(
        "uptime_seconds",
        "gauge",
        "Seconds since the server started.",
        &[("", s.uptime.as_secs())],
    );
    out
}
