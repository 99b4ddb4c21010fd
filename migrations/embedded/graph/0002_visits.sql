-- A vehicle's visits to location cells, for pings the graph keeps as state
-- (`[graph] state_kinds`): one row per vehicle and cell, not one per ping.
CREATE TABLE IF NOT EXISTS visits (
    vehicle    TEXT NOT NULL,
    cell       TEXT NOT NULL,
    first_seen TEXT NOT NULL,
    last_seen  TEXT NOT NULL,
    count      INTEGER NOT NULL,
    PRIMARY KEY (vehicle, cell)
) WITHOUT ROWID;
