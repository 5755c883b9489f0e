//! Which rdkafka errors a caller may retry, and how errors carry their
//! context without carrying secrets; and [`Health`], what every client's
//! context reports: an authentication or authorization failure (fatal at
//! once, instead of retrying until a timeout) and librdkafka's logs and
//! global errors (at debug level, not one line per reconnect attempt).

use dlq_core::store::StoreError;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

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
/// on which topic, the client's error, secrets scrubbed. An authentication
/// or authorization failure is named as such, with what to check.
pub(crate) fn backend(
    redactor: &Redactor,
    op: &str,
    topic: Option<&str>,
    err: &KafkaError,
) -> StoreError {
    let retryable = is_retryable(err);
    let topic = topic.map(|t| format!(" on topic {t}")).unwrap_or_default();
    let message = match err.rdkafka_error_code().and_then(Access::of) {
        Some(access) => access.message(&format!("{op}{topic}: {err}")),
        None => {
            let unreachable = matches!(
                err.rdkafka_error_code(),
                Some(
                    RDKafkaErrorCode::BrokerTransportFailure
                        | RDKafkaErrorCode::AllBrokersDown
                        | RDKafkaErrorCode::Resolve
                )
            );
            let hint = match (retryable, unreachable) {
                (_, true) => {
                    " (the brokers cannot be reached: check the bootstrap servers, that they \
                     run, and security.protocol; transient, retry)"
                }
                (true, false) => " (transient; retry)",
                (false, false) => "",
            };
            format!("{op}{topic}: {err}{hint}")
        }
    };
    StoreError::Backend {
        backend: BACKEND,
        message: redactor.clean(message),
        retryable,
    }
}

/// A failure of credentials or permissions: no retry can fix it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// The cluster refused the credentials (or the mechanism).
    Authentication,
    /// The credentials are fine, the ACLs do not allow the operation.
    Authorization,
}

impl Access {
    /// Whether an error code is an authentication or authorization failure.
    pub(crate) fn of(code: RDKafkaErrorCode) -> Option<Access> {
        use RDKafkaErrorCode as C;
        match code {
            C::Authentication
            | C::SaslAuthenticationFailed
            | C::UnsupportedSASLMechanism
            | C::IllegalSASLState => Some(Access::Authentication),
            C::TopicAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::TransactionalIdAuthorizationFailed
            | C::DelegationTokenAuthorizationFailed => Some(Access::Authorization),
            _ => None,
        }
    }

    /// The message a person reads: what failed and what to check (never
    /// the secret itself; the caller scrubs `detail`).
    pub(crate) fn message(self, detail: &str) -> String {
        match self {
            Access::Authentication => format!(
                "authentication failed: {detail}; check security.protocol, sasl.mechanism, \
                 sasl.username and the password (DLQ_KAFKA_SASL_PASSWORD or sasl_password_file)"
            ),
            Access::Authorization => format!(
                "not authorized: {detail}; the cluster's ACLs must allow this user the \
                 topics, consumer group and transactional id dlq uses"
            ),
        }
    }
}

/// How often the same librdkafka global error is logged at WARN.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// How long transient errors (the cluster unreachable) must go on before
/// a long-running client says so at WARN (then at most once a minute); a
/// one-shot command fails with its own error well before.
const OUTAGE_WARN_AFTER: Duration = Duration::from_secs(60);

/// A gap without transient errors this long ends an outage.
const OUTAGE_GAP: Duration = Duration::from_secs(30);

/// An ongoing run of transient errors.
#[derive(Clone, Copy)]
struct Outage {
    first: Instant,
    last: Instant,
    warned: Option<Instant>,
}

/// What the contexts of a set of clients report, shared with their owner:
/// the first authentication or authorization failure, which makes every
/// later call fail at once with it. Cloning shares it.
#[derive(Clone, Default)]
pub(crate) struct Health {
    inner: Arc<HealthInner>,
}

#[derive(Default)]
struct HealthInner {
    denied: OnceLock<String>,
    redactor: Redactor,
    /// Per error code: when it was last logged at WARN.
    warned: Mutex<HashMap<i32, Instant>>,
    outage: Mutex<Option<Outage>>,
}

impl Health {
    pub(crate) fn new(redactor: Redactor) -> Health {
        Health {
            inner: Arc::new(HealthInner {
                redactor,
                ..HealthInner::default()
            }),
        }
    }

    /// The authentication or authorization failure seen, as a message.
    pub(crate) fn denied(&self) -> Option<&str> {
        self.inner.denied.get().map(String::as_str)
    }

    /// The failure seen, as a store error (not retryable).
    pub(crate) fn denied_error(&self) -> Option<StoreError> {
        self.denied().map(|m| failure(m, false))
    }

