//! `dlq.GuardedProducer`: `dlq_kafka`'s guarded producer for Python.
//!
//! Delivery semantics (at-least-once, never dropped) are the Rust
//! producer's: after `flush()` every record given to `produce` is in its
//! topic, in its DLQ (`dlq.<topic>`) with its error, or in the spool file.
//! Without a spool file the spool is memory: the records in it still move
//! to the DLQ when Kafka answers again, but they are counted as `failed`
//! until then, and `close()` raises `DeliveryError` when any are left.
//!
//! One Rust producer serves one topic, so this holds one per topic given to
//! `produce`, created on first use. All calls release the GIL while they
//! wait; the state is behind a mutex, so threads may share a producer.
//! `close()` drops every Kafka client: librdkafka joins its threads when a
//! client is destroyed, so no thread of dlq is left running (a Lambda
//! freezes its process between invocations).

use crate::config::{StoreOptions, kafka_config, seconds};
use crate::errors::{DeliveryError, DlqError, SpoolError, config_error, no_panic};
use crate::records::{key_bytes, value_bytes};
use crate::spool::Spool;
use dlq_core::RetryPolicy;
use dlq_kafka::KafkaConfig;
use dlq_kafka::producer::{
    GuardedProducer as RustProducer, ProduceRecord, ProduceReport as RustReport, ProducerConfig,
    ProducerError, spool_pending,
};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyType};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The topic of the configuration check at construction.
const PROBE_TOPIC: &str = "settings-check";

/// How long one wait for delivery reports lasts inside a timed flush.
const POLL: Duration = Duration::from_millis(20);

/// What a producer did so far.
///
/// After a `flush()` that did not time out, `sent == delivered +
/// dead_lettered + spooled + failed`.
#[pyclass(module = "dlq", frozen, get_all)]
#[derive(Debug, Clone, Default)]
pub struct ProduceReport {
    /// Records accepted by `produce`.
    pub sent: u64,
    /// Records acknowledged by their topic.
    pub delivered: u64,
    /// Deliveries sent again after a failed attempt.
    pub retried: u64,
    /// Records written to their DLQ topic with their error.
    pub dead_lettered: u64,
    /// Records written to the spool file because the DLQ could not be
    /// written.
    pub spooled: u64,
    /// Records neither delivered, dead-lettered nor in a spool file: held
    /// in this process only (a memory spool, or a spool that failed).
    pub failed: u64,
    /// Records still in flight when `flush(timeout)` ran out of time.
    pub in_flight: u64,
    /// Records of the spool file (of this run or earlier ones) moved to
    /// Kafka.
    pub spool_flushed: u64,
    /// Dead letters per error class (`produce.unknown_topic`, …).
    pub by_error_class: BTreeMap<String, u64>,
}

#[pymethods]
impl ProduceReport {
    /// The report as a dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("sent", self.sent)?;
        d.set_item("delivered", self.delivered)?;
        d.set_item("retried", self.retried)?;
        d.set_item("dead_lettered", self.dead_lettered)?;
        d.set_item("spooled", self.spooled)?;
        d.set_item("failed", self.failed)?;
        d.set_item("in_flight", self.in_flight)?;
        d.set_item("spool_flushed", self.spool_flushed)?;
        d.set_item("by_error_class", self.by_error_class.clone())?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "ProduceReport(sent={}, delivered={}, retried={}, dead_lettered={}, spooled={}, \
             failed={}, in_flight={}, spool_flushed={}, by_error_class={:?})",
            self.sent,
            self.delivered,
            self.retried,
            self.dead_lettered,
            self.spooled,
            self.failed,
            self.in_flight,
            self.spool_flushed,
            self.by_error_class
        )
    }
}

/// Everything a producer needs to create the Rust producer of a topic.
struct Settings {
    kafka: KafkaConfig,
    dlq: Option<String>,
    spool: Option<PathBuf>,
    retry: RetryPolicy,
    delivery_timeout: Duration,
    max_in_flight: usize,
}

/// One topic's Rust producer, and what its memory spool counted before.
struct Topic {
    producer: RustProducer<Spool>,
}

struct State {
    topics: BTreeMap<String, Topic>,
    /// Records held in memory after a failed flush (the spool failed too).
    unstored: BTreeMap<String, u64>,
    closed: bool,
}

/// Produces to Kafka topics with retries, a DLQ and a spool.
#[pyclass(module = "dlq", subclass)]
pub struct GuardedProducer {
    settings: Settings,
    state: Mutex<State>,
}

