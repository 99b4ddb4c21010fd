-- Moves once per batch ledger row, i.e. after every batch is written to every
-- store (or compensated): the query room's cache keys answers by it, so a
-- cached answer never outlives a write.
CREATE SEQUENCE IF NOT EXISTS write_watermark;
