//! Python values → the bytes of a record (value, key, headers).
//!
//! A record is what the caller had: `bytes`-like values are the record's
//! bytes as they are; a `str` is its UTF-8 text; anything else (a dict, a
//! list, a number) is serialized with `json.dumps` — compact, UTF-8, and
//! with `default=str` so that a value JSON cannot represent (a `datetime`,
//! a `Decimal`) is kept as its text rather than failing the DLQ write of
//! the record that carries it. The envelope then embeds JSON verbatim, so
//! `original_record` in the DLQ is the dict the caller passed.

use dlq_core::envelope::Header;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyMemoryView, PyString, PyTuple};

/// `bytes`, `bytearray` or `memoryview` contents, else `None`.
fn raw_bytes(value: &Bound<'_, PyAny>) -> PyResult<Option<Vec<u8>>> {
    if let Ok(b) = value.cast::<PyBytes>() {
        return Ok(Some(b.as_bytes().to_vec()));
    }
    if let Ok(b) = value.cast::<PyByteArray>() {
        return Ok(Some(b.to_vec()));
    }
    if value.is_instance_of::<PyMemoryView>() {
        let b = value.call_method0("tobytes")?;
        return Ok(Some(b.cast::<PyBytes>()?.as_bytes().to_vec()));
    }
    Ok(None)
}

/// The bytes of a record value: see the module documentation.
pub fn value_bytes(value: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Some(b) = raw_bytes(value)? {
        return Ok(b);
    }
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(s.to_cow()?.as_bytes().to_vec());
    }
    if value.is_none() {
        return Err(PyValueError::new_err(
            "a record value is None (a tombstone): dlq keeps records with a value; \
             pass b\"\" for an empty one",
        ));
    }
    let py = value.py();
    static DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let dumps = DUMPS.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        Ok(py.import("json")?.getattr("dumps")?.unbind())
    })?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("ensure_ascii", false)?;
    kwargs.set_item("separators", (",", ":"))?;
    kwargs.set_item("default", py.get_type::<PyString>())?;
    let text = dumps.bind(py).call((value,), Some(&kwargs)).map_err(|e| {
        PyTypeError::new_err(format!(
            "a record of type {} cannot be written as JSON: {e}",
            value
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "?".into())
        ))
    })?;
    Ok(text.cast::<PyString>()?.to_cow()?.as_bytes().to_vec())
}

/// A key: `None`, bytes-like, or a `str` (UTF-8).
pub fn key_bytes(key: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Vec<u8>>> {
    let Some(key) = key.filter(|k| !k.is_none()) else {
        return Ok(None);
    };
    if let Some(b) = raw_bytes(key)? {
        return Ok(Some(b));
    }
    if let Ok(s) = key.cast::<PyString>() {
        return Ok(Some(s.to_cow()?.as_bytes().to_vec()));
    }
    Err(PyTypeError::new_err(format!(
        "a key must be bytes, str or None, not {}",
        key.get_type().name()?
    )))
}

/// One header value: `None`, bytes-like or `str`.
fn header_value(name: &str, value: &Bound<'_, PyAny>) -> PyResult<Option<Vec<u8>>> {
    if value.is_none() {
        return Ok(None);
    }
    if let Some(b) = raw_bytes(value)? {
        return Ok(Some(b));
    }
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(Some(s.to_cow()?.as_bytes().to_vec()));
    }
    Err(PyTypeError::new_err(format!(
        "header {name:?}: a value must be bytes, str or None, not {}",
        value.get_type().name()?
    )))
}

/// A header in the core's form. Kept in one place: the core's header type
/// is about to change (names as bytes).
pub fn header(name: String, value: Option<Vec<u8>>) -> Header {
    Header { name, value }
}

/// Headers as `confluent_kafka` takes them: a dict, or a list of
/// `(name, value)` pairs (names may repeat; order is kept).
pub fn headers(headers: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<Header>> {
    let Some(headers) = headers.filter(|h| !h.is_none()) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut push = |name: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>| -> PyResult<()> {
        let name: String = name
            .extract()
            .map_err(|_| PyTypeError::new_err("a header name must be a str"))?;
        let value = header_value(&name, value)?;
        out.push(header(name, value));
        Ok(())
    };
    if let Ok(d) = headers.cast::<PyDict>() {
        for (k, v) in d.iter() {
            push(&k, &v)?;
        }
        return Ok(out);
    }
    if headers.is_instance_of::<PyList>() || headers.is_instance_of::<PyTuple>() {
        for item in headers.try_iter()? {
            let item = item?;
            let pair = item.cast::<PyTuple>().map_err(|_| {
                PyTypeError::new_err("headers must be a dict or a list of (name, value) tuples")
            })?;
            if pair.len() != 2 {
                return Err(PyTypeError::new_err(
                    "headers must be a dict or a list of (name, value) tuples",
                ));
            }
            push(&pair.get_item(0)?, &pair.get_item(1)?)?;
        }
        return Ok(out);
    }
    Err(PyTypeError::new_err(
        "headers must be a dict or a list of (name, value) tuples",
    ))
}
