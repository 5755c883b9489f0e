//! `SqsStore` passes the `DlqStore` contract checks of
//! `dlq_core::conformance` against the real SQS-compatible server
//! (ElasticMQ, `DLQ_SQS_ENDPOINT`). Every check gets its own queue prefix
//! and index file; each reopen opens a new store on the same index.

use dlq_core::conformance::Harness;
use dlq_sqs::{SqsConfig, SqsStore};

/// One check's private queues and index.
struct Sqs {
    config: SqsConfig,
    _dir: tempfile::TempDir,
}

impl Sqs {
    fn new() -> Option<Sqs> {
        let endpoint = dlq_testkit::sqs::endpoint()?;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = SqsConfig::new("us-east-1");
        config.endpoint = Some(endpoint);
        config.state = dir.path().join("index.db");
        config.prefix = Some(dlq_testkit::sqs::queue("dlqc"));
        config.lease_secs = 10;
        Some(Sqs { config, _dir: dir })
    }
}

impl Harness for Sqs {
    type Store = SqsStore;

    fn dlq(&mut self, name: &str) -> String {
        format!("{}-{name}", self.config.prefix.as_deref().unwrap_or("dlqc"))
    }

    fn open(&mut self) -> SqsStore {
        SqsStore::open(self.config.clone()).expect("open the SQS store")
    }

    fn reopen(&mut self, store: SqsStore) -> SqsStore {
        drop(store);
        self.open()
    }
}

dlq_core::store_conformance_tests!(Sqs::new);
