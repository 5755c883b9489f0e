//! The Kafka helpers of `dlq-testkit`, under the name these tests use.

#[allow(unused_imports)]
pub use dlq_testkit::kafka::*;
