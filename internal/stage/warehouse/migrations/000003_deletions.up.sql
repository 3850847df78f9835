-- migration: record the source rows found deleted
--
-- Frozen: never edit; add a migration.
--
-- The source rows that an audit found deleted, one row per source table and
-- id, filled by load from the tombstones of repair batches. The dimension
-- and fact rows stay; queries can exclude these ids.
CREATE TABLE IF NOT EXISTS {{schema}}.sandstone_deletions (
	source_table text NOT NULL,
	id integer NOT NULL,
	seen_gone_at timestamptz NOT NULL,
	batch text NOT NULL,
	PRIMARY KEY (source_table, id)
);
