//! Prometheus metrics through the `metrics` facade.
//!
//! [`install`] sets a Prometheus recorder as the process's global recorder
//! (once; later calls return the same handle), and [`MetricsHandle::render`]
//! gives the text exposition format, for an HTTP server's `/metrics`.
//! [`serve`] is a tiny listener for processes that have no server.
//! Without an installed recorder every metric call is a no-op.
//!
//! Labels have bounded cardinality: DLQ names, rule names, sink names and
//! topics, never record ids, keys or error messages.
//!
//! A scrape sees whole ticks: a tick publishes the gauges of all its
//! samples and alert states while holding [`PUBLISHING`] for writing, and
//! [`MetricsHandle::render`] holds it for reading, so a scrape shows the
//! previous tick or the next one, never a DLQ whose pending count is new and
//! whose age is not yet.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `dlq_pending_records` | gauge | `dlq` |
//! | `dlq_oldest_pending_age_seconds` | gauge (0 when nothing is pending) | `dlq` |
//! | `dlq_dead_lettered_records_total` | counter (the store's total) | `dlq` |
//! | `dlq_replayed_records_total` | counter | `dlq` |
//! | `dlq_archived_records_total` | counter | `dlq` |
//! | `dlq_parked_records` | gauge | `dlq` |
//! | `dlq_inflow_records_per_minute` | gauge | `dlq` |
//! | `dlq_expiry_risk_records` | gauge | `dlq` |
//! | `dlq_alerts_firing` | gauge (1 firing, 0 not) | `rule`, `dlq` |
//! | store-specific gauges: `dlq_sqs_visible_messages`, `dlq_sqs_in_flight_messages`, `dlq_sqs_delayed_messages` | gauge | `dlq` |
//! | `dlq_monitor_samples_total` | counter | |
//! | `dlq_monitor_notifications_total` | counter | `sink`, `result` (`delivered`, `failed`) |
//! | `dlq_processor_*_total` | counters of the processors (see `dlq_core::process`) | `topic` |

use crate::alert::{AlertKey, AlertState};
use crate::history::Sample;
use crate::{Error, Result};
use metrics::{counter, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, RwLock};
use std::thread::JoinHandle;

/// The exposition text's media type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Written while a tick publishes its gauges, read while a scrape renders.
static PUBLISHING: RwLock<()> = RwLock::new(());

/// A handle on the installed Prometheus recorder.
#[derive(Clone)]
pub struct MetricsHandle {
    inner: PrometheusHandle,
}

impl std::fmt::Debug for MetricsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsHandle")
    }
}

impl MetricsHandle {
    /// Every metric in the Prometheus text exposition format, with the
    /// gauges of whole monitor ticks only.
    pub fn render(&self) -> String {
        let _whole_ticks = PUBLISHING.read().unwrap_or_else(|p| p.into_inner());
        self.inner.render()
    }
}

/// Installs the Prometheus recorder as the global recorder, once per
/// process; later calls return the same handle. Fails when another global
/// recorder was installed first.
pub fn install() -> Result<MetricsHandle> {
    if let Some(h) = HANDLE.get() {
        return Ok(MetricsHandle { inner: h.clone() });
    }
    let mut err = None;
    let handle = HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        if let Err(e) = metrics::set_global_recorder(recorder) {
            err = Some(e.to_string());
        }
        handle
    });
    if let Some(e) = err {
        return Err(Error::Metrics(format!(
            "another metrics recorder is installed in this process: {e}"
        )));
    }
    describe();
    Ok(MetricsHandle {
        inner: handle.clone(),
    })
}

/// The installed handle, if [`install`] ran.
pub fn handle() -> Option<MetricsHandle> {
    HANDLE.get().map(|h| MetricsHandle { inner: h.clone() })
}

/// The exposition text, if [`install`] ran.
pub fn render() -> Option<String> {
    handle().map(|h| h.render())
}

