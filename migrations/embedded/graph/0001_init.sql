-- WITHOUT ROWID: the primary key is the table, one B-tree instead of two.
CREATE TABLE IF NOT EXISTS nodes (
    label TEXT NOT NULL,
    key   TEXT NOT NULL,
    props TEXT NOT NULL,
    PRIMARY KEY (label, key)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS edges (
    from_label TEXT NOT NULL,
    from_key   TEXT NOT NULL,
    rel        TEXT NOT NULL,
    to_label   TEXT NOT NULL,
    to_key     TEXT NOT NULL,
    PRIMARY KEY (from_label, from_key, rel, to_label, to_key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS edges_to ON edges (to_label, to_key);
