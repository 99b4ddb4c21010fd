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
\timing off
\pset tuples_only on
DROP TABLE IF EXISTS src, v16_64, h16_64, v8_64, v8_32, v16_32;
CREATE TABLE src AS
    SELECT row_number() OVER () AS id, embedding AS e, embedding::halfvec AS h FROM records WHERE embedding IS NOT NULL LIMIT 20000;
SELECT 'source vectors: ' || count(*) FROM src;

CREATE TABLE v16_64 (id bigint, e vector(384));
CREATE INDEX ON v16_64 USING hnsw (e vector_cosine_ops) WITH (m = 16, ef_construction = 64);
CREATE TABLE h16_64 (id bigint, e halfvec(384));
CREATE INDEX ON h16_64 USING hnsw (e halfvec_cosine_ops) WITH (m = 16, ef_construction = 64);
CREATE TABLE v8_64 (id bigint, e vector(384));
CREATE INDEX ON v8_64 USING hnsw (e vector_cosine_ops) WITH (m = 8, ef_construction = 64);
CREATE TABLE v8_32 (id bigint, e vector(384));
CREATE INDEX ON v8_32 USING hnsw (e vector_cosine_ops) WITH (m = 8, ef_construction = 32);
CREATE TABLE v16_32 (id bigint, e vector(384));
CREATE INDEX ON v16_32 USING hnsw (e vector_cosine_ops) WITH (m = 16, ef_construction = 32);

\echo insert 20,000 rows: vector m=16 ef_construction=64 (pgvector default)
\timing on
INSERT INTO v16_64 SELECT id, e FROM src;
\timing off
\echo insert: halfvec m=16 ef_construction=64
\timing on
INSERT INTO h16_64 SELECT id, h FROM src;
\timing off
\echo insert: vector m=8 ef_construction=64
\timing on
INSERT INTO v8_64 SELECT id, e FROM src;
\timing off
\echo insert: vector m=8 ef_construction=32
\timing on
INSERT INTO v8_32 SELECT id, e FROM src;
\timing off
\echo insert: vector m=16 ef_construction=32
\timing on
INSERT INTO v16_32 SELECT id, e FROM src;
\timing off

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
