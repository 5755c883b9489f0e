//! `SqliteStore` passes the `DlqStore` contract checks of
//! `dlq_core::conformance`; each reopen closes the database file and opens
//! it again, so every check also proves durability.

use dlq_core::conformance::Harness;
use dlq_sqlite::{SqliteOptions, SqliteStore};

/// A database file of its own in a temporary directory.
struct Sqlite {
    dir: tempfile::TempDir,
}

impl Harness for Sqlite {
    type Store = SqliteStore;

    fn dlq(&mut self, name: &str) -> String {
        format!("dlq.{name}")
    }

    fn open(&mut self) -> SqliteStore {
        SqliteStore::open(self.dir.path().join("dlq.db"), SqliteOptions::default()).expect("open")
    }

    fn reopen(&mut self, store: SqliteStore) -> SqliteStore {
        drop(store);
        self.open()
    }
}

dlq_core::store_conformance_tests!(|| Some(Sqlite {
    dir: tempfile::tempdir().expect("tempdir"),
}));
