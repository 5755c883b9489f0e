//! Raw SQLite: opening a connection with the durability settings, and the
//! numbered schema migrations.

use crate::config::SqliteOptions;
use crate::retry::{backend, corrupt};
use dlq_core::store::Result;
use rusqlite::{Connection, TransactionBehavior};
use std::path::Path;

/// One schema step: `migrations/NNNN_name.sql`, applied once, in order.
pub(crate) struct Migration {
    /// The `PRAGMA user_version` after this step.
    pub version: u32,
    /// The file name, for error messages.
    pub name: &'static str,
    /// The SQL.
    pub sql: &'static str,
}

/// Every migration, oldest first. Append only: never edit one that shipped.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_init.sql",
        sql: include_str!("../migrations/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "0002_archived.sql",
        sql: include_str!("../migrations/0002_archived.sql"),
    },
];

/// The schema version this build writes (the last migration's).
pub const SCHEMA_VERSION: u32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// Prepared statements kept per connection; the store uses about a dozen.
const STATEMENT_CACHE: usize = 64;

/// Opens `path` (`:memory:` for a private in-memory database) with the
/// store's settings and brings its schema up to [`SCHEMA_VERSION`].
pub(crate) fn open(path: &Path, options: &SqliteOptions) -> Result<Connection> {
    let mut conn = Connection::open(path).map_err(|e| backend("opening", path, e))?;
    configure(&conn, path, options)?;
    migrate(&mut conn, path)?;
    Ok(conn)
}

/// The connection settings every store connection has.
///
/// * WAL: readers never block the writer and see a consistent snapshot.
/// * `synchronous = FULL`: in WAL mode the log is fsynced at every commit,
///   so a commit that returned survives power loss (`NORMAL` would only
///   survive a process crash). `fullfsync` makes that true on macOS too,
///   where plain `fsync` does not flush the drive's cache.
/// * `foreign_keys`: on, so that any reference a later migration declares
///   is enforced.
/// * the busy timeout: a locked database is waited for, then reported as
///   a retryable error.
pub(crate) fn configure(conn: &Connection, path: &Path, options: &SqliteOptions) -> Result<()> {
    let op = "configuring the connection";
    conn.busy_timeout(options.busy_timeout)
        .map_err(|e| backend(op, path, e))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| backend(op, path, e))?;
    // An in-memory database has no file to log to; it reports `memory`.
    if !mode.eq_ignore_ascii_case("wal") && !mode.eq_ignore_ascii_case("memory") {
        return Err(corrupt(
            op,
            path,
            format!("SQLite refused WAL journal mode (got {mode:?}); the store needs WAL"),
        ));
    }
    for (pragma, value) in [
        ("synchronous", "FULL"),
        ("fullfsync", "ON"),
        ("foreign_keys", "ON"),
    ] {
        conn.pragma_update(None, pragma, value)
            .map_err(|e| backend(op, path, e))?;
    }
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}

fn user_version(conn: &Connection, path: &Path) -> Result<u32> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| backend("reading the schema version", path, e))
}

/// Applies the migrations the database lacks, each in its own transaction
/// with the `user_version` bump, so a crash leaves a whole step or none.
fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let current = user_version(conn, path)?;
    if current > SCHEMA_VERSION {
        return Err(corrupt(
            "opening",
            path,
            format!(
                "the database has schema version {current}, newer than this build's \
                 {SCHEMA_VERSION}; use a newer dlq"
            ),
        ));
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        let op = format!("applying migration {}", m.name);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| backend(&op, path, e))?;
        // Another process may have applied it while we waited for the lock.
        if user_version(&tx, path)? >= m.version {
            continue;
        }
        tx.execute_batch(m.sql).map_err(|e| backend(&op, path, e))?;
        tx.pragma_update(None, "user_version", m.version)
            .map_err(|e| backend(&op, path, e))?;
        tx.commit().map_err(|e| backend(&op, path, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            let n = u32::try_from(i + 1).expect("few migrations");
            assert_eq!(m.version, n, "{}", m.name);
            assert!(m.name.starts_with(&format!("{n:04}_")), "{}", m.name);
            assert!(m.name.ends_with(".sql"), "{}", m.name);
        }
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("future.db");
        let conn = open(&path, &SqliteOptions::default()).expect("open");
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .expect("bump");
        drop(conn);
        let err = open(&path, &SqliteOptions::default()).expect_err("refused");
        assert!(err.to_string().contains("newer than this build"), "{err}");
        assert!(!err.is_retriable());
    }

    #[test]
    fn settings_are_in_force() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        let conn = open(&path, &SqliteOptions::default()).expect("open");
        let get = |p: &str| -> String {
            conn.pragma_query_value(None, p, |r| r.get::<_, rusqlite::types::Value>(0))
                .map(|v| format!("{v:?}"))
                .expect("pragma")
        };
        assert_eq!(get("journal_mode"), "Text(\"wal\")");
        assert_eq!(get("synchronous"), "Integer(2)", "FULL");
        assert_eq!(get("foreign_keys"), "Integer(1)");
        assert_eq!(get("user_version"), format!("Integer({SCHEMA_VERSION})"));
        // Opening again is a no-op for the schema.
        drop(conn);
        open(&path, &SqliteOptions::default()).expect("reopen");
    }
}
