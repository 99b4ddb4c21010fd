-- Keys compare byte by byte ("C"), not by the database's locale. Record ids
-- are hex digests and entity keys are identifiers: a locale's collation
-- (strcoll) gave them no other order and cost PostgreSQL a large share of its
-- CPU on every B-tree insert. For UTF-8 text, C.UTF-8 and "C" order alike.
-- Only the indexes are rebuilt; the table data is not rewritten.
ALTER TABLE records ALTER COLUMN id TYPE text COLLATE "C";
ALTER TABLE entities ALTER COLUMN label TYPE text COLLATE "C", ALTER COLUMN key TYPE text COLLATE "C";
ALTER TABLE dead_letters ALTER COLUMN id TYPE text COLLATE "C";
ALTER TABLE batch_ledger ALTER COLUMN batch_key TYPE text COLLATE "C";
ALTER TABLE poll_cursors ALTER COLUMN source TYPE text COLLATE "C";
