CREATE TABLE IF NOT EXISTS records (
    id          TEXT PRIMARY KEY,
    format      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    natural_key TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    summary     TEXT NOT NULL,
    body        TEXT NOT NULL,
    topic       TEXT NOT NULL,
    partition   INTEGER NOT NULL,
    "offset"    INTEGER NOT NULL,
    written_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_occurred_at ON records (occurred_at);

CREATE TABLE IF NOT EXISTS dead_letters (
    id          TEXT PRIMARY KEY,
    format      TEXT NOT NULL,
    topic       TEXT NOT NULL,
    partition   INTEGER NOT NULL,
    "offset"    INTEGER NOT NULL,
    key         TEXT,
    reason      TEXT NOT NULL,
    detail      TEXT NOT NULL,
    raw         BLOB NOT NULL,
    created_at  TEXT NOT NULL,
    replayed_at TEXT
);
CREATE INDEX IF NOT EXISTS dead_letters_reason ON dead_letters (reason);

CREATE TABLE IF NOT EXISTS batch_ledger (
    batch_key    TEXT PRIMARY KEY,
    batch_id     TEXT NOT NULL,
    records      INTEGER NOT NULL,
    dead_letters INTEGER NOT NULL,
    status       TEXT NOT NULL,
    detail       TEXT,
    attempts     INTEGER NOT NULL DEFAULT 1,
    updated_at   TEXT NOT NULL
);
