-- What made the vectors (embed.kind and its model): vectors of two embedders
-- are not comparable, so a store keeps the first one's name and refuses another.
CREATE TABLE IF NOT EXISTS vector_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
