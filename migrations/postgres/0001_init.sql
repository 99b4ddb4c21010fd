-- Records, their graph entities, dead letters and the batch ledger. Each record
-- keeps its embedding in a pgvector column with an HNSW index (cosine).
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE IF NOT EXISTS records (
    id          text PRIMARY KEY,
    format      text        NOT NULL,
    kind        text        NOT NULL,
    natural_key text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    summary     text        NOT NULL,
    body        jsonb       NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    "offset"    bigint      NOT NULL,
    embedding   vector(384) NOT NULL,
    written_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS records_occurred_at ON records (occurred_at);
CREATE INDEX IF NOT EXISTS records_embedding ON records USING hnsw (embedding vector_cosine_ops);

-- Entities as the graph has them, for SQL joins; the record that last touched each.
CREATE TABLE IF NOT EXISTS entities (
    label     text  NOT NULL,
    key       text  NOT NULL,
    props     jsonb NOT NULL,
    record_id text  NOT NULL,
    PRIMARY KEY (label, key)
);

CREATE TABLE IF NOT EXISTS dead_letters (
    id          text PRIMARY KEY,
    format      text        NOT NULL,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    "offset"    bigint      NOT NULL,
    key         text,
    reason      text        NOT NULL,
    detail      text        NOT NULL,
    raw         bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    replayed_at timestamptz
);
CREATE INDEX IF NOT EXISTS dead_letters_reason ON dead_letters (reason);

CREATE TABLE IF NOT EXISTS batch_ledger (
    batch_key    text PRIMARY KEY,
    batch_id     text        NOT NULL,
    records      bigint      NOT NULL,
    dead_letters bigint      NOT NULL,
    status       text        NOT NULL,
    detail       text,
    attempts     integer     NOT NULL DEFAULT 1,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
