//! Error classes: stable strings that go into the envelope's `error_class`.
//!
//! They are part of the contract (filters, alert rules and fixes select on
//! them), so a class is never renamed. [`crate::validate`] checks in the order
//! of [`VALIDATION`]: a record with several problems gets the class of the
//! first one.

/// The record is larger than [`crate::Limits::max_record_bytes`]; not parsed.
pub const OVERSIZED: &str = "input.oversized";
/// The record is empty or only ASCII whitespace.
pub const EMPTY: &str = "decode.empty";
/// The record is not valid UTF-8; the message gives the byte offset.
pub const INVALID_UTF8: &str = "decode.invalid_utf8";
/// The record is not valid JSON; the message gives serde's line and column.
pub const MALFORMED_JSON: &str = "decode.malformed_json";
/// The record is valid JSON but not an object (including `null`).
pub const NOT_AN_OBJECT: &str = "decode.not_an_object";
/// A required field is absent.
pub const MISSING_FIELD: &str = "validation.missing_field";
/// A required field is `null`.
pub const NULL_FIELD: &str = "validation.null_field";
/// A field has the wrong JSON type (e.g. a price sent as a string).
pub const WRONG_TYPE: &str = "validation.wrong_type";
/// A field that must say something (an id, a title, a question) is an empty
/// or blank string.
pub const EMPTY_FIELD: &str = "validation.empty_field";
/// A price outside [0, 1].
pub const PRICE_OUT_OF_RANGE: &str = "validation.price_out_of_range";
/// A negative volume.
pub const NEGATIVE_VOLUME: &str = "validation.negative_volume";
/// A timestamp that is not RFC 3339 (or, for hourly prices, not in UTC).
pub const BAD_TIMESTAMP: &str = "validation.bad_timestamp";
/// An hourly price whose timestamp has non-zero minutes, seconds or fractions.
pub const TIMESTAMP_NOT_HOUR_ALIGNED: &str = "validation.timestamp_not_hour_aligned";
/// A link that is not an absolute `http`/`https` URL.
pub const BAD_URL: &str = "validation.bad_url";
/// A market id that is not `0x` followed by 40 hex digits.
pub const BAD_MARKET_ID: &str = "validation.bad_market_id";
/// An outcome other than `"Yes"` or `"No"`.
pub const BAD_OUTCOME: &str = "validation.bad_outcome";

/// The simulated downstream timed out (retryable; it recovers).
pub const DOWNSTREAM_TIMEOUT: &str = "downstream.timeout";
/// The simulated downstream is down (retryable; it recovers once the outage
/// ends).
pub const DOWNSTREAM_UNAVAILABLE: &str = "downstream.unavailable";

/// Every class [`crate::validate`] can return, in the order it checks them.
/// All of them are permanent: retrying the same bytes gives the same error.
pub const VALIDATION: &[&str] = &[
    OVERSIZED,
    EMPTY,
    INVALID_UTF8,
    MALFORMED_JSON,
    NOT_AN_OBJECT,
    MISSING_FIELD,
    NULL_FIELD,
    WRONG_TYPE,
    EMPTY_FIELD,
    PRICE_OUT_OF_RANGE,
    NEGATIVE_VOLUME,
    BAD_TIMESTAMP,
    TIMESTAMP_NOT_HOUR_ALIGNED,
    BAD_URL,
    BAD_MARKET_ID,
    BAD_OUTCOME,
];

/// Every class [`crate::SimulatedDownstream`] can return. All are retryable.
pub const DOWNSTREAM: &[&str] = &[DOWNSTREAM_TIMEOUT, DOWNSTREAM_UNAVAILABLE];
