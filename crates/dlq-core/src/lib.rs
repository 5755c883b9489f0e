//! dlq-core: the parts of the dlq toolkit that know no network.
//!
//! dlq makes sure that a record that still fails after its retries is never
//! lost: it goes to a dead letter queue (DLQ) with its error, where people can
//! monitor it, analyze why it failed, fix it and reprocess it. This crate holds
//! what every store, processor and command shares:
//!
//! * [`envelope`]: the v1 DLQ record format, byte-exact and size-bounded, and
//!   the decoding of foreign DLQ records (the seed format, raw records);
//! * [`retry`]: [`RetryPolicy`], exponential backoff with jitter, and the
//!   retryable-versus-permanent decision;
//! * [`store`]: the [`DlqStore`] trait every backend implements, and
//!   [`memory::MemoryStore`];
//! * [`filter`]: the small closed filter language of `--filter`;
//! * [`fix`]: jq fixes run in-process by jaq;
//! * [`analyze`]: failure groups (source, stage, error class);
//! * [`mine`]: message templates, Drain-style: masking, root causes, an
//!   online miner whose state can be persisted.
//!
//! Backends with heavy dependencies (SQLite, Kafka) live in their own crates.
//!
//! ```
//! use dlq_core::{DeadLetter, Failure, envelope};
//!
//! let failure = Failure::permanent("validate", "validation.wrong_type", "price is a string");
//! let letter = DeadLetter::new("file:demo:0", br#"{"price":"0.42"}"#.to_vec(), &failure);
//! let encoded = envelope::encode(&letter, &envelope::EncodeOptions::default()).unwrap();
//! let back = envelope::decode(&encoded.bytes, "unused");
//! assert_eq!(back.payload, letter.payload);
//! assert_eq!(back.error_class, "validation.wrong_type");
//! ```

pub mod analyze;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod discard;
pub mod envelope;
pub mod filter;
pub mod fix;
pub mod memory;
pub mod mine;
pub mod process;
pub mod replay;
pub mod retry;
pub mod secret;
pub mod store;
pub mod triage;

pub use envelope::{DeadLetter, Header, Source};
pub use retry::RetryPolicy;
pub use store::{DlqStore, Status};

/// Why a record failed one attempt: what the handler (or a sink) reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The processing stage that failed, e.g. `validate`, `produce`, `sink`.
    pub stage: String,
    /// A stable, dotted class, e.g. `validation.price_out_of_range`.
    pub error_class: String,
    /// The human-readable error.
    pub message: String,
    /// Whether a later attempt could succeed.
    pub retryable: bool,
}

impl Failure {
    /// A failure that no retry can fix (bad data, a bug).
    pub fn permanent(
        stage: impl Into<String>,
        error_class: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Failure {
            stage: stage.into(),
            error_class: error_class.into(),
            message: message.into(),
            retryable: false,
        }
    }

    /// A failure that a later attempt may not meet (a timeout, an outage).
    pub fn transient(
        stage: impl Into<String>,
        error_class: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Failure {
            retryable: true,
            ..Failure::permanent(stage, error_class, message)
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at {}: {}",
            self.error_class, self.stage, self.message
        )
    }
}
