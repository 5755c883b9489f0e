//! dlq-sqs: dead letter queues on Amazon SQS (`sqs://REGION?endpoint=URL`).
//!
//! Teams on AWS let SQS move messages a consumer keeps failing on into a
//! DLQ queue (a *redrive policy*). This crate makes such a queue a dlq
//! store, so that `dlq stats`, `inspect`, `analyze` and `replay` work on it
//! as on any other store, and so that dlq can write its own dead letters
//! there (envelope metadata in message attributes).
//!
//! SQS has no peek and no message addressed by id, so a store is the queues
//! plus a local index (an embedded SQLite store) of every record's status:
//! see [`store`] for how reading stays safe (short visibility leases
//! released at once) and how settling deletes messages only after the
//! status is durable; [`codec`] for the message format; [`config`] for the
//! URL and the DLQ-to-queue name mapping; [`replay`] for the replay target.
//! docs/aws.md has the decisions in one place.
//!
//! Credentials come from the standard AWS chain only (environment, shared
//! config and credentials files, profiles, roles), never from the URL.
//!
//! Payloads over SQS's 256 KiB limit are claim-checked to S3 in the SQS
//! Extended Client's format ([`claims`], `claims=s3://BUCKET/PREFIX`).
//!
//! Layout: `config.rs` (URL, names), `client.rs` (raw SQS calls),
//! `errors.rs` (which failures retry), `codec.rs` (messages ↔ dead
//! letters), `store.rs` (the [`dlq_core::DlqStore`] impl), `replay.rs`
//! (the replay target). Tests run against ElasticMQ (`scripts/sqs.sh`).
//!
//! ```no_run
//! use dlq_core::DlqStore;
//! let store = dlq_sqs::SqsStore::open_url(
//!     "sqs://us-east-1?endpoint=http://127.0.0.1:19324&state=/tmp/dlq-sqs.db",
//! )?;
//! for s in store.stats()? {
//!     println!("{}: {} pending", s.dlq, s.pending);
//! }
//! # Ok::<(), dlq_core::store::StoreError>(())
//! ```

pub mod claims;
pub mod client;
pub mod codec;
pub mod config;
pub mod errors;
pub mod replay;
pub mod store;

pub use config::{ClaimsConfig, SqsConfig};
pub use replay::SqsTarget;
pub use store::{QueueCounts, SqsStore};
