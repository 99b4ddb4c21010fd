-- The watermark moves with each ledger row in the same statement (as
-- PostgreSQL's does in the ledger upsert's RETURNING), not in a second one.
CREATE TRIGGER IF NOT EXISTS ledger_row_added AFTER INSERT ON batch_ledger
BEGIN
    UPDATE write_watermark SET mark = mark + 1;
END;
CREATE TRIGGER IF NOT EXISTS ledger_row_updated AFTER UPDATE ON batch_ledger
BEGIN
    UPDATE write_watermark SET mark = mark + 1;
END;