impl GuardedProducer {
    fn topic<'s>(&self, state: &'s mut State, topic: &str) -> PyResult<&'s mut Topic> {
        if !state.topics.contains_key(topic) {
            let s = &self.settings;
            let mut config = ProducerConfig::new(topic);
            config.dlq = s.dlq.clone();
            config.retry = s.retry.clone();
            config.delivery_timeout = s.delivery_timeout;
            config.max_in_flight = s.max_in_flight;
            let spool = Spool::open(s.spool.as_deref())?;
            let producer =
                RustProducer::new(s.kafka.clone(), config, spool).map_err(producer_error)?;
            state.topics.insert(topic.to_owned(), Topic { producer });
        }
        state
            .topics
            .get_mut(topic)
            .ok_or_else(|| DlqError::new_err("internal error: the topic's producer vanished"))
    }

    /// The report over every topic.
    fn report_of(state: &State, in_flight: u64) -> ProduceReport {
        let mut out = ProduceReport {
            in_flight,
            ..ProduceReport::default()
        };
        for (name, t) in &state.topics {
            let r: &RustReport = t.producer.report();
            out.sent += r.sent;
            out.delivered += r.delivered;
            out.retried += r.retried;
            for (class, n) in &r.by_error_class {
                *out.by_error_class.entry(class.clone()).or_default() += n;
            }
            if t.producer.spool().is_durable() {
                out.dead_lettered += r.dead_lettered;
                out.spooled += r.spooled;
                out.spool_flushed += r.spool_flushed;
            } else {
                // A memory spool holds nothing durably: what it took is
                // failed until it reaches the DLQ.
                let held = spool_pending(t.producer.spool()).unwrap_or(r.spooled);
                out.dead_lettered += r.dead_lettered + r.spool_flushed;
                out.failed += held;
            }
            out.failed += state.unstored.get(name).copied().unwrap_or(0);
        }
        out
    }

    /// Flushes every topic; `deadline` bounds the wait.
    fn flush_all(&self, state: &mut State, deadline: Option<Instant>) -> PyResult<ProduceReport> {
        let mut in_flight = 0u64;
        let mut first_error = None;
        for (name, t) in state.topics.iter_mut() {
            if let Some(deadline) = deadline {
                while t.producer.outstanding() > 0 && Instant::now() < deadline {
                    let wait = POLL.min(deadline.saturating_duration_since(Instant::now()));
                    if let Err(e) = t.producer.poll(wait) {
                        first_error.get_or_insert(e);
                        break;
                    }
                }
                if t.producer.outstanding() > 0 {
                    in_flight += t.producer.outstanding() as u64;
                    continue;
                }
            }
            match t.producer.flush() {
                Ok(_) => {
                    state.unstored.remove(name);
                }
                Err(ProducerError::Unstored { count, source }) => {
                    state.unstored.insert(name.clone(), count as u64);
                    first_error.get_or_insert(ProducerError::Unstored { count, source });
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            // Unstored records are reported as failed, not raised: flush
            // may be called again, and close() raises for them.
            None | Some(ProducerError::Unstored { .. }) => {
                Ok(GuardedProducer::report_of(state, in_flight))
            }
            Some(e) => Err(producer_error(e)),
        }
    }
}

fn producer_error(e: ProducerError) -> PyErr {
    match e {
        ProducerError::Config { problems } => config_error(&problems),
        ProducerError::Client { .. } => crate::errors::ConfigError::new_err(e.to_string()),
        ProducerError::Spool(_) => SpoolError::new_err(e.to_string()),
        other => DlqError::new_err(other.to_string()),
    }
}

fn closed() -> PyErr {
    DlqError::new_err("the producer is closed")
}

#[pymethods]
impl GuardedProducer {
    /// See `dlq.GuardedProducer` in `dlq/_native.pyi`.
    #[new]
    #[pyo3(signature = (
        config=None, dlq=None, spool=None, *, max_attempts=3, retry_backoff=0.1,
        delivery_timeout=30.0, max_in_flight=100_000, timeout=None, dlq_prefix=None,
        replication_factor=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        config: Option<&Bound<'_, PyDict>>,
        dlq: Option<String>,
        spool: Option<PathBuf>,
        max_attempts: u32,
        retry_backoff: f64,
        delivery_timeout: f64,
        max_in_flight: usize,
        timeout: Option<f64>,
        dlq_prefix: Option<String>,
        replication_factor: Option<i16>,
    ) -> PyResult<GuardedProducer> {
        no_panic(|| {
            let options = StoreOptions {
                dlq_prefix,
                timeout: timeout.map(|t| seconds("timeout", t)).transpose()?,
                replication_factor,
            };
            let kafka = kafka_config(config, &options)?;
            let backoff = seconds("retry_backoff", retry_backoff)?;
            let retry = RetryPolicy {
                max_attempts,
                initial_backoff: backoff,
                max_backoff: RetryPolicy::default().max_backoff.max(backoff),
                ..RetryPolicy::default()
            };
            let settings = Settings {
                kafka,
                dlq,
                spool,
                retry,
                delivery_timeout: seconds("delivery_timeout", delivery_timeout)?,
                max_in_flight,
            };
            // Check the producer settings now, not at the first produce.
            let probe = ProducerConfig {
                dlq: settings.dlq.clone(),
                retry: settings.retry.clone(),
                delivery_timeout: settings.delivery_timeout,
                max_in_flight,
                ..ProducerConfig::new(PROBE_TOPIC)
            };
            if let Err(mut problems) = probe.validate(&settings.kafka) {
                // Problems of the probe's topic are not the caller's: topics
                // are checked when `produce` names them.
                problems.retain(|p| {
                    !p.starts_with(&format!("topic {PROBE_TOPIC:?}")) && !p.contains("must differ")
                });
                if !problems.is_empty() {
                    return Err(config_error(&problems));
                }
            }
            Ok(GuardedProducer {
                settings,
                state: Mutex::new(State {
                    topics: BTreeMap::new(),
                    unstored: BTreeMap::new(),
                    closed: false,
                }),
            })
        })
    }

    /// Accepts a record for `topic` and sends it; returns once it is queued.
    #[pyo3(signature = (topic, value, key=None, headers=None))]
    fn produce(
        &self,
        py: Python<'_>,
        topic: String,
        value: &Bound<'_, PyAny>,
        key: Option<&Bound<'_, PyAny>>,
        headers: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        no_panic(|| {
            let record = ProduceRecord {
                key: key_bytes(key)?,
                payload: value_bytes(value)?,
                headers: crate::records::headers(headers)?,
            };
            py.detach(|| {
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                if state.closed {
                    return Err(closed());
                }
                let t = self.topic(&mut state, &topic)?;
                t.producer.send(record).map_err(producer_error)
            })
        })
    }

    /// Serves delivery reports, retries and dead-letter writes for up to
    /// `timeout` seconds.
    #[pyo3(signature = (timeout=0.0))]
    fn poll(&self, py: Python<'_>, timeout: f64) -> PyResult<()> {
        no_panic(|| {
            let timeout = seconds("timeout", timeout)?;
            py.detach(|| {
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                if state.closed {
                    return Err(closed());
                }
                let n = state.topics.len().max(1) as u32;
                for t in state.topics.values_mut() {
                    t.producer.poll(timeout / n).map_err(producer_error)?;
                }
                Ok(())
            })
        })
    }

    /// Waits until every record is delivered, dead-lettered, spooled or
    /// failed (or `timeout` seconds passed) and returns the report.
    #[pyo3(signature = (timeout=None))]
    fn flush(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<ProduceReport> {
        no_panic(|| {
            let timeout = timeout.map(|t| seconds("timeout", t)).transpose()?;
            py.detach(|| {
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                if state.closed {
                    return Err(closed());
                }
                let deadline = timeout.map(|t| Instant::now() + t);
                self.flush_all(&mut state, deadline)
            })
        })
    }

    /// The report so far, without waiting.
    #[getter]
    fn report(&self, py: Python<'_>) -> PyResult<ProduceReport> {
        no_panic(|| {
            py.detach(|| {
                let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                Ok(GuardedProducer::report_of(&state, 0))
            })
        })
    }

    /// Flushes, then stops every Kafka client (no dlq thread is left).
    fn close(&self, py: Python<'_>) -> PyResult<ProduceReport> {
        no_panic(|| {
            let report = py.detach(|| {
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                if state.closed {
                    return Ok(None);
                }
                let flushed = self.flush_all(&mut state, None);
                let report = GuardedProducer::report_of(&state, 0);
                state.closed = true;
                // Dropping a Rust producer destroys its librdkafka clients,
                // which join their threads. Records a memory spool still
                // holds are dropped here: they are in the report as failed.
                for (_, t) in std::mem::take(&mut state.topics) {
                    drop(t);
                }
                flushed.map(|_| Some(report))
            })?;
            let Some(report) = report else {
                return Ok(ProduceReport::default());
            };
            if report.failed > 0 {
                let err = DeliveryError::new_err(format!(
                    "{} records were neither delivered, dead-lettered nor spooled and are lost \
                     with the producer: give it a spool file, or let this error fail the \
                     invocation so that the input is retried",
                    report.failed
                ));
                err.value(py).setattr("report", report)?;
                return Err(err);
            }
            Ok(report)
        })
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .closed
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (_exc_type=None, _exc=None, _tb=None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: Option<&Bound<'_, PyType>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        let s = &self.settings;
        format!(
            "GuardedProducer(bootstrap_servers={:?}, dlq={:?}, spool={:?}, closed={})",
            s.kafka.bootstrap_servers,
            s.dlq,
            s.spool,
            self.closed()
        )
    }
}
