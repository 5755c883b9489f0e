//! The spool: where dead letters wait when the DLQ cannot be written.
//!
//! A file path gives the embedded SQLite store (durable: it survives the
//! process, and `dlq spool flush --spool sqlite://PATH` or
//! [`flush_spool`] moves it to Kafka later). Without one, dead letters
//! wait in memory: the producer still moves them to the DLQ once Kafka
//! answers, but what is left when it is closed is lost, so it is reported
//! as `failed` and raised as `DeliveryError`.

use crate::config::{StoreOptions, kafka_config, seconds};
use crate::errors::{SpoolError, no_panic};
use dlq_core::memory::MemoryStore;
use dlq_core::store::{
    Batch, CommitReport, Cursor, DlqStats, DlqStore, Result, ScanPage, Selection, StoredRecord,
};
use dlq_kafka::KafkaStore;
use dlq_sqlite::{SqliteOptions, SqliteStore};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::{Path, PathBuf};

/// A spool: durable (a SQLite file) or not (memory).
pub enum Spool {
    /// The embedded store in a file.
    File(SqliteStore),
    /// In memory, for a producer given no spool.
    Memory(MemoryStore),
}

impl Spool {
    /// Opens the spool at `path` (created if missing), or a memory spool.
    pub fn open(path: Option<&Path>) -> std::result::Result<Spool, PyErr> {
        match path {
            None => Ok(Spool::Memory(MemoryStore::new())),
            Some(p) => SqliteStore::open(p, SqliteOptions::default())
                .map(Spool::File)
                .map_err(|e| {
                    SpoolError::new_err(format!("opening the spool {}: {e}", p.display()))
                }),
        }
    }

    /// Whether what it holds survives the process.
    pub fn is_durable(&self) -> bool {
        matches!(self, Spool::File(_))
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            Spool::File($s) => $e,
            Spool::Memory($s) => $e,
        }
    };
}

impl DlqStore for Spool {
    fn commit(&mut self, batch: Batch<'_>) -> Result<CommitReport> {
        delegate!(self, s => s.commit(batch))
    }

    fn scan(
        &self,
        selection: &Selection,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<ScanPage> {
        delegate!(self, s => s.scan(selection, after, limit))
    }

    fn get(&self, dlq: &str, id: &str) -> Result<Option<StoredRecord>> {
        delegate!(self, s => s.get(dlq, id))
    }

    fn stats(&self) -> Result<Vec<DlqStats>> {
        delegate!(self, s => s.stats())
    }

    fn dlqs(&self) -> Result<Vec<String>> {
        delegate!(self, s => s.dlqs())
    }

    fn checkpoint(&self, name: &str) -> Result<Option<String>> {
        delegate!(self, s => s.checkpoint(name))
    }
}

/// What [`flush_spool`] did.
#[pyclass(module = "dlq", frozen, get_all)]
#[derive(Debug, Clone, Copy, Default)]
pub struct SpoolFlushReport {
    /// Records that left the spool.
    pub flushed: u64,
    /// Of those, records newly written to the DLQ.
    pub appended: u64,
    /// Of those, records the DLQ already held (an earlier flush stopped
    /// between its DLQ write and the spool's bookkeeping).
    pub duplicates: u64,
    /// Records still in the spool afterwards.
    pub pending: u64,
}

#[pymethods]
impl SpoolFlushReport {
    fn __repr__(&self) -> String {
        format!(
            "SpoolFlushReport(flushed={}, appended={}, duplicates={}, pending={})",
            self.flushed, self.appended, self.duplicates, self.pending
        )
    }
}

/// `dlq.flush_spool(spool, config=None, *, timeout=None, dlq_prefix=None,
/// replication_factor=None)`: moves every record of the spool file to its
/// DLQ topic, once — what `dlq spool flush` does.
#[pyfunction]
#[pyo3(signature = (spool, config=None, *, timeout=None, dlq_prefix=None, replication_factor=None))]
pub fn flush_spool(
    py: Python<'_>,
    spool: PathBuf,
    config: Option<&Bound<'_, PyDict>>,
    timeout: Option<f64>,
    dlq_prefix: Option<String>,
    replication_factor: Option<i16>,
) -> PyResult<SpoolFlushReport> {
    no_panic(|| {
        let options = StoreOptions {
            dlq_prefix,
            timeout: timeout.map(|t| seconds("timeout", t)).transpose()?,
            replication_factor,
        };
        let kafka = kafka_config(config, &options)?;
        py.detach(|| -> PyResult<SpoolFlushReport> {
            let mut spool = Spool::open(Some(&spool))?;
            let mut store = KafkaStore::open(kafka).map_err(|e| {
                SpoolError::new_err(format!(
                    "opening the Kafka DLQ store (is the cluster up? the records stay in the \
                     spool until a flush succeeds): {e}"
                ))
            })?;
            let r = dlq_kafka::producer::flush_spool(&mut spool, &mut store).map_err(|e| {
                SpoolError::new_err(format!(
                    "moving spooled dead letters to Kafka; what was not moved stays in the \
                     spool (flush again): {e}"
                ))
            })?;
            let pending = dlq_kafka::producer::spool_pending(&spool)
                .map_err(|e| SpoolError::new_err(format!("reading the spool: {e}")))?;
            Ok(SpoolFlushReport {
                flushed: r.flushed,
                appended: r.appended,
                duplicates: r.duplicates,
                pending,
            })
        })
    })
}

/// `dlq.spool_pending(spool)`: records waiting in the spool file.
#[pyfunction]
pub fn spool_pending(py: Python<'_>, spool: PathBuf) -> PyResult<u64> {
    no_panic(|| {
        py.detach(|| {
            let spool = Spool::open(Some(&spool))?;
            dlq_kafka::producer::spool_pending(&spool)
                .map_err(|e| SpoolError::new_err(format!("reading the spool: {e}")))
        })
    })
}
