-- Each poller's cursor: where its next poll starts. Moved only after the
-- records it covers are acknowledged by the broker.
CREATE TABLE IF NOT EXISTS poll_cursors (
    source TEXT PRIMARY KEY,
    cursor TEXT NOT NULL,
    saved_at TEXT NOT NULL
);
