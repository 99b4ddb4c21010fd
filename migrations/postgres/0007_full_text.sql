-- The words of each record for the query room's lexical retriever: its
-- summary (weight A) and the string values of its body (weight B), kept by
-- PostgreSQL itself in a generated column under a GIN index, so no writer
-- can forget it. Adding it rewrites the table once.
ALTER TABLE records ADD COLUMN IF NOT EXISTS words tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('english', summary), 'A')
    || setweight(jsonb_to_tsvector('english', body, '["string"]'), 'B')
) STORED;
CREATE INDEX IF NOT EXISTS records_words ON records USING gin (words);
