-- 0002: the `archived` status: records that `dlq archive` moved to an archive
-- store are settled as `archived` (final, like replayed and discarded).
--
-- SQLite cannot change a CHECK constraint in place, so `records` is rebuilt
-- with the wider one (SQLite's documented way of changing a table's
-- definition): a copy of every row with its `seq`, so cursors and store order
-- stay as they were, then the indexes again. It runs once, in one
-- transaction, when a store of schema 1 is first opened by a dlq that knows
-- this step; its cost is one copy of the table. `counters.status` has no
-- CHECK and takes the new status as it is.

CREATE TABLE records_2 (
    seq              INTEGER PRIMARY KEY,
    dlq              TEXT    NOT NULL,
    id               TEXT    NOT NULL,
    status           TEXT    NOT NULL
                     CHECK (status IN ('pending', 'replayed', 'discarded', 'parked', 'archived')),
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
    envelope         BLOB    NOT NULL,
    UNIQUE (dlq, id)
);

INSERT INTO records_2 (seq, dlq, id, status, stored_at, settled_at, failed_at,
                       first_failed_at, source_system, source_topic, source_partition,
                       source_offset, stage, error_class, retryable, replays, envelope)
SELECT seq, dlq, id, status, stored_at, settled_at, failed_at,
       first_failed_at, source_system, source_topic, source_partition,
       source_offset, stage, error_class, retryable, replays, envelope
FROM records ORDER BY seq;

DROP TABLE records;
ALTER TABLE records_2 RENAME TO records;

CREATE INDEX records_oldest ON records (dlq, status, failed_at);
CREATE INDEX records_by_status ON records (dlq, status, seq);
