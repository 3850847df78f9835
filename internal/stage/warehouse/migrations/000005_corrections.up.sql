-- migration: record the corrections of fact rows
--
-- Frozen: never edit; add a migration.
--
-- A correction is an update of a source row that kept its last_updated,
-- which log-based capture sees: the fact row of that version takes the
-- values the source now holds, the one case where load changes a fact
-- row. Each one is recorded here, in the transaction of the batch that
-- made it: which fact table and row (its serial id), the source row's id,
-- the batch, when, and the row's values (its columns but the serial id)
-- before and after. A row is corrected at most once per batch.
CREATE TABLE IF NOT EXISTS {{schema}}.sandstone_corrections (
	fact_table text NOT NULL,
	record_id bigint NOT NULL,
	source_id integer NOT NULL,
	batch text NOT NULL,
	corrected_at timestamptz NOT NULL,
	old_values jsonb NOT NULL,
	new_values jsonb NOT NULL,
	PRIMARY KEY (fact_table, record_id, batch)
);