fn describe() {
    describe_gauge!("dlq_pending_records", "Records waiting in the DLQ.");
    describe_gauge!(
        "dlq_oldest_pending_age_seconds",
        "Age of the oldest pending record (0 when none is pending)."
    );
    describe_counter!(
        "dlq_dead_lettered_records_total",
        "Records the DLQ received (the store's total; on Kafka, those the topic retains)."
    );
    describe_counter!(
        "dlq_replayed_records_total",
        "Records replayed from the DLQ."
    );
    describe_counter!(
        "dlq_archived_records_total",
        "Records moved from the DLQ to an archive store (dlq archive)."
    );
    describe_gauge!(
        "dlq_parked_records",
        "Records parked after too many failed replays."
    );
    describe_gauge!(
        "dlq_inflow_records_per_minute",
        "Records dead-lettered per minute over the last sample interval."
    );
    describe_gauge!(
        "dlq_expiry_risk_records",
        "Pending records that retention deletes within the expiry window."
    );
    describe_gauge!(
        "dlq_alerts_firing",
        "1 while the alert rule fires for the DLQ."
    );
    describe_counter!(
        "dlq_monitor_samples_total",
        "DLQ samples taken by the monitor."
    );
    describe_counter!(
        "dlq_monitor_notifications_total",
        "Alert notifications sent, by sink and result."
    );
    describe_counter!(
        dlq_core::process::PROCESSED_METRIC,
        "Records a processor read."
    );
    describe_counter!(
        dlq_core::process::DELIVERED_METRIC,
        "Records a processor delivered to its output."
    );
    describe_counter!(
        dlq_core::process::DEAD_LETTERED_METRIC,
        "Records a processor sent to a DLQ."
    );
    describe_counter!(
        dlq_core::process::RETRIES_METRIC,
        "Handler retries of a processor."
    );
}

/// Publishes a tick: the per-DLQ metrics of its samples and the alert
/// states, all at once for scrapes (see the module's doc).
pub(crate) fn publish_tick<'a>(
    samples: &[Sample],
    alerts: impl IntoIterator<Item = (&'a AlertKey, &'a AlertState)>,
) {
    let _tick = PUBLISHING.write().unwrap_or_else(|p| p.into_inner());
    for s in samples {
        record_sample(s);
    }
    for (k, s) in alerts {
        record_alert(&k.rule, &k.dlq, s.firing);
    }
}

/// Publishes the store-specific gauges of a tick (see
/// [`crate::StoreGaugeSource`]).
pub(crate) fn publish_store_gauges(gauges: &BTreeMap<String, Vec<crate::StoreGauge>>) {
    let _tick = PUBLISHING.write().unwrap_or_else(|p| p.into_inner());
    for (dlq, list) in gauges {
        for g in list {
            describe_gauge!(g.name, g.help);
            gauge!(g.name, "dlq" => dlq.clone()).set(g.value);
        }
    }
}

/// Updates the per-DLQ metrics from a sample.
fn record_sample(s: &Sample) {
    let dlq = s.dlq.clone();
    gauge!("dlq_pending_records", "dlq" => dlq.clone()).set(s.pending as f64);
    gauge!("dlq_oldest_pending_age_seconds", "dlq" => dlq.clone())
        .set(s.oldest_pending_age_seconds.unwrap_or(0).max(0) as f64);
    counter!("dlq_dead_lettered_records_total", "dlq" => dlq.clone()).absolute(s.total);
    counter!("dlq_replayed_records_total", "dlq" => dlq.clone()).absolute(s.replayed);
    counter!("dlq_archived_records_total", "dlq" => dlq.clone()).absolute(s.archived);
    gauge!("dlq_parked_records", "dlq" => dlq.clone()).set(s.parked as f64);
    if let Some(v) = s.inflow_per_minute {
        gauge!("dlq_inflow_records_per_minute", "dlq" => dlq.clone()).set(v);
    }
    if let Some(v) = s.expiry_risk {
        gauge!("dlq_expiry_risk_records", "dlq" => dlq).set(v as f64);
    }
    counter!("dlq_monitor_samples_total").increment(1);
}

/// Sets whether an alert fires.
fn record_alert(rule: &str, dlq: &str, firing: bool) {
    gauge!("dlq_alerts_firing", "rule" => rule.to_owned(), "dlq" => dlq.to_owned())
        .set(if firing { 1.0 } else { 0.0 });
}

/// Counts a delivery attempt.
pub(crate) fn record_notification(sink: &str, delivered: bool) {
    let result = if delivered { "delivered" } else { "failed" };
    counter!("dlq_monitor_notifications_total", "sink" => sink.to_owned(), "result" => result)
        .increment(1);
}

