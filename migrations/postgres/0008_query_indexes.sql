-- The query room's reads at a million records and more (load/query_latency):
-- a kind in a time window (positions, tenders due, safety events), and a
-- shipment's documents by any of its references. The reference indexes are
-- partial: only EDI documents carry them, so telemetry writes never touch
-- them. The expressions are exactly those `store::record_query` sends.
-- (Statistics on expressions below need PostgreSQL 14 or later.)
CREATE INDEX IF NOT EXISTS records_kind_occurred_at ON records (kind, occurred_at);
CREATE INDEX IF NOT EXISTS records_pro ON records ((body #>> '{content,pro}'))
    WHERE (body #>> '{content,pro}') IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_bol ON records ((body #>> '{content,bol}'))
    WHERE (body #>> '{content,bol}') IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_shipment_id ON records ((body #>> '{content,shipment_id}'))
    WHERE (body #>> '{content,shipment_id}') IS NOT NULL;
-- Without statistics of their own the planner takes a reference for a
-- common value and walks the whole time index instead (1.3 s against 0.2 ms
-- at a million records); ANALYZE fills them now, autovacuum keeps them.
CREATE STATISTICS IF NOT EXISTS records_pro_stats ON (body #>> '{content,pro}') FROM records;
CREATE STATISTICS IF NOT EXISTS records_bol_stats ON (body #>> '{content,bol}') FROM records;
CREATE STATISTICS IF NOT EXISTS records_shipment_id_stats ON (body #>> '{content,shipment_id}') FROM records;
ANALYZE records;
