//! Record headers in and out of librdkafka, byte for byte.
//!
//! Every header dlq reads from a consumed record, and every header it
//! produces, goes through here: rdkafka 0.39's own header API panics on a
//! header name that is not UTF-8 and takes names only as `&str`, so both
//! directions use `dlq-kafka-ffi` (librdkafka's C API, with bytes). A name
//! that is not UTF-8 is held in [`Header`] as [`Header::from_name_bytes`]
//! describes.

use dlq_core::envelope::Header;
use rdkafka::Message as _;
use rdkafka::message::{BorrowedMessage, OwnedHeaders};

/// The headers of a consumed message, byte for byte.
pub(crate) fn of(m: &BorrowedMessage<'_>) -> Vec<Header> {
    m.headers()
        .map(|hs| {
            dlq_kafka_ffi::headers(hs)
                .into_iter()
                .map(|h| Header::from_name_bytes(h.name, h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default()
}

/// The librdkafka headers that carry `headers` (`None` when there are
/// none), names and values byte for byte.
pub(crate) fn owned<'a, I>(headers: I) -> Option<OwnedHeaders>
where
    I: IntoIterator<Item = &'a Header>,
{
    let names: Vec<_> = headers
        .into_iter()
        .map(|h| (h.name_bytes(), h.value.as_deref()))
        .collect();
    if names.is_empty() {
        return None;
    }
    Some(dlq_kafka_ffi::owned_headers(
        names.iter().map(|(n, v)| (n.as_ref(), *v)),
    ))
}
