//! The Kafka helpers of `dlq-testkit`, under the name these tests use.

pub use dlq_testkit::kafka::*;
