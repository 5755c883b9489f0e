//! [`SqliteOptions`] and the `sqlite://` store URL.

use dlq_core::envelope::EncodeOptions;
use dlq_core::store::{Result, StoreError};
use std::path::PathBuf;
use std::time::Duration;

/// How a [`SqliteStore`](crate::SqliteStore) encodes records and waits for
/// other connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteOptions {
    /// The envelope size limit and error-text cut. Parts of a record that do
    /// not fit go to claim-check blobs in the same database. Default: 1 MiB,
    /// errors cut at 64 KiB ([`EncodeOptions::default`]).
    pub encode: EncodeOptions,
    /// How long a statement waits for another connection's lock before it
    /// fails with a retryable error. Default: [`SqliteOptions::DEFAULT_BUSY_TIMEOUT`].
    pub busy_timeout: Duration,
}

impl SqliteOptions {
    /// Five seconds: long enough to ride out another process's commit or a
    /// WAL checkpoint, short enough that a stuck lock surfaces as an error.
    pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            encode: EncodeOptions::default(),
            busy_timeout: Self::DEFAULT_BUSY_TIMEOUT,
        }
    }
}

/// Where a `sqlite:` URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A database file (relative paths are relative to the working directory).
    File(PathBuf),
    /// A private in-memory database, gone when the store is dropped.
    Memory,
}

/// A parsed store URL: where the database is, and the options it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteUrl {
    /// The database.
    pub location: Location,
    /// The options, defaults overridden by the URL's query.
    pub options: SqliteOptions,
}

impl SqliteUrl {
    /// Parses `sqlite://PATH[?max_bytes=N&busy_timeout_ms=N]`.
    ///
    /// * `sqlite://dlq.db` is `dlq.db` in the working directory,
    ///   `sqlite:///var/lib/dlq.db` an absolute path, `sqlite:dlq.db` the same
    ///   as `sqlite://dlq.db`;
    /// * `sqlite://:memory:` is a private in-memory database;
    /// * `max_bytes` is the envelope size limit (at least
    ///   [`EncodeOptions::MIN_MAX_BYTES`]), `busy_timeout_ms` the lock wait.
    ///
    /// The path is taken literally (no percent-decoding, no `~`). Every
    /// problem of the URL is reported at once.
    pub fn parse(url: &str) -> Result<SqliteUrl> {
        let invalid = |reason: String| StoreError::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| invalid("it does not start with sqlite://".into()))?;
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };
        let mut problems = Vec::new();
        let mut options = SqliteOptions::default();
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            if pair.is_empty() {
                continue;
            }
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "max_bytes" => match value.parse::<usize>() {
                    Ok(n) => match EncodeOptions::with_max_bytes(n) {
                        Ok(encode) => options.encode = encode,
                        Err(e) => problems.push(format!("max_bytes: {e}")),
                    },
                    Err(_) => {
                        problems.push(format!("max_bytes={value:?} is not a number of bytes"))
                    }
                },
                "busy_timeout_ms" => match value.parse::<u64>() {
                    Ok(ms) => options.busy_timeout = Duration::from_millis(ms),
                    Err(_) => problems.push(format!(
                        "busy_timeout_ms={value:?} is not a number of milliseconds"
                    )),
                },
                other => problems.push(format!(
                    "unknown parameter {other:?} (known: max_bytes, busy_timeout_ms)"
                )),
            }
        }
        let location = match path {
            "" => {
                problems.push(
                    "no database path (write sqlite://dlq.db, sqlite:///abs/path.db or sqlite://:memory:)"
                        .into(),
                );
                Location::Memory
            }
            ":memory:" => Location::Memory,
            path => Location::File(PathBuf::from(path)),
        };
        if problems.is_empty() {
            Ok(SqliteUrl { location, options })
        } else {
            Err(invalid(problems.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> SqliteUrl {
        SqliteUrl::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn relative_absolute_and_memory_paths() {
        assert_eq!(
            parse("sqlite://dlq.db").location,
            Location::File("dlq.db".into())
        );
        assert_eq!(
            parse("sqlite:dlq.db").location,
            Location::File("dlq.db".into())
        );
        assert_eq!(
            parse("sqlite:///var/lib/dlq/dlq.db").location,
            Location::File("/var/lib/dlq/dlq.db".into())
        );
        assert_eq!(parse("sqlite://:memory:").location, Location::Memory);
        assert_eq!(parse("sqlite://dlq.db").options, SqliteOptions::default());
    }

    #[test]
    fn query_sets_options() {
        let u = parse("sqlite://d.db?max_bytes=8192&busy_timeout_ms=250");
        assert_eq!(u.options.encode.max_bytes, 8192);
        assert_eq!(u.options.busy_timeout, Duration::from_millis(250));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = SqliteUrl::parse("sqlite://?max_bytes=12&colour=blue&busy_timeout_ms=soon")
            .expect_err("invalid");
        let text = err.to_string();
        for needle in [
            "max_bytes",
            "below the minimum",
            "\"colour\"",
            "busy_timeout_ms=\"soon\"",
            "no database path",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from {text}");
        }
        assert!(matches!(
            SqliteUrl::parse("postgres://x"),
            Err(StoreError::InvalidUrl { .. })
        ));
    }
}