/// A running `/metrics` listener; stops when dropped.
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MetricsServer {
    /// The address it listens on (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves `GET /metrics` (the exposition text) on `addr` from a thread;
/// every other path is 404.
pub fn serve(addr: SocketAddr, handle: MetricsHandle) -> Result<MetricsServer> {
    let server = tiny_http::Server::http(addr)
        .map_err(|e| Error::Metrics(format!("listening on {addr}: {e}")))?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| Error::Metrics(format!("listening on {addr}: not an IP socket")))?;
    let server = Arc::new(server);
    let s = Arc::clone(&server);
    let thread = std::thread::Builder::new()
        .name("dlq-metrics".into())
        .spawn(move || {
            for req in s.incoming_requests() {
                let path = req.url().split('?').next().unwrap_or("");
                let response = if path == "/metrics" {
                    let mut r = tiny_http::Response::from_string(handle.render());
                    if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", CONTENT_TYPE) {
                        r = r.with_header(h);
                    }
                    r
                } else {
                    tiny_http::Response::from_string("not found; try /metrics\n")
                        .with_status_code(404)
                };
                if let Err(e) = req.respond(response) {
                    tracing::debug!(error = %e, "answering a metrics request");
                }
            }
        })
        .map_err(|e| Error::Metrics(format!("starting the metrics thread: {e}")))?;
    Ok(MetricsServer {
        server,
        addr: bound,
        thread: Some(thread),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn sample(dlq: &str, n: u64) -> Sample {
        Sample {
            dlq: dlq.to_owned(),
            at: chrono::Utc::now(),
            pending: n,
            parked: n,
            replayed: n,
            discarded: n,
            archived: n,
            total: n,
            inflow_per_minute: Some(n as f64),
            oldest_pending_at: None,
            oldest_pending_age_seconds: Some(n as i64),
            expiry_risk: Some(n),
            retention_ms: None,
        }
    }

    /// The values of every series of `dlq` in a scrape.
    fn values_of(text: &str, dlq: &str) -> Vec<(String, f64)> {
        let label = format!("dlq=\"{dlq}\"");
        text.lines()
            .filter(|l| !l.starts_with('#') && l.contains(&label))
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').expect("a sample line");
                (series.to_owned(), value.parse().expect("a number"))
            })
            .collect()
    }

    #[test]
    fn a_scrape_never_sees_half_of_a_tick() {
        let handle = install().expect("recorder");
        let dlqs = ["dlq.whole.tick.a", "dlq.whole.tick.b", "dlq.whole.tick.c"];
        let stop = Arc::new(AtomicBool::new(false));
        let publisher = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let key = AlertKey {
                    rule: "whole-tick".into(),
                    dlq: dlqs[0].into(),
                };
                let mut n = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    let samples: Vec<Sample> = dlqs.iter().map(|d| sample(d, n)).collect();
                    let state = AlertState {
                        firing: n.is_multiple_of(2),
                        ..AlertState::default()
                    };
                    publish_tick(&samples, [(&key, &state)]);
                    n += 1;
                }
                n
            })
        };
        let mut checked = 0;
        for _ in 0..3000 {
            let text = handle.render();
            // Every series of every DLQ of a tick carries that tick's n
            // (the alert gauge is 1 on even ticks).
            let mut seen: Vec<f64> = Vec::new();
            for dlq in dlqs {
                for (series, v) in values_of(&text, dlq) {
                    if series.starts_with("dlq_alerts_firing") {
                        continue;
                    }
                    seen.push(v);
                }
            }
            if seen.is_empty() {
                continue;
            }
            assert_eq!(seen.len(), 3 * 8, "every series of the tick:\n{text}");
            assert!(
                seen.iter().all(|v| *v == seen[0]),
                "a scrape mixes two ticks: {seen:?}"
            );
            let firing = values_of(&text, dlqs[0])
                .into_iter()
                .find(|(s, _)| s.starts_with("dlq_alerts_firing"))
                .map(|(_, v)| v);
            assert_eq!(
                firing,
                Some(if (seen[0] as u64).is_multiple_of(2) {
                    1.0
                } else {
                    0.0
                })
            );
            checked += 1;
        }
        stop.store(true, Ordering::Relaxed);
        let ticks = publisher.join().expect("publisher");
        assert!(
            checked > 100 && ticks > 100,
            "{checked} scrapes of {ticks} ticks"
        );
    }
}
