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
//! It also asks for **topic ids** ([`topic_ids`], KIP-516), which rdkafka
//! does not wrap (librdkafka's `rd_kafka_DescribeTopics`): a topic deleted
//! and created again under the same name gets a new id, so state keyed by
//! the id (the Kafka store's settlement segments) does not carry over to a
//! topic it was not written for.
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
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::time::Duration;

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

/// What [`topic_ids`] found for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicId {
    /// The topic's id, base64 as Kafka tools show it.
    Id(String),
    /// The topic does not exist (or is not visible to this client).
    Missing,
}

/// Frees a librdkafka object when dropped, whatever path a function takes.
struct Owned<T> {
    ptr: *mut T,
    free: unsafe extern "C" fn(*mut T),
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: `ptr` came from the librdkafka constructor matching
            // `free`, is owned by this guard alone, and is freed once.
            unsafe { (self.free)(self.ptr) };
        }
    }
}

/// A C string from librdkafka, copied (empty for a null pointer).
fn c_text(ptr: *const c_char) -> String {
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: librdkafka returns NUL-terminated strings that live as long
    // as the object they belong to, which the caller still holds.
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

/// The ids of `topics` (KIP-516), asked of the cluster `client` is
/// connected to, in the order given. `timeout` bounds the request.
///
/// # Errors
///
/// The request's error (no cluster, not authorized, timed out) as text;
/// a topic that does not exist is [`TopicId::Missing`], not an error.
pub fn topic_ids<C: rdkafka::ClientContext>(
    client: &rdkafka::client::Client<C>,
    topics: &[&str],
    timeout: Duration,
) -> Result<Vec<TopicId>, String> {
    if topics.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<CString> = topics
        .iter()
        .map(|t| CString::new(*t).map_err(|_| format!("topic name {t:?} contains a NUL byte")))
        .collect::<Result<_, _>>()?;
    let mut name_ptrs: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
    let rk = client.native_ptr();
    let timeout_ms = c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX);

    // SAFETY: `rk` is the live client handle `client` owns; the queue is
    // freed by its guard before `client` can go away (it is borrowed).
    let queue_ptr = unsafe { rd::rd_kafka_queue_new(rk) };
    let queue = Owned {
        ptr: queue_ptr,
        free: rd::rd_kafka_queue_destroy,
    };
    // SAFETY: the name pointers point into `names`, alive for the call;
    // librdkafka copies them into the collection.
    let collection_ptr = unsafe {
        rd::rd_kafka_TopicCollection_of_topic_names(name_ptrs.as_mut_ptr(), name_ptrs.len())
    };
    let collection = Owned {
        ptr: collection_ptr,
        free: rd::rd_kafka_TopicCollection_destroy,
    };
    // SAFETY: `rk` is live; the options are freed by their guard.
    let options_ptr = unsafe {
        rd::rd_kafka_AdminOptions_new(
            rk,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS,
        )
    };
    let options = Owned {
        ptr: options_ptr,
        free: rd::rd_kafka_AdminOptions_destroy,
    };
    let mut errstr = [0 as c_char; 256];
    // SAFETY: `options` is a live options object; `errstr` is a writable
    // buffer of the size given.
    let set = unsafe {
        rd::rd_kafka_AdminOptions_set_request_timeout(
            options.ptr,
            timeout_ms,
            errstr.as_mut_ptr(),
            errstr.len(),
        )
    };
    if set != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        return Err(c_text(errstr.as_ptr()));
    }
    // SAFETY: every handle is live; librdkafka copies what it keeps and
    // posts the result on `queue`.
    unsafe { rd::rd_kafka_DescribeTopics(rk, collection.ptr, options.ptr, queue.ptr) };
    // Some time beyond the request's own timeout, for the result to arrive.
    let wait_ms = timeout_ms.saturating_add(5_000);
    // SAFETY: `queue` is live; the event is freed by its guard.
    let event_ptr = unsafe { rd::rd_kafka_queue_poll(queue.ptr, wait_ms) };
    let event = Owned {
        ptr: event_ptr,
        free: rd::rd_kafka_event_destroy,
    };
    if event.ptr.is_null() {
        return Err("describing topics: no answer in time".to_owned());
    }
    // SAFETY: `event` is a live event.
    let err = unsafe { rd::rd_kafka_event_error(event.ptr) };
    if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        // SAFETY: `event` is a live event; its error string lives with it.
        let text = c_text(unsafe { rd::rd_kafka_event_error_string(event.ptr) });
        return Err(format!("describing topics: {text}"));
    }
    // SAFETY: `event` is a live DescribeTopics result event (the only
    // request posted on this queue); the result lives with the event.
    let result = unsafe { rd::rd_kafka_event_DescribeTopics_result(event.ptr) };
    if result.is_null() {
        return Err("describing topics: unexpected answer".to_owned());
    }
    let mut count = 0usize;
    // SAFETY: `result` is live; librdkafka writes the count and returns
    // an array of `count` descriptions owned by the event.
    let descriptions = unsafe { rd::rd_kafka_DescribeTopics_result_topics(result, &mut count) };
    let mut found: std::collections::HashMap<String, TopicId> = std::collections::HashMap::new();
    let descriptions: &[*const rd::rd_kafka_TopicDescription_t] = if descriptions.is_null() {
        &[]
    } else {
        // SAFETY: librdkafka returned an array of `count` description
        // pointers, owned by the event, which outlives this slice.
        unsafe { std::slice::from_raw_parts(descriptions, count) }
    };
    for &description in descriptions {
        // SAFETY: `description` is a live description owned by the event.
        let name = c_text(unsafe { rd::rd_kafka_TopicDescription_name(description) });
        // SAFETY: as above.
        let error = unsafe { rd::rd_kafka_TopicDescription_error(description) };
        let code = if error.is_null() {
            rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        } else {
            // SAFETY: `error` is a live error object owned by the description.
            unsafe { rd::rd_kafka_error_code(error) }
        };
        let id = match code {
            rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => {
                // SAFETY: `description` is live; the id lives with it.
                let uuid = unsafe { rd::rd_kafka_TopicDescription_topic_id(description) };
                if uuid.is_null() {
                    return Err(format!("describing topics: {name} has no topic id"));
                }
                // SAFETY: `uuid` is live; the string lives with it.
                TopicId::Id(c_text(unsafe { rd::rd_kafka_Uuid_base64str(uuid) }))
            }
            rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART => TopicId::Missing,
            _ => {
                // SAFETY: `error` is live (non-null when the code is not 0).
                let text = c_text(unsafe { rd::rd_kafka_error_string(error) });
                return Err(format!("describing topic {name}: {text}"));
            }
        };
        found.insert(name, id);
    }
    Ok(topics
        .iter()
        .map(|t| found.remove(*t).unwrap_or(TopicId::Missing))
        .collect())
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
