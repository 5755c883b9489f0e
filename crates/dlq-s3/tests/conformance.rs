//! `S3Store` passes the `DlqStore` contract checks of `dlq_core::conformance`
//! against the real S3-compatible server (`DLQ_S3_ENDPOINT`, S3Proxy from
//! `scripts/s3.sh`). Every check gets its own prefix in the shared test
//! bucket; each reopen opens a new store that reads the state back from
//! the bucket.

use dlq_core::conformance::Harness;
use dlq_s3::{S3Config, S3Store};

/// One check's private prefix of the test bucket.
struct S3 {
    config: S3Config,
}

impl S3 {
    fn new() -> Option<S3> {
        let endpoint = dlq_testkit::s3::endpoint()?;
        let mut config = S3Config::new(dlq_testkit::s3::bucket(&endpoint));
        config.prefix = dlq_testkit::s3::prefix("conformance");
        config.endpoint = Some(endpoint);
        // Small, so that reopening reads a snapshot and a log tail.
        config.snapshot_every = 2;
        Some(S3 { config })
    }
}

impl Harness for S3 {
    type Store = S3Store;

    fn dlq(&mut self, name: &str) -> String {
        format!("dlq.{name}")
    }

    fn open(&mut self) -> S3Store {
        S3Store::open_with_sdk_config(self.config.clone(), dlq_testkit::s3::sdk_config())
            .expect("open the S3 store")
    }

    fn reopen(&mut self, store: S3Store) -> S3Store {
        drop(store);
        self.open()
    }
}

dlq_core::store_conformance_tests!(S3::new);
