//! dlq-python: the `dlq` Python package's native module, `dlq._native`.
//!
//! The seed's AWS Lambda writes its failed records with `confluent_kafka`
//! and never reads a delivery report, so a record whose DLQ write fails is
//! lost. This crate gives Python the Rust core's guarantees instead:
//! [`producer`] wraps `dlq_kafka`'s guarded producer (retries, then the DLQ
//! with the error, then a durable local spool), [`send`] writes dead
//! letters straight to a DLQ (the seed's `send_to_dlq`), and [`envelope`]
//! encodes and decodes the v1 envelope byte for byte as the Rust side does.
//!
//! Layout: [`config`] turns a `confluent_kafka`-style dict into a
//! [`dlq_kafka::KafkaConfig`]; [`records`] turns Python values into bytes;
//! [`spool`] is the spool (SQLite file, or memory when none is given);
//! [`errors`] maps Rust errors to Python exceptions and keeps panics on the
//! Rust side. The Python layer (`python/dlq/`) adds the drop-in signature
//! and the type hints.
//!
//! Every call that waits on Kafka releases the GIL (`Python::detach`).

pub mod config;
pub mod envelope;
pub mod errors;
pub mod producer;
pub mod records;
pub mod send;
pub mod spool;

use pyo3::prelude::*;

/// The `dlq._native` module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("DlqError", py.get_type::<errors::DlqError>())?;
    m.add("ConfigError", py.get_type::<errors::ConfigError>())?;
    m.add("DeliveryError", py.get_type::<errors::DeliveryError>())?;
    m.add("SpoolError", py.get_type::<errors::SpoolError>())?;
    m.add_class::<config::KafkaSettings>()?;
    m.add_function(wrap_pyfunction!(config::kafka_settings, m)?)?;
    m.add_class::<producer::GuardedProducer>()?;
    m.add_class::<producer::ProduceReport>()?;
    m.add_class::<send::SendReport>()?;
    m.add_function(wrap_pyfunction!(send::send_dead_letters, m)?)?;
    m.add_class::<spool::SpoolFlushReport>()?;
    m.add_function(wrap_pyfunction!(spool::flush_spool, m)?)?;
    m.add_function(wrap_pyfunction!(spool::spool_pending, m)?)?;
    m.add_class::<envelope::DeadLetter>()?;
    m.add_function(wrap_pyfunction!(envelope::encode, m)?)?;
    m.add_function(wrap_pyfunction!(envelope::decode, m)?)?;
    #[cfg(feature = "test-hooks")]
    m.add_function(wrap_pyfunction!(errors::panic_for_tests, m)?)?;
    Ok(())
}
