//! Object keys: where each part of the store lives in the bucket.
//!
//! ```text
//! PREFIX/dlq=<dlq>/dt=YYYY-MM-DD/hour=HH/<version>-<writer>.ndjson.gz  dead letters
//! PREFIX/_dlq_log/<version>.json                                       the commit log
//! PREFIX/_dlq_log/_last_snapshot                                       hint: newest snapshot
//! PREFIX/_dlq_state/<version>.json.gz                                  state snapshots
//! PREFIX/_dlq_blobs/<sha256>                                           claim-checked parts
//! ```
//!
//! Query engines skip paths whose names start with `_` (Hive, Spark,
//! Athena), so a table over `PREFIX/` sees only the partitioned data.

use chrono::{DateTime, Utc};

/// Digits of a version in a key: fixed width, so keys sort like numbers.
const VERSION_WIDTH: usize = 20;

/// The keys of one store.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// `PREFIX/`, or empty at the bucket root.
    root: String,
}

impl Layout {
    pub(crate) fn new(prefix: &str) -> Self {
        let root = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        Layout { root }
    }

    /// The data object of one DLQ's records of one commit.
    pub(crate) fn data(&self, dlq: &str, at: DateTime<Utc>, version: u64, writer: &str) -> String {
        format!(
            "{}dlq={}/dt={}/hour={}/{version:0VERSION_WIDTH$}-{writer}.ndjson.gz",
            self.root,
            escape(dlq),
            at.format("%Y-%m-%d"),
            at.format("%H"),
        )
    }

    /// Where the log entries are.
    pub(crate) fn log_dir(&self) -> String {
        format!("{}_dlq_log/", self.root)
    }

    /// The log entry of `version`.
    pub(crate) fn log(&self, version: u64) -> String {
        format!("{}{version:0VERSION_WIDTH$}.json", self.log_dir())
    }

    /// The version of a log entry's key (`None` for other keys there).
    pub(crate) fn log_version(&self, key: &str) -> Option<u64> {
        let name = key.strip_prefix(&self.log_dir())?.strip_suffix(".json")?;
        (name.len() == VERSION_WIDTH && name.bytes().all(|b| b.is_ascii_digit()))
            .then(|| name.parse().ok())
            .flatten()
    }

    /// The hint naming the newest snapshot.
    pub(crate) fn snapshot_hint(&self) -> String {
        format!("{}_last_snapshot", self.log_dir())
    }

    /// A probe object of the conditional-write check.
    pub(crate) fn probe(&self, token: &str) -> String {
        format!("{}_probe-{token}", self.log_dir())
    }

    /// The snapshot of the state at `version`.
    pub(crate) fn snapshot(&self, version: u64) -> String {
        format!("{}_dlq_state/{version:0VERSION_WIDTH$}.json.gz", self.root)
    }

    /// A claim-checked blob, by content.
    pub(crate) fn blob(&self, sha256: &str) -> String {
        format!("{}_dlq_blobs/{sha256}", self.root)
    }
}

/// A DLQ name as a Hive partition value: what is not a letter, digit, `.`,
/// `-` or `_` is `%XX`-escaped (as Hive escapes partition values), so a
/// name never adds a path level or an `=`.
pub(crate) fn escape(dlq: &str) -> String {
    let mut out = String::with_capacity(dlq.len());
    for b in dlq.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_keys_are_hive_partitions_by_dlq_day_and_hour() {
        let at = DateTime::parse_from_rfc3339("2026-12-06T04:05:06Z")
            .expect("time")
            .with_timezone(&Utc);
        let l = Layout::new("team/dlqs");
        assert_eq!(
            l.data("dlq.rss.events", at, 7, "w1"),
            "team/dlqs/dlq=dlq.rss.events/dt=2026-12-06/hour=04/00000000000000000007-w1.ndjson.gz"
        );
        assert_eq!(
            Layout::new("").data("a/b=c d", at, 1, "w"),
            "dlq=a%2Fb%3Dc%20d/dt=2026-12-06/hour=04/00000000000000000001-w.ndjson.gz"
        );
    }

    #[test]
    fn log_keys_sort_by_version_and_parse_back() {
        let l = Layout::new("p");
        assert!(l.log(9) < l.log(10));
        assert_eq!(l.log_version(&l.log(12345)), Some(12345));
        assert_eq!(l.log_version(&l.snapshot_hint()), None);
        assert_eq!(l.log_version(&l.probe("x")), None);
        assert!(
            l.snapshot_hint() > l.log(u64::MAX),
            "the hint sorts after every entry"
        );
    }
}
