//! dlq-testkit: helpers that several crates' integration tests share, so
//! that each test file holds what it tests and not how to reach a broker.
//!
//! * [`kafka`]: the real Apache Kafka broker that `scripts/test.sh` starts
//!   (its address from `DLQ_KAFKA_BOOTSTRAP`; a missing broker fails under
//!   CI and skips the test otherwise), topics with unique names, producing,
//!   reading a topic back to its end, watermarks, deleting topics.
//! * [`sqs`]: the SQS-compatible ElasticMQ server of `scripts/sqs.sh` (its
//!   endpoint from `DLQ_SQS_ENDPOINT`, the same rule for a missing server),
//!   queues with unique names.
//! * [`s3`]: the real S3-compatible server (S3Proxy) that `scripts/test.sh`
//!   starts (`DLQ_S3_ENDPOINT`, same rule), its test credentials, the shared
//!   test bucket, reading objects back.
//! * [`block_on`]: runs an rdkafka admin future on the calling thread.
//!
//! Not published; a dev-dependency only. Test code: a failure panics with
//! what went wrong.

pub mod kafka;
pub mod s3;
pub mod sqs;

use std::task::{Context, Poll, Wake};
use std::time::Duration;

/// Runs a future to completion on this thread. rdkafka's admin futures are
/// completed by the client's own polling thread, so no async runtime is
/// needed.
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::sync::Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(20));
    }
}
