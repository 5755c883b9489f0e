-- 0002: the `archived` status (records `dlq archive` moved to an archive
-- store) in every sample. Samples taken before it count none.
ALTER TABLE monitor_samples ADD COLUMN archived INTEGER NOT NULL DEFAULT 0;
