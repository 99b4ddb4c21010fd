-- Moves once per batch ledger row, i.e. after every batch is written to every
-- store (or compensated): the query room's cache keys answers by it, so a
-- cached answer never outlives a write.
CREATE TABLE IF NOT EXISTS write_watermark (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    mark INTEGER NOT NULL
);
INSERT OR IGNORE INTO write_watermark (id, mark) VALUES (1, 0);
