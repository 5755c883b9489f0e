//! Which S3 failures are worth retrying, and how they read.
//!
//! The SDK already retries throttling and transient errors (its standard
//! retry policy) before an error reaches us; what remains is classified
//! here so that callers can tell "try again later" (timeouts, a server
//! that is down, 5xx, throttling) from "this will not work" (no such
//! bucket, access denied, a corrupt object).

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use dlq_core::store::StoreError;

/// The backend name in errors.
pub(crate) const BACKEND: &str = "s3";

/// A failed S3 request as a store error naming the operation and key (never
/// credentials: the SDK's error context carries none).
pub(crate) fn request<E, R>(op: &str, key: &str, err: &SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HasStatus + 'static,
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
    let status = err.raw_response().map(HasStatus::status_code);
    let detail = match (err.as_service_error(), status) {
        (Some(e), _) if e.code().is_some() => format!(
            "{}: {}",
            e.code().unwrap_or_default(),
            e.message().unwrap_or("no message")
        ),
        // HEAD requests have no body, so no error code: the status says it.
        (_, Some(403)) => "HTTP 403 access denied (check the AWS credentials: \
                           AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
            .to_owned(),
        (_, Some(301 | 400)) => format!(
            "HTTP {} (is the bucket in another region? set ?region=R)",
            status.unwrap_or_default()
        ),
        (_, Some(code)) => format!("HTTP {code}"),
        (_, None) => chain(err),
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

/// An error and its causes, `: `-separated (Display only: the SDK's Debug
/// forms are long and say nothing more to a user).
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = e.source();
    }
    text
}

/// A raw HTTP response's status.
pub(crate) trait HasStatus {
    /// The status code.
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}
