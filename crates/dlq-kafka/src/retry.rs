//! Which rdkafka errors a caller may retry, and how errors carry their
//! context without carrying secrets.

use dlq_core::store::StoreError;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// The `backend` name in [`StoreError::Backend`].
pub(crate) const BACKEND: &str = "kafka";

/// Whether the same call may succeed later: the broker is unreachable or
/// busy, a leader is moving, a request or delivery timed out, a
/// transaction must be aborted and retried. Authentication and
/// authorization failures, invalid configuration, oversized messages, a
/// fenced producer (another process took over its transactional id) and
/// bugs need a person.
pub fn is_retryable(err: &KafkaError) -> bool {
    if let KafkaError::Transaction(e) = err {
        if e.is_fatal() {
            return false;
        }
        if e.is_retriable() || e.txn_requires_abort() {
            return true;
        }
    }
    match err {
        KafkaError::Canceled | KafkaError::NoMessageReceived => true,
        KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_) | KafkaError::Nul(_) => false,
        _ => err.rdkafka_error_code().is_some_and(code_is_retryable),
    }
}

/// Whether an error code is transient.
pub fn code_is_retryable(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::BrokerTransportFailure
            | C::Resolve
            | C::MessageTimedOut
            | C::AllBrokersDown
            | C::OperationTimedOut
            | C::TimedOutQueue
            | C::QueueFull
            | C::ISRInsufficient
            | C::WaitingForCoordinator
            | C::Retry
            | C::PurgeQueue
            | C::PurgeInflight
            | C::UnknownTopicOrPartition
            | C::UnknownPartition
            | C::UnknownTopic
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::RequestTimedOut
            | C::BrokerNotAvailable
            | C::ReplicaNotAvailable
            | C::NetworkException
            | C::CoordinatorLoadInProgress
            | C::CoordinatorNotAvailable
            | C::NotCoordinator
            | C::NotEnoughReplicas
            | C::NotEnoughReplicasAfterAppend
            | C::NotController
            | C::ConcurrentTransactions
            | C::KafkaStorageError
            | C::FencedLeaderEpoch
            | C::UnknownLeaderEpoch
            | C::OffsetNotAvailable
            | C::PreferredLeaderNotAvailable
            | C::ThrottlingQuotaExceeded
            | C::ReassignmentInProgress
            | C::UnstableOffsetCommit
    )
}

/// Replaces secret values in client messages with `***`.
#[derive(Clone, Default)]
pub(crate) struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub(crate) fn new(secrets: Vec<String>) -> Redactor {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        // Longest first, so that a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Redactor { secrets }
    }

    pub(crate) fn clean(&self, text: String) -> String {
        let mut text = text;
        for s in &self.secrets {
            if text.contains(s.as_str()) {
                text = text.replace(s.as_str(), "***");
            }
        }
        text
    }
}

/// A [`StoreError::Backend`] for a failed client call: what was being done,
/// on which topic, the client's error, secrets scrubbed.
pub(crate) fn backend(
    redactor: &Redactor,
    op: &str,
    topic: Option<&str>,
    err: &KafkaError,
) -> StoreError {
    let retryable = is_retryable(err);
    let topic = topic.map(|t| format!(" on topic {t}")).unwrap_or_default();
    let hint = if retryable { " (transient; retry)" } else { "" };
    StoreError::Backend {
        backend: BACKEND,
        message: redactor.clean(format!("{op}{topic}: {err}{hint}")),
        retryable,
    }
}

/// A [`StoreError::Backend`] for a problem found by the store itself.
pub(crate) fn failure(message: impl Into<String>, retryable: bool) -> StoreError {
    StoreError::Backend {
        backend: BACKEND,
        message: message.into(),
        retryable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_codes_retry_and_permanent_ones_do_not() {
        for code in [
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::NotLeaderForPartition,
            RDKafkaErrorCode::QueueFull,
        ] {
            assert!(
                is_retryable(&KafkaError::MessageProduction(code)),
                "{code:?}"
            );
        }
        for code in [
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::SaslAuthenticationFailed,
            RDKafkaErrorCode::MessageSizeTooLarge,
            RDKafkaErrorCode::InvalidConfig,
            RDKafkaErrorCode::ProducerFenced,
            RDKafkaErrorCode::Fenced,
        ] {
            assert!(
                !is_retryable(&KafkaError::MessageProduction(code)),
                "{code:?}"
            );
        }
        assert!(!is_retryable(&KafkaError::ClientCreation("bad".into())));
    }

    #[test]
    fn errors_carry_context_and_never_secrets() {
        let r = Redactor::new(vec!["hunter2".into(), String::new()]);
        let e = backend(
            &r,
            "creating the producer",
            Some("dlq.a"),
            &KafkaError::ClientCreation("sasl.password=hunter2 rejected".into()),
        );
        let text = e.to_string();
        assert!(
            text.starts_with("kafka store: creating the producer on topic dlq.a: "),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("***"));
        assert!(!e.is_retriable());
        let e = backend(
            &r,
            "reading",
            None,
            &KafkaError::MessageConsumption(RDKafkaErrorCode::BrokerTransportFailure),
        );
        assert!(e.is_retriable());
    }
}
