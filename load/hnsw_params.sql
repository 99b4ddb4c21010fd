-- HNSW parameters against insert time and recall, on this pipeline's own
-- vectors: the first 20,000 embeddings a load run left in `records` (run
-- load/e2e first; see load/RESULTS.md). One connection inserts them into one
-- table per parameter set, each with its index already in place (as the
-- pipeline does), then each table answers 1,000 of its own vectors:
-- recall@1 = the nearest hit is the vector itself (or an identical one).
--
--   psql -h 127.0.0.1 -U postgres -d apex -f load/hnsw_params.sql
--
-- Leaves nothing behind: the trial tables are dropped at the end. Not TEMP
-- tables: those live in temp_buffers (8 MB) and would time the buffer, not HNSW.
\pset tuples_only on
DROP TABLE IF EXISTS src, v16_64, h16_64, v8_64, v8_32, v16_32;
CREATE TABLE src AS
    SELECT row_number() OVER () AS id, embedding AS e, embedding::halfvec AS h FROM records WHERE embedding IS NOT NULL LIMIT 20000;
SELECT 'source vectors: ' || count(*) FROM src;

-- One trial: a table `tbl` of src's column `col` (e vector, h halfvec) with an
-- HNSW index of (m, ef_construction) in place; returns the seconds the insert
-- of every src row took.
CREATE FUNCTION pg_temp.trial(tbl text, col text, m int, ef int) RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE
    kind text := CASE col WHEN 'h' THEN 'halfvec' ELSE 'vector' END;
    started timestamptz;
BEGIN
    EXECUTE format('CREATE TABLE %I (id bigint, e %s(384))', tbl, kind);
    EXECUTE format('CREATE INDEX ON %I USING hnsw (e %s_cosine_ops) WITH (m = %s, ef_construction = %s)',
                   tbl, kind, m, ef);
    started := clock_timestamp();
    EXECUTE format('INSERT INTO %I SELECT id, %I FROM src', tbl, col);
    RETURN round(extract(epoch FROM clock_timestamp() - started), 1);
END $$;
\echo seconds to insert every source row: v16_64 (pgvector default), h16_64 (halfvec), v8_64, v8_32, v16_32
SELECT 'insert s', pg_temp.trial('v16_64', 'e', 16, 64), pg_temp.trial('h16_64', 'h', 16, 64),
    pg_temp.trial('v8_64', 'e', 8, 64), pg_temp.trial('v8_32', 'e', 8, 32), pg_temp.trial('v16_32', 'e', 16, 32);

SET enable_seqscan = off;
-- recall@1 % of one table over 1,000 of its own vectors (`col`: src's column
-- of the table's type, e for vector, h for halfvec).
CREATE FUNCTION pg_temp.recall(tbl text, col text DEFAULT 'e') RETURNS numeric LANGUAGE plpgsql AS $$
DECLARE r numeric;
BEGIN
    EXECUTE format('SELECT round(100.0 * avg(((SELECT t.e <=> s.%2$I FROM %1$I t ORDER BY t.e <=> s.%2$I LIMIT 1) < 1e-4)::int), 1)
                    FROM src s WHERE s.id %% 20 = 1', tbl, col) INTO r;
    RETURN r;
END $$;
\echo recall@1 % at ef_search 40 (pgvector default), then 100: v16_64, h16_64, v8_64, v8_32, v16_32
SET hnsw.ef_search = 40;
SELECT 'ef_search 40', pg_temp.recall('v16_64'), pg_temp.recall('h16_64', 'h'), pg_temp.recall('v8_64'), pg_temp.recall('v8_32'), pg_temp.recall('v16_32');
SET hnsw.ef_search = 100;
SELECT 'ef_search 100', pg_temp.recall('v16_64'), pg_temp.recall('h16_64', 'h'), pg_temp.recall('v8_64'), pg_temp.recall('v8_32'), pg_temp.recall('v16_32');
DROP TABLE src, v16_64, h16_64, v8_64, v8_32, v16_32;
