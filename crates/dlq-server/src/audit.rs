//! The audit log: who revealed, previewed, replayed, discarded or archived what.
//!
//! One JSON object per line, appended and synced to disk *before* the
//! action it records takes effect: an action that cannot be audited is not
//! carried out. An entry names the caller by role and token label, never by
//! token. The file is opened in append mode and created readable by its
//! owner only.

use crate::auth::Principal;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A record's payload was shown.
    Reveal,
    /// A replay dry run showed sample payloads before and after the fix.
    ReplayPreview,
    /// A replay was started.
    Replay,
    /// A replay ended (its counts, or its error).
    ReplayFinished,
    /// Records were settled as discarded.
    Discard,
    /// Records were copied to an archive store and settled as archived
    /// (`dlq archive`).
    Archive,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When.
    pub at: DateTime<Utc>,
    /// Who: the token's role and label.
    pub actor: Principal,
    /// What.
    pub action: Action,
    /// On which DLQ.
    pub dlq: String,
    /// The details: record ids, the selection, the fix, the target name,
    /// counts. Never a payload, never a token.
    pub details: serde_json::Value,
}

/// The append-only audit log file.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl AuditLog {
    /// Opens (or creates) the log for appending.
    pub fn open(path: &Path) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let file = options.open(path)?;
        Ok(AuditLog {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    /// Where the log is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one entry and syncs it to disk.
    pub fn append(&self, entry: &AuditEntry) -> io::Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(&line)?;
        file.sync_data()
    }

    /// The last `limit` entries, oldest first. Lines that do not parse (a
    /// torn last line after a crash) are skipped.
    pub fn tail(&self, limit: usize) -> io::Result<Vec<AuditEntry>> {
        let file = File::open(&self.path)?;
        let mut last = std::collections::VecDeque::with_capacity(limit.min(10_000));
        for line in BufReader::new(file).lines() {
            let line = line?;
            if let Ok(e) = serde_json::from_str::<AuditEntry>(&line) {
                if last.len() == limit {
                    last.pop_front();
                }
                if limit > 0 {
                    last.push_back(e);
                }
            }
        }
        Ok(last.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    #[test]
    fn entries_are_appended_and_read_back_in_order() {
        let dir = tempfile::tempdir().expect("dir");
        let log = AuditLog::open(&dir.path().join("a/audit.jsonl")).expect("open");
        for i in 0..3 {
            log.append(&AuditEntry {
                at: Utc::now(),
                actor: Principal {
                    role: Role::Operator,
                    label: "alice".into(),
                },
                action: Action::Reveal,
                dlq: "dlq.x".into(),
                details: serde_json::json!({ "id": i }),
            })
            .expect("append");
        }
        let reopened = AuditLog::open(log.path()).expect("reopen");
        let tail = reopened.tail(2).expect("tail");
        assert_eq!(tail.len(), 2);
        assert_eq!(tail[0].details["id"], 1);
        assert_eq!(tail[1].details["id"], 2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(log.path())
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "only the owner may read the audit log");
        }
    }
}
