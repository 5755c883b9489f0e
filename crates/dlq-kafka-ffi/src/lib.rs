//! Kafka record headers as bytes, read and written through librdkafka's C
//! API.
//!
//! # Why this crate exists
//!
//! A Kafka header name is bytes on the wire; Java clients write UTF-8, but
//! any client may write anything, and a dead letter queue must keep what it
//! is given byte for byte. rdkafka 0.39 reads header names as `&str` and
//! *panics* on one that is not UTF-8 (its `Headers::try_get` unwraps the
//! conversion), and it can only write names given as `&str`. So one
//! foreign record with such a header would abort any dlq command that reads
//! it, and could not be replayed as it was.
//!
//! This crate reads and writes headers with librdkafka's own functions
//! (`rd_kafka_header_cnt`, `rd_kafka_header_get_all`,
//! `rd_kafka_header_add`, through `rdkafka::bindings`), on the header
//! lists that rdkafka's [`BorrowedHeaders`] and [`OwnedHeaders`] wrap. It
//! is the only crate of the workspace where `unsafe` is allowed; every
//! unsafe block says why it is sound.
//!
//! What would remove it: an rdkafka release whose header API hands names
//! out (and takes them in) as bytes.
//!
//! # Limits
//!
//! librdkafka gives a header name out as a NUL-terminated C string, so a
//! name containing a NUL byte is read up to that byte. Writing such a name
//! is exact.
//!
//! # Example
//!
//! ```
//! use rdkafka::message::Headers as _;
//!
//! let headers = dlq_kafka_ffi::owned_headers([
//!     (&b"\xff\xfe"[..], Some(&b"value"[..])),
//!     (&b"trace-id"[..], None),
//! ]);
//! assert_eq!(headers.count(), 2);
//! let read = dlq_kafka_ffi::headers(headers.as_borrowed());
//! assert_eq!(read[0].name, b"\xff\xfe");
//! assert_eq!(read[0].value, Some(&b"value"[..]));
//! assert_eq!(read[1].value, None);
//! ```

#![deny(unsafe_op_in_unsafe_fn)]

use rdkafka::bindings as rd;
use rdkafka::message::{BorrowedHeaders, OwnedHeaders};
use std::ffi::{CStr, c_char, c_void};

/// One header of a record, borrowed from the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawHeader<'a> {
    /// The name, as the record carries it (up to a NUL byte, if any).
    pub name: &'a [u8],
    /// The value; `None` for a null value.
    pub value: Option<&'a [u8]>,
}

/// The native header list behind rdkafka's header types.
///
/// rdkafka 0.39 makes a `&BorrowedHeaders` out of the native
/// `rd_kafka_headers_t *` itself (`BorrowedHeaders` is a zero-sized type
/// whose address is the list's), for the headers of a consumed message and
/// for `OwnedHeaders::as_borrowed` alike; the tests check that reading
/// through this pointer finds what rdkafka's own accessors find.
fn native(headers: &BorrowedHeaders) -> *const rd::rd_kafka_headers_t {
    std::ptr::from_ref(headers).cast()
}

/// The headers, in order, with their names and values as bytes.
pub fn headers(headers: &BorrowedHeaders) -> Vec<RawHeader<'_>> {
    let list = native(headers);
    // SAFETY: `list` is a live header list (see `native`), borrowed for as
    // long as `headers` is; counting only reads it.
    let count = unsafe { rd::rd_kafka_header_cnt(list) };
    let mut out = Vec::with_capacity(count);
    for idx in 0..count {
        let mut name: *const c_char = std::ptr::null();
        let mut value: *const c_void = std::ptr::null();
        let mut size: usize = 0;
        // SAFETY: `list` is live (see above) and `idx` is below its count;
        // the three out-pointers point to locals of the right types.
        let err =
            unsafe { rd::rd_kafka_header_get_all(list, idx, &mut name, &mut value, &mut size) };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
            break;
        }
        // SAFETY: librdkafka stores every name NUL-terminated, inside the
        // list, which lives as long as `headers`.
        let name = unsafe { CStr::from_ptr(name) }.to_bytes();
        let value = if value.is_null() {
            None
        } else {
            // SAFETY: a non-null value points to `size` bytes inside the
            // list, which lives as long as `headers`.
            Some(unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) })
        };
        out.push(RawHeader { name, value });
    }
    out
}

/// An rdkafka header list for producing, with names given as bytes.
pub fn owned_headers<'a, I>(headers: I) -> OwnedHeaders
where
    I: IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
{
    let headers = headers.into_iter();
    let owned = OwnedHeaders::new_with_capacity(headers.size_hint().0.max(1));
    let list = native(owned.as_borrowed()).cast_mut();
    for (name, value) in headers {
        let (value_ptr, value_len) = match value {
            Some(v) => (v.as_ptr().cast::<c_void>(), v.len()),
            None => (std::ptr::null(), 0),
        };
        // Slices never exceed isize::MAX bytes.
        let (name_len, value_len) = (name.len() as isize, value_len as isize);
        // SAFETY: `list` is the header list of `owned`, which this function
        // owns and has lent to no one: nothing else reads or writes it
        // meanwhile. librdkafka copies the name and value (lengths given,
        // so no NUL is needed), and a null value pointer means a null value.
        let err = unsafe {
            rd::rd_kafka_header_add(list, name.as_ptr().cast(), name_len, value_ptr, value_len)
        };
        // librdkafka refuses only read-only lists (those of a produced or
        // consumed message); this one is new.
        debug_assert_eq!(err, rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    owned
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, Headers as _};

    #[test]
    fn names_and_values_roundtrip_byte_for_byte() {
        let given: Vec<(&[u8], Option<&[u8]>)> = vec![
            (b"\xff\xfe\x80", Some(b"binary \x00 value")),
            (b"plain", None),
            (b"empty", Some(b"")),
            (b"", Some(b"no name")),
        ];
        let owned = owned_headers(given.iter().copied());
        let read: Vec<(&[u8], Option<&[u8]>)> = headers(owned.as_borrowed())
            .into_iter()
            .map(|h| (h.name, h.value))
            .collect();
        assert_eq!(read, given);
    }

    #[test]
    fn reads_what_rdkafka_itself_reads() {
        let owned = OwnedHeaders::new()
            .insert(Header {
                key: "trace-id",
                value: Some("t-1"),
            })
            .insert(Header {
                key: "nil",
                value: None::<&str>,
            });
        let ours = headers(owned.as_borrowed());
        let theirs: Vec<(&[u8], Option<&[u8]>)> =
            owned.iter().map(|h| (h.key.as_bytes(), h.value)).collect();
        assert_eq!(
            ours.iter().map(|h| (h.name, h.value)).collect::<Vec<_>>(),
            theirs
        );
    }

    #[test]
    fn a_nul_in_a_name_ends_it_when_read() {
        let owned = owned_headers([(&b"ab\x00cd"[..], None)]);
        assert_eq!(headers(owned.as_borrowed())[0].name, b"ab");
    }
}
