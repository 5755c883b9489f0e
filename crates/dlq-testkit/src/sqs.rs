//! Tests against the real SQS-compatible server (ElasticMQ) that
//! `scripts/test.sh` starts with `scripts/sqs.sh`.

/// The server's endpoint (`DLQ_SQS_ENDPOINT`), or `None` (with a message)
/// when none was started; under CI a missing server fails the test. The
/// AWS SDK signs every request, so credentials must come from the standard
/// chain: scripts/test.sh exports dummy ones.
pub fn endpoint() -> Option<String> {
    let endpoint = std::env::var("DLQ_SQS_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty());
    let credentials = std::env::var_os("AWS_ACCESS_KEY_ID").is_some()
        || std::env::var_os("AWS_PROFILE").is_some();
    match endpoint {
        Some(e) if credentials => Some(e),
        _ if std::env::var_os("CI").is_some() => panic!(
            "DLQ_SQS_ENDPOINT or AWS credentials are not set: run the tests with scripts/test.sh"
        ),
        _ => {
            eprintln!(
                "skipped: no SQS server (run `scripts/sqs.sh start`, set DLQ_SQS_ENDPOINT to what \
                 it prints and AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY to dummies, or run \
                 scripts/test.sh)"
            );
            None
        }
    }
}

/// A queue name no other test uses (letters, digits and dashes).
pub fn queue(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    )
}
