CREATE TABLE IF NOT EXISTS vectors (
    id      TEXT PRIMARY KEY,
    vector  BLOB NOT NULL,
    payload TEXT NOT NULL
);
