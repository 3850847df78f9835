-- migration: record each loaded batch's identity in the load ledger
--
-- Frozen: never edit; add a migration.
--
-- The ledger records which batch it loaded, not only its number: the
-- transform run that wrote it and the SHA-256 of its manifest, so that load
-- can tell the batches of another or a rebuilt processed bucket from those
-- it loaded. Rows loaded before have NULL there.
ALTER TABLE {{schema}}.sandstone_loads
	ADD COLUMN IF NOT EXISTS run_id text,
	ADD COLUMN IF NOT EXISTS manifest_sha256 text;
