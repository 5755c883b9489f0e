//! Which SQS failures are worth retrying, and how they read: every error
//! becomes a [`StoreError::Backend`] of backend `sqs`.

use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::operation::get_queue_url::GetQueueUrlError;
use dlq_core::store::StoreError;

/// Result of SQS operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Error codes of a busy or briefly unavailable service.
const RETRYABLE_CODES: [&str; 4] = [
    "RequestThrottled",
    "ThrottlingException",
    "ServiceUnavailable",
    "InternalFailure",
];

/// An SDK call failed: what was asked, the cause chain (no credentials are
/// in it: the SDK never puts them in errors), and whether a retry may work.
pub fn sdk<E, R>(what: &str, e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let retryable = match &e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(s) => s.err().code().is_some_and(|c| RETRYABLE_CODES.contains(&c)),
        _ => false,
    };
    StoreError::Backend {
        backend: "sqs",
        message: format!("{what}: {}", DisplayErrorContext(&e)),
        retryable,
    }
}

/// An S3 call (a claim check) failed.
pub fn s3<E, R>(what: &str, e: aws_sdk_s3::error::SdkError<E, R>) -> StoreError
where
    E: std::error::Error + aws_sdk_s3::error::ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    use aws_sdk_s3::error::SdkError as S3Error;
    let retryable = match &e {
        S3Error::TimeoutError(_) | S3Error::DispatchFailure(_) | S3Error::ResponseError(_) => true,
        S3Error::ServiceError(s) => s
            .err()
            .code()
            .is_some_and(|c| matches!(c, "SlowDown" | "InternalError" | "ServiceUnavailable")),
        _ => false,
    };
    StoreError::Backend {
        backend: "sqs",
        message: format!("{what}: {}", aws_sdk_s3::error::DisplayErrorContext(&e)),
        retryable,
    }
}

/// A batch entry SQS refused.
pub fn refused(what: &str, code: &str, message: &str, sender_fault: bool) -> StoreError {
    StoreError::Backend {
        backend: "sqs",
        message: format!("{what}: SQS refused an entry: {code}: {message}"),
        retryable: !sender_fault,
    }
}

/// A failure on this side (building a request, starting the runtime).
pub fn local(message: String) -> StoreError {
    StoreError::Backend {
        backend: "sqs",
        message,
        retryable: false,
    }
}

/// Whether GetQueueUrl failed because the queue does not exist (AWS and
/// ElasticMQ spell the code differently).
pub fn is_no_such_queue<R>(e: &SdkError<GetQueueUrlError, R>) -> bool {
    e.as_service_error().is_some_and(|s| {
        s.is_queue_does_not_exist()
            || s.code()
                .is_some_and(|c| c.contains("NonExistentQueue") || c.contains("QueueDoesNotExist"))
    })
}
