//! Which S3 failures are worth retrying, and how they read.
//!
//! The SDK already retries throttling and transient errors (its standard
//! retry policy) before an error reaches us; what remains is classified
//! here so that callers can tell "try again later" (timeouts, a server
//! that is down, 5xx, throttling) from "this will not work" (no such
//! bucket, access denied, a corrupt object).

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use dlq_core::store::StoreError;

/// The backend name in errors.
pub(crate) const BACKEND: &str = "s3";

/// A failed S3 request as a store error naming the operation and key (never
/// credentials: the SDK's error context carries none).
pub(crate) fn request<E, R>(op: &str, key: &str, err: &SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let retryable = match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => true,
        SdkError::ResponseError(_) => true,
        SdkError::ServiceError(e) => {
            let code = e.err().code().unwrap_or_default();
            matches!(
                code,
                "SlowDown" | "InternalError" | "ServiceUnavailable" | "RequestTimeout"
            )
        }
        _ => false,
    };
    let detail = match err.as_service_error() {
        Some(e) => format!(
            "{}: {}",
            e.code().unwrap_or("error"),
            e.message().unwrap_or("no message")
        ),
        None => DisplayErrorContext(err).to_string(),
    };
    StoreError::Backend {
        backend: BACKEND,
        message: format!("{op} {key:?}: {detail}"),
        retryable,
    }
}

/// Data in the bucket that dlq cannot read: never retryable.
pub(crate) fn corrupt(message: impl Into<String>) -> StoreError {
    StoreError::Backend {
        backend: BACKEND,
        message: message.into(),
        retryable: false,
    }
}

/// Another writer kept committing first; trying again later may work.
pub(crate) fn contended(message: impl Into<String>) -> StoreError {
    StoreError::Backend {
        backend: BACKEND,
        message: message.into(),
        retryable: true,
    }
}
