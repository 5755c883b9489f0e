//! Python exceptions, and the rule that no panic crosses into Python.
//!
//! PyO3 would turn a panic into `pyo3_runtime.PanicException`, a
//! `BaseException` that `except Exception` does not catch — a Lambda
//! handler would die instead of reporting. Every entry point runs its body
//! in [`no_panic`], which turns a panic into a [`DlqError`] naming it a bug.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use std::panic::{AssertUnwindSafe, catch_unwind};

create_exception!(
    dlq,
    DlqError,
    PyException,
    "Base class of every error dlq raises."
);
create_exception!(
    dlq,
    ConfigError,
    DlqError,
    "The configuration cannot work; the message lists every problem."
);
create_exception!(
    dlq,
    DeliveryError,
    DlqError,
    "Records were neither delivered, dead-lettered nor spooled: they exist \
     only in this process. Its `report` attribute says how many."
);
create_exception!(
    dlq,
    SpoolError,
    DlqError,
    "The local spool could not be opened or read."
);

/// Runs `f`; a panic becomes a [`DlqError`] instead of unwinding into Python.
pub fn no_panic<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(DlqError::new_err(format!(
                "internal error in dlq (a bug, please report it): {what}"
            )))
        }
    }
}

/// A configuration error listing every problem.
pub fn config_error(problems: &[String]) -> PyErr {
    ConfigError::new_err(format!(
        "invalid dlq configuration: {}",
        problems.join("; ")
    ))
}

/// Panics inside [`no_panic`], and inside a released GIL as the Kafka
/// calls do: the tests' proof that no panic reaches Python as one.
#[cfg(feature = "test-hooks")]
#[pyfunction]
#[pyo3(name = "_panic_for_tests")]
pub fn panic_for_tests(py: Python<'_>) -> PyResult<()> {
    no_panic(|| py.detach(|| -> PyResult<()> { panic!("a deliberate panic") }))
}
