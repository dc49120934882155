//! The operator's HTTP endpoint: `/metrics` (Prometheus, OpenMetrics text), `/healthz` (liveness) and
//! `/readyz` (readiness, 503 once shutdown has begun, so a load balancer stops sending peers while the
//! live sessions are told `ShuttingDown`).
//!
//! Served with axum; the metrics are encoded by prometheus-client from one [`Snapshot`] taken per scrape,
//! so the counters stay plain atomics and the table's own [`Stats`](p2psc::proto::mediator::Stats). This
//! serves a scraper on a private address, not the public.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;

use crate::relay::Ended;
use crate::shared::{Shared, Snapshot, ABORT_LABELS, MAPPING_LABELS, REFUSAL_LABELS};
use crate::shared::{ABORT_LABELS as LABELS, RELAY_REFUSALS};

/// The content type of the OpenMetrics text format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(shared);
    if let Err(e) = axum::serve(listener, router).await {
        tracing::warn!(error = %e, "metrics endpoint failed");
    }
}

async fn metrics(state: axum::extract::State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, OPENMETRICS)],
        render(&state.snapshot()),
    )
}

async fn ready(state: axum::extract::State<Arc<Shared>>) -> impl IntoResponse {
    if state.shutting_down.load(Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

/// The metrics of `s`, in the OpenMetrics text format (names start with `p2psc_mediator_`).
pub fn render(s: &Snapshot) -> String {
    let mut registry = Registry::with_prefix("p2psc_mediator");
    registry.register_collector(Box::new(SnapshotCollector(*s)));
    let mut out = String::with_capacity(4096);
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

#[derive(Debug)]
struct SnapshotCollector(Snapshot);

/// One metric: a name (counters get `_total` from the encoder), help, type, and its samples by label.
fn family(
    encoder: &mut DescriptorEncoder,
    (name, help, unit): (&str, &str, Option<Unit>),
    kind: MetricType,
    samples: &[(Option<(&str, &str)>, u64)],
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, unit.as_ref(), kind)?;
    for &(label, value) in samples {
        let encode = |m| match kind {
            MetricType::Counter => ConstCounter::new(value).encode(m),
            _ => ConstGauge::new(value as i64).encode(m),
        };
        let labels: &[(&str, &str)] = match &label {
            Some(pair) => std::slice::from_ref(pair),
            None => &[],
        };
        encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge};
        let (s, t) = (&self.0, &self.0.table);
        let one = |value: u64| [(None, value)];
        let e = &mut encoder;
        family(
            e,
            ("connections", "Connections open now.", None),
            Gauge,
            &one(s.connections as u64),
        )?;
        family(
            e,
            ("waiting", "Peers waiting in the table now.", None),
            Gauge,
            &one(s.waiting as u64),
        )?;
        family(
            e,
            ("connections_accepted", "Connections admitted.", None),
            Counter,
            &one(s.accepted),
        )?;
        let refused: Vec<_> = REFUSAL_LABELS
            .iter()
            .map(|&label| (Some(("limit", label)), s.refused_by(label)))
            .collect();
        let help = "Connections refused with Abort(TooManyConnections), by limit.";
        family(e, ("connections_refused", help, None), Counter, &refused)?;
        let help = "Connections the peer closed or reset before the mediator was done.";
        family(e, ("disconnects", help, None), Counter, &one(s.disconnects))?;
        let help = "Waiting peers that disconnected (their entry was removed).";
        family(
            e,
            ("waiting_disconnects", help, None),
            Counter,
            &one(s.waiting_disconnects),
        )?;
        let help = "Verified registrations offered to the table.";
        family(
            e,
            ("registrations", help, None),
            Counter,
            &one(t.registrations),
        )?;
        family(
            e,
            ("matches", "Pairs matched.", None),
            Counter,
            &one(t.matches),
        )?;
        let help = "Registrations replaced by a newer one of the same key.";
        family(e, ("replaced", help, None), Counter, &one(t.replaced))?;
        let help = "Waiting peers evicted (RetryAfter) to make room for a registration from a lighter network.";
        family(e, ("evicted", help, None), Counter, &one(t.evicted))?;
        family(
            e,
            ("expired", "Waits that ran out.", None),
            Counter,
            &one(t.expired),
        )?;
        let help = "Registrations answered with RetryAfter: the table was full, or their network had its share.";
        family(e, ("table_full", help, None), Counter, &one(t.full))?;
        let aborts: Vec<_> = ABORT_LABELS
            .iter()
            .map(|(reason, label)| (Some(("reason", *label)), s.aborts(*reason)))
            .chain([(Some(("reason", "other")), t.aborts[0])])
            .collect();
        family(
            e,
            ("aborts", "Sessions aborted, by reason.", None),
            Counter,
            &aborts,
        )?;
        version_2(e, s)?;
        let help = "Seconds since the server started.";
        family(
            e,
            ("uptime", help, Some(Unit::Seconds)),
            Gauge,
            &one(s.uptime.as_secs()),
        )
    }
}

/// The metrics of version 2: probes and the relay.
fn version_2(e: &mut DescriptorEncoder, s: &Snapshot) -> Result<(), std::fmt::Error> {
    use MetricType::{Counter, Gauge};
    let (one, t) = (|value: u64| [(None, value)], &s.table);
    let help = "Probes recorded (the first for its nonce, with room in the store).";
    family(
        e,
        ("probes_recorded", help, None),
        Counter,
        &one(s.probes_recorded),
    )?;
    let classes: Vec<_> = MAPPING_LABELS
        .iter()
        .enumerate()
        .map(|(code, &label)| (Some(("mapping", label)), s.classified[code]))
        .collect();
    let help = "Version-2 registrations by the mapping class their probe gave.";
    family(
        e,
        ("registrations_classified", help, None),
        Counter,
        &classes,
    )?;
    family(
        e,
        ("relays_open", "Relays open now.", None),
        Gauge,
        &one(t.relays_open),
    )?;
    let help = "Relays joined (both peers asked and the relay was admitted).";
    family(e, ("relays_started", help, None), Counter, &one(t.relays))?;
    let refusals: Vec<_> = RELAY_REFUSALS
        .iter()
        .filter_map(|r| LABELS.iter().find(|(reason, _)| reason == r))
        .map(|(reason, label)| (Some(("reason", *label)), s.aborts(*reason)))
        .collect();
    let help = "Relay requests refused, by reason (one per connection told).";
    family(e, ("relay_refusals", help, None), Counter, &refusals)?;
    let ended: Vec<_> = Ended::ALL
        .iter()
        .map(|end| (Some(("cause", end.label())), s.relays_ended_by(end.label())))
        .collect();
    family(
        e,
        ("relays_ended", "Relays ended, by cause.", None),
        Counter,
        &ended,
    )?;
    let help = "Bytes relayed, both directions of every relay.";
    family(
        e,
        ("relayed", help, Some(Unit::Bytes)),
        Counter,
        &one(s.relayed_bytes),
    )
}