    /// A global error of a client (librdkafka's error callback).
    ///
    /// An access failure is kept (the caller fails with it). Transient
    /// errors (all brokers down, a connection refused, a timeout) are
    /// logged at debug only: they repeat on every reconnect, and the call
    /// that cannot finish reports them once. Other errors are logged at
    /// WARN, each code at most once per [`WARN_EVERY`].
    pub(crate) fn on_error(&self, error: &KafkaError, reason: &str) {
        let reason = self.inner.redactor.clean(reason.to_owned());
        let code = error.rdkafka_error_code();
        if let Some(access) = code.and_then(Access::of) {
            let _ = self.inner.denied.set(access.message(&reason));
            tracing::debug!(error = %error, reason, "librdkafka: access denied");
            return;
        }
        // The end of a partition is news for consumers (they get it from
        // poll), not an error.
        if code == Some(RDKafkaErrorCode::PartitionEOF) {
            tracing::debug!(error = %error, reason, "librdkafka error");
            return;
        }
        if is_retryable(error) {
            if self.outage_warning_due() {
                tracing::warn!(error = %error, reason, "the cluster has been unreachable for over a minute; still retrying");
            } else {
                tracing::debug!(error = %error, reason, "librdkafka error");
            }
            return;
        }
        let key = code.map_or(i32::MIN, |c| c as i32);
        let now = Instant::now();
        let due = {
            let mut warned = self
                .inner
                .warned
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match warned.get(&key) {
                Some(&t) if now.duration_since(t) < WARN_EVERY => false,
                _ => {
                    warned.insert(key, now);
                    true
                }
            }
        };
        if due {
            tracing::warn!(error = %error, reason, "kafka client error");
        } else {
            tracing::debug!(error = %error, reason, "kafka client error");
        }
    }

    /// Notes a transient error; true when an outage has gone on long
    /// enough for a warning (and none was given in the last minute).
    fn outage_warning_due(&self) -> bool {
        let now = Instant::now();
        let mut outage = self
            .inner
            .outage
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let o = match *outage {
            Some(o) if now.duration_since(o.last) < OUTAGE_GAP => {
                outage.insert(Outage { last: now, ..o })
            }
            _ => outage.insert(Outage {
                first: now,
                last: now,
                warned: None,
            }),
        };
        let due = now.duration_since(o.first) >= OUTAGE_WARN_AFTER
            && o.warned
                .is_none_or(|w| now.duration_since(w) >= OUTAGE_WARN_AFTER);
        if due {
            o.warned = Some(now);
        }
        due
    }

    /// A librdkafka log line: debug level (`DLQ_LOG=debug` shows them);
    /// what matters reaches the user as an error of the call that failed.
    pub(crate) fn on_log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let message = self.inner.redactor.clean(message.to_owned());
        tracing::debug!(target: "librdkafka", ?level, fac, "{message}");
    }
}

/// The context of a client that needs no callbacks of its own (admin
/// clients): it reports to a [`Health`].
pub(crate) struct Watched(pub(crate) Health);

impl ClientContext for Watched {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.0.on_log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.0.on_error(&error, reason);
    }
}

impl ProducerContext for Watched {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

/// A client that only watches the cluster for its [`Health`]: it connects
/// at once (its bootstrap metadata request) and serves its error callbacks
/// on a thread of its own. librdkafka reports an authentication failure
/// only to a client's error callback, served when the client is polled;
/// a metadata call or an admin request meanwhile waits for a connection
/// that never comes, until its timeout. With a watcher, a caller that
/// waits in short slices sees the failure within about a second. It never
/// produces. `None` when it cannot be created (the caller's own clients
/// then report the configuration error).
pub(crate) fn watcher(base: &ClientConfig, health: &Health) -> Option<ThreadedProducer<Watched>> {
    base.create_with_context(Watched(health.clone())).ok()
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

    #[test]
    fn access_failures_are_named_with_what_to_check_and_never_retried() {
        let r = Redactor::new(vec!["hunter2".into()]);
        let e = backend(
            &r,
            "reading metadata",
            None,
            &KafkaError::MetadataFetch(RDKafkaErrorCode::SaslAuthenticationFailed),
        );
        let text = e.to_string();
        assert!(
            text.contains("authentication failed: reading metadata"),
            "{text}"
        );
        assert!(text.contains("sasl.username"), "{text}");
        assert!(!e.is_retriable());
        let e = backend(
            &r,
            "reading",
            Some("t"),
            &KafkaError::MessageConsumption(RDKafkaErrorCode::TopicAuthorizationFailed),
        );
        assert!(
            e.to_string().contains("not authorized: reading on topic t"),
            "{e}"
        );
    }

    #[test]
    fn health_keeps_the_first_access_failure_scrubbed() {
        let h = Health::new(Redactor::new(vec!["hunter2".into()]));
        h.on_error(
            &KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        assert!(h.denied().is_none(), "a transient error is not a denial");
        h.on_error(
            &KafkaError::Global(RDKafkaErrorCode::Authentication),
            "SASL authentication error: bad password hunter2",
        );
        h.on_error(
            &KafkaError::Global(RDKafkaErrorCode::TopicAuthorizationFailed),
            "later",
        );
        let denied = h.denied().expect("denied");
        assert!(
            denied.starts_with("authentication failed: SASL"),
            "{denied}"
        );
        assert!(!denied.contains("hunter2"), "{denied}");
        assert!(!h.denied_error().expect("error").is_retriable());
    }
}
