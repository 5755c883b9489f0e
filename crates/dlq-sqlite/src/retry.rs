//! Which SQLite errors a caller may retry, and how errors carry their context.

use dlq_core::store::StoreError;
use rusqlite::ErrorCode;
use std::path::Path;

/// The `backend` name in [`StoreError::Backend`].
pub(crate) const BACKEND: &str = "sqlite";

/// Whether the same call may succeed later: another connection holds a lock
/// (`SQLITE_BUSY` after the busy timeout, or `SQLITE_LOCKED`). Everything
/// else (a full disk, a corrupt file, a constraint, a bug) needs a person.
pub fn is_retryable(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// A [`StoreError::Backend`] saying what was being done, on which database.
pub(crate) fn backend(op: &str, path: &Path, err: rusqlite::Error) -> StoreError {
    let retryable = is_retryable(&err);
    let hint = if retryable {
        " (another connection holds the database lock; retry)"
    } else {
        ""
    };
    StoreError::Backend {
        backend: BACKEND,
        message: format!("{op} on {}: {err}{hint}", path.display()),
        retryable,
    }
}

/// A [`StoreError::Backend`] for data that SQLite returned but that this
/// crate cannot make sense of (a bad status, a timestamp out of range).
pub(crate) fn corrupt(op: &str, path: &Path, what: impl std::fmt::Display) -> StoreError {
    StoreError::Backend {
        backend: BACKEND,
        message: format!("{op} on {}: {what}", path.display()),
        retryable: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::ffi;

    fn failure(code: std::os::raw::c_int) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(ffi::Error::new(code), None)
    }

    #[test]
    fn busy_and_locked_are_retryable_others_not() {
        assert!(is_retryable(&failure(ffi::SQLITE_BUSY)));
        assert!(is_retryable(&failure(ffi::SQLITE_LOCKED)));
        assert!(!is_retryable(&failure(ffi::SQLITE_FULL)));
        assert!(!is_retryable(&failure(ffi::SQLITE_CORRUPT)));
        assert!(!is_retryable(&rusqlite::Error::QueryReturnedNoRows));
    }

    #[test]
    fn errors_name_the_operation_and_the_database() {
        let e = backend(
            "commit",
            Path::new("/data/dlq.db"),
            failure(ffi::SQLITE_BUSY),
        );
        assert!(e.is_retriable());
        let text = e.to_string();
        assert!(
            text.starts_with("sqlite store: commit on /data/dlq.db: "),
            "{text}"
        );
        let e = backend("scan", Path::new("x.db"), failure(ffi::SQLITE_FULL));
        assert!(!e.is_retriable());
    }
}
