//! dlq-marketlag: the MarketLag domain, for demos, tests and benchmarks of
//! the dlq toolkit.
//!
//! MarketLag's pipelines push RSS news events to the Kafka topic `rss.events`
//! and hourly Polymarket prices to `polymarket.price_hourly`. This crate knows
//! what a good record of each looks like and what bad ones look like in
//! practice, so that the rest of dlq can be exercised on realistic failures.
//! It is standalone on purpose (it does not depend on `dlq-core`): it speaks
//! in bytes, error classes and messages, which the core wraps in its own
//! failure and envelope types.
//!
//! Layout:
//!
//! * [`pipeline`]: [`Pipeline`], its topics (`rss.events`,
//!   `polymarket.price_hourly`) and DLQ topics (`dlq.<topic>`);
//! * [`record`]: the record types [`RssEvent`] and [`PriceHourly`];
//! * [`validate()`]: bytes to a checked record or a [`ValidationError`] with a
//!   precise, stable error class; [`record_id`] to trace a record by its id
//!   even when it is invalid;
//! * [`class`]: the error classes, in the order they are checked;
//! * [`downstream`]: [`SimulatedDownstream`], a deterministic downstream with
//!   transient timeouts and an outage (retryable failures);
//! * [`generator`]: [`generate`], a fast seeded generator of records with a
//!   realistic [`FailureMix`], each line labelled with the class `validate`
//!   gives it and the jq fix that repairs it ([`fixes`]).
//!
//! `examples/generate.rs` writes generated records as NDJSON (and the rate):
//! `cargo run --release -p dlq-marketlag --example generate -- polymarket 1000000 42`.
//!
//! Nothing here panics on any input; property tests hold it to that.
//!
//! ```
//! use dlq_marketlag::{Expected, GeneratorConfig, Limits, Pipeline, class, generate, validate};
//!
//! let config = GeneratorConfig::new(Pipeline::Rss, 10_000, 7);
//! let mut invalid = 0;
//! for record in generate(&config) {
//!     match validate(Pipeline::Rss, &record.line, &Limits::default()) {
//!         Ok(valid) => assert_eq!(record.expected, Expected::Valid, "{}", valid.id()),
//!         Err(err) => {
//!             assert!(class::VALIDATION.contains(&err.class));
//!             assert!(!err.retryable());
//!             invalid += 1;
//!         }
//!     }
//! }
//! assert!((300..800).contains(&invalid), "{invalid}");
//! ```

pub mod class;
mod corpus;
pub mod downstream;
pub mod generator;
mod hash;
pub mod pipeline;
pub mod record;
mod validate;

pub use downstream::{Behaviour, DownstreamError, SimulatedDownstream};
pub use generator::{
    Expected, FailureMix, GeneratedRecord, Generator, GeneratorConfig, MixError, fixes, generate,
};
pub use pipeline::{Pipeline, UnknownPipeline};
pub use record::{Outcome, PriceHourly, RssEvent};
pub use validate::{Limits, Valid, ValidationError, record_id, validate};
