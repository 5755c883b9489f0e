-- 0001: the monitor's history: samples, alert state, notifications to send.
--
-- These tables may live in the same SQLite file as an embedded DLQ store
-- (sqlite://PATH), so every name starts with `monitor_` and the version is
-- kept in `monitor_migrations`, not in `PRAGMA user_version` (the store's).
-- Times are Unix milliseconds (UTC).

-- One row per DLQ and sample. NULL means "not known at that time": no
-- earlier sample for the inflow rate, no pending record for the oldest age,
-- no retention for the expiry risk.
CREATE TABLE monitor_samples (
    dlq                        TEXT    NOT NULL,
    at                         INTEGER NOT NULL,
    pending                    INTEGER NOT NULL,
    parked                     INTEGER NOT NULL,
    replayed                   INTEGER NOT NULL,
    discarded                  INTEGER NOT NULL,
    total                      INTEGER NOT NULL,
    inflow_per_minute          REAL,
    oldest_pending_at          INTEGER,
    oldest_pending_age_seconds INTEGER,
    expiry_risk                INTEGER,
    retention_ms               INTEGER,
    PRIMARY KEY (dlq, at)
) WITHOUT ROWID;

-- Samples of every DLQ since a time (pruning by age).
CREATE INDEX monitor_samples_at ON monitor_samples (at);

-- The state of each (rule, DLQ) alert, so that a restarted monitor neither
-- notifies again what it already notified nor forgets what is firing.
CREATE TABLE monitor_alerts (
    rule          TEXT    NOT NULL,
    dlq           TEXT    NOT NULL,
    firing        INTEGER NOT NULL CHECK (firing IN (0, 1)),
    since         INTEGER,
    last_notified INTEGER,
    value         REAL,
    PRIMARY KEY (rule, dlq)
) WITHOUT ROWID;

-- Notifications not yet delivered to their sink, written in the same
-- transaction as the alert state change that caused them; a delivered one
-- is deleted. `seq` keeps each sink's notifications in order.
CREATE TABLE monitor_outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    sink       TEXT    NOT NULL,
    body       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
