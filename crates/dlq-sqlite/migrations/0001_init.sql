-- 0001: the first schema of the embedded DLQ store.
--
-- The encoded v1 envelope (`records.envelope`) is the source of truth for a
-- record; every other column of `records` is extracted from it at append time
-- for indexes and cheap stats. Times are Unix milliseconds (UTC), the
-- precision the envelope keeps.

-- One row per dead letter. `seq` is the store order and the scan cursor.
-- Rows are never deleted (settling only changes `status`), so SQLite never
-- reuses a `seq`; a future retention migration that deletes rows must keep
-- that true (AUTOINCREMENT, or never deleting the newest row).
CREATE TABLE records (
    seq              INTEGER PRIMARY KEY,
    dlq              TEXT    NOT NULL,
    id               TEXT    NOT NULL,
    status           TEXT    NOT NULL
                     CHECK (status IN ('pending', 'replayed', 'discarded', 'parked')),
    stored_at        INTEGER NOT NULL,
    settled_at       INTEGER,
    failed_at        INTEGER NOT NULL,
    first_failed_at  INTEGER NOT NULL,
    source_system    TEXT    NOT NULL,
    source_topic     TEXT,
    source_partition INTEGER,
    source_offset    INTEGER,
    stage            TEXT    NOT NULL,
    error_class      TEXT    NOT NULL,
    retryable        INTEGER NOT NULL,
    replays          INTEGER NOT NULL,
    -- Last, so that reading the small columns never touches overflow pages.
    envelope         BLOB    NOT NULL,
    -- Idempotent appends: the first write of a (dlq, id) wins.
    UNIQUE (dlq, id)
);

-- The oldest pending record of a DLQ: one seek to MIN(failed_at).
CREATE INDEX records_oldest ON records (dlq, status, failed_at);

-- Scans of one status of one DLQ, paged in store order by `seq`.
CREATE INDEX records_by_status ON records (dlq, status, seq);

-- Record counts per DLQ, status and source partition (-1: none), updated in
-- the commit transaction, so that stats never count rows.
CREATE TABLE counters (
    dlq              TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    source_partition INTEGER NOT NULL,
    n                INTEGER NOT NULL CHECK (n >= 0),
    PRIMARY KEY (dlq, status, source_partition)
) WITHOUT ROWID;

-- Named positions committed with a batch (e.g. a processor's input offset).
CREATE TABLE checkpoints (
    name       TEXT    NOT NULL PRIMARY KEY,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Claim-check blobs: parts of records too large for the envelope limit,
-- content-addressed by their hex SHA-256 and written in the same transaction
-- as the envelope that points at them. Immutable; shared by equal content.
CREATE TABLE blobs (
    sha256 TEXT    NOT NULL PRIMARY KEY,
    size   INTEGER NOT NULL,
    bytes  BLOB    NOT NULL
);
