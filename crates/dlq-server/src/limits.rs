//! The sizes and ranges the API accepts, in one place (docs/serve.md lists
//! them).
//!
//! They bound the work one request can ask for before any of it is done:
//! a body or a query string is refused before it is parsed, a filter or a
//! fix before it is compiled. The nesting depth of a filter or a fix and
//! the time and output of a fix are bounded by `dlq_core` itself.

use crate::error::ApiError;

/// Largest request body (`POST`): 1 MiB, a `413` beyond. A discard of more
/// ids than that holds is better said with a filter or a fingerprint.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Largest query string (after `?`, percent-encoded): 32 KiB, a `414`
/// beyond. It holds a filter of [`MAX_FILTER_BYTES`] even when every byte
/// of it is percent-encoded.
pub const MAX_QUERY_BYTES: usize = 32 * 1024;

/// Longest filter (`filter` in a query string or a body): 8 KiB, a `400`
/// beyond.
pub const MAX_FILTER_BYTES: usize = 8 * 1024;

/// Longest jq fix: 16 KiB, a `400` beyond.
pub const MAX_FIX_BYTES: usize = 16 * 1024;

/// The replay rates accepted, in records per second: the same range as
/// `dlq replay --rate` ([`dlq_core::replay::ReplayOptions::validate`]).
pub use dlq_core::replay::{MAX_RATE, MIN_RATE};

/// A `400` unless `text` (the `what` of a request) is at most `max` bytes.
pub(crate) fn check_len(
    code: &'static str,
    what: &str,
    text: &str,
    max: usize,
) -> Result<(), ApiError> {
    if text.len() > max {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            code,
            format!(
                "{what}: {} bytes, more than the {max} this server accepts",
                text.len()
            ),
        ));
    }
    Ok(())
}

/// A `400` unless `rate` is a number of records per second in
/// [`MIN_RATE`]`..=`[`MAX_RATE`].
pub(crate) fn check_rate(rate: f64) -> Result<(), ApiError> {
    if rate.is_finite() && (MIN_RATE..=MAX_RATE).contains(&rate) {
        return Ok(());
    }
    Err(ApiError::new(
        axum::http::StatusCode::BAD_REQUEST,
        "invalid_rate",
        format!(
            "rate: expected records per second from {MIN_RATE} to {MAX_RATE}, got {rate} \
             (leave it out to replay as fast as the target takes records)"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_outside_the_range_are_refused_with_the_range() {
        for bad in [
            0.0,
            -1.0,
            1e-300,
            1e-10,
            0.0009,
            1e10,
            f64::INFINITY,
            f64::NAN,
        ] {
            let e = check_rate(bad).expect_err("refused");
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
            assert!(e.message.contains("0.001 to 1000000000"), "{}", e.message);
        }
        for good in [MIN_RATE, 0.5, 200.0, MAX_RATE] {
            assert!(check_rate(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn a_text_over_its_limit_is_refused_with_both_sizes() {
        assert!(check_len("invalid_fix", "fix", "..", 2).is_ok());
        let e = check_len("invalid_fix", "fix", "...", 2).expect_err("refused");
        assert_eq!(e.code, "invalid_fix");
        assert_eq!(
            e.message,
            "fix: 3 bytes, more than the 2 this server accepts"
        );
    }
}
