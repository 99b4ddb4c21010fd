-- A record of a kind the embedding policy skips (`[embed] skip_kinds`), or any
-- record when the vector role is not pgvector, has no embedding. The HNSW index
-- is no longer made here: the store creates it at start-up with the configured
-- parameters (postgres.hnsw_m, postgres.hnsw_ef_construction), and only when
-- stores.vector = "pgvector". pgvector indexes skip NULL vectors.
ALTER TABLE records ALTER COLUMN embedding DROP NOT NULL;
DROP INDEX IF EXISTS records_embedding;
