//! `dlq.envelope`: the v1 envelope for Python consumers, encoded and
//! decoded by the Rust codec itself, so the bytes are the Rust side's.
//!
//! `decode` never fails: a v1 envelope, a seed envelope (`{original_record,
//! error, timestamp}`) or any other bytes (a raw record) all become a
//! [`DeadLetter`], as in `dlq import`. `encode` writes every part inline
//! (no size limit), as `dlq export` does.

use crate::errors::{DlqError, no_panic};
use crate::records::{key_bytes, value_bytes};
use chrono::{DateTime, Utc};
use dlq_core::Failure;
use dlq_core::envelope::{self as codec, ClaimCheck, EncodeOptions, Part, Source};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};

/// One dead letter: the original record's bytes, where it came from, and
/// why it failed.
#[pyclass(module = "dlq.envelope", frozen, eq)]
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    letter: codec::DeadLetter,
}

fn part_name(p: Part) -> &'static str {
    match p {
        Part::Payload => "payload",
        Part::Key => "key",
        Part::Headers => "headers",
    }
}

#[pymethods]
impl DeadLetter {
    /// See `dlq.envelope.DeadLetter` in `dlq/_native.pyi`.
    #[new]
    #[pyo3(signature = (
        payload, error, *, id=None, error_class="unknown", stage="unknown", retryable=false,
        attempts=1, key=None, headers=None, source_system=None, source_topic=None,
        source_partition=None, source_offset=None, source_timestamp=None, failed_at=None,
        first_failed_at=None, replays=0, replay_of=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        payload: &Bound<'_, PyAny>,
        error: String,
        id: Option<String>,
        error_class: &str,
        stage: &str,
        retryable: bool,
        attempts: u32,
        key: Option<&Bound<'_, PyAny>>,
        headers: Option<&Bound<'_, PyAny>>,
        source_system: Option<String>,
        source_topic: Option<String>,
        source_partition: Option<i32>,
        source_offset: Option<i64>,
        source_timestamp: Option<DateTime<Utc>>,
        failed_at: Option<DateTime<Utc>>,
        first_failed_at: Option<DateTime<Utc>>,
        replays: u32,
        replay_of: Option<String>,
    ) -> PyResult<DeadLetter> {
        no_panic(|| {
            let failure = Failure {
                stage: stage.to_owned(),
                error_class: error_class.to_owned(),
                message: error,
                retryable,
            };
            let id = id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
            let mut letter = codec::DeadLetter::new(id, value_bytes(payload)?, &failure);
            letter.key = key_bytes(key)?;
            letter.headers = crate::records::headers(headers)?;
            letter.attempts = attempts;
            letter.source = Source {
                system: source_system.unwrap_or_else(|| {
                    if source_topic.is_some() {
                        "kafka"
                    } else {
                        "unknown"
                    }
                    .to_owned()
                }),
                topic: source_topic,
                partition: source_partition,
                offset: source_offset,
                timestamp: source_timestamp,
            };
            if let Some(t) = failed_at {
                letter.failed_at = t;
                letter.first_failed_at = t;
            }
            if let Some(t) = first_failed_at {
                letter.first_failed_at = t;
            }
            letter.replays = replays;
            letter.replay_of = replay_of;
            Ok(DeadLetter { letter })
        })
    }

    /// The identity (`dlq.id`).
    #[getter]
    fn id(&self) -> &str {
        &self.letter.id
    }

    /// The original record's value, byte for byte.
    #[getter]
    fn payload<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.letter.payload)
    }

    /// The original record as the seed format has it: the parsed JSON
    /// value when the payload is JSON, its text when it is other UTF-8,
    /// else the bytes.
    #[getter]
    fn original_record<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let p = &self.letter.payload;
        if let Ok(text) = std::str::from_utf8(p) {
            let loads = py.import("json")?.getattr("loads")?;
            if let Ok(v) = loads.call1((text,)) {
                return Ok(v);
            }
            return Ok(PyString::new(py, text).into_any());
        }
        Ok(PyBytes::new(py, p).into_any())
    }

    /// The original key, or `None`.
    #[getter]
    fn key<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.letter.key.as_deref().map(|k| PyBytes::new(py, k))
    }

    /// The original headers: `(name, value)` pairs in order.
    #[getter]
    fn headers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let items: Vec<(String, Option<Bound<'py, PyBytes>>)> = self
            .letter
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    h.value.as_deref().map(|v| PyBytes::new(py, v)),
                )
            })
            .collect();
        PyList::new(py, items)
    }

    /// `dlq.source`: `system`, `topic`, `partition`, `offset`, `timestamp`.
    #[getter]
    fn source<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = &self.letter.source;
        let d = PyDict::new(py);
        d.set_item("system", &s.system)?;
        d.set_item("topic", &s.topic)?;
        d.set_item("partition", s.partition)?;
        d.set_item("offset", s.offset)?;
        d.set_item("timestamp", s.timestamp)?;
        Ok(d)
    }

    /// The processing stage that failed.
    #[getter]
    fn stage(&self) -> &str {
        &self.letter.stage
    }

    /// The dotted error class.
    #[getter]
    fn error_class(&self) -> &str {
        &self.letter.error_class
    }

    /// The error text of the last failure.
    #[getter]
    fn error(&self) -> &str {
        &self.letter.error
    }

    /// Whether a later attempt could succeed.
    #[getter]
    fn retryable(&self) -> bool {
        self.letter.retryable
    }

    /// Attempts made before giving up.
    #[getter]
    fn attempts(&self) -> u32 {
        self.letter.attempts
    }

    /// When it last failed (the envelope's `timestamp`), in UTC.
    #[getter]
    fn failed_at(&self) -> DateTime<Utc> {
        self.letter.failed_at
    }

    /// When it first failed, in UTC.
    #[getter]
    fn first_failed_at(&self) -> DateTime<Utc> {
        self.letter.first_failed_at
    }

    /// Failed replays so far.
    #[getter]
    fn replays(&self) -> u32 {
        self.letter.replays
    }

    /// The dead letter this one is a failed replay of.
    #[getter]
    fn replay_of(&self) -> Option<&str> {
        self.letter.replay_of.as_deref()
    }

    /// Original length of the error text, when it was cut.
    #[getter]
    fn error_truncated_from(&self) -> Option<u64> {
        self.letter.error_truncated_from
    }

    /// The format it was decoded from: `envelope`, `seed`, `raw`,
    /// `connect`, `spring` or `headers`.
    #[getter]
    fn origin(&self) -> &'static str {
        self.letter.origin.as_str()
    }

    /// Parts stored outside the envelope: dicts with `part`, `sha256`,
    /// `size`, `pointer`.
    #[getter]
    fn claim_checks<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let items = self
            .letter
            .claim_checks
            .iter()
            .map(|c: &ClaimCheck| -> PyResult<Bound<'py, PyDict>> {
                let d = PyDict::new(py);
                d.set_item("part", part_name(c.part))?;
                d.set_item("sha256", &c.sha256)?;
                d.set_item("size", c.size)?;
                d.set_item("pointer", &c.pointer)?;
                Ok(d)
            })
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }

    fn __repr__(&self) -> String {
        format!(
            "DeadLetter(id={:?}, error_class={:?}, stage={:?}, error={:?}, payload_bytes={})",
            self.letter.id,
            self.letter.error_class,
            self.letter.stage,
            self.letter.error,
            self.letter.payload.len()
        )
    }
}

/// `dlq.envelope.encode(letter)`: the v1 envelope, one line of JSON.
#[pyfunction]
pub fn encode<'py>(py: Python<'py>, letter: &DeadLetter) -> PyResult<Bound<'py, PyBytes>> {
    no_panic(|| {
        let encoded = codec::encode(&letter.letter, &EncodeOptions::unlimited())
            .map_err(|e| DlqError::new_err(format!("encoding the envelope: {e}")))?;
        Ok(PyBytes::new(py, &encoded.bytes))
    })
}

/// `dlq.envelope.decode(data, fallback_id="")`: any DLQ record's bytes as a
/// dead letter; never fails.
#[pyfunction]
#[pyo3(signature = (data, fallback_id=""))]
pub fn decode(data: &Bound<'_, PyAny>, fallback_id: &str) -> PyResult<DeadLetter> {
    no_panic(|| {
        let bytes = value_bytes(data)?;
        Ok(DeadLetter {
            letter: codec::decode(&bytes, fallback_id),
        })
    })
}
