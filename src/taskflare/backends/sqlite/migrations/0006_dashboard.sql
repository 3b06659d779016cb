-- taskflare schema 6: what the dashboard reads. Mirrors postgres/migrations/0006.
-- Per-minute history of what the workers did per queue: each worker adds its deltas to
-- the current minute's row (summed, never replaced); kept for a bounded time, then pruned.
-- h0..h13 count handler calls by duration bucket (worker/stats.py DURATION_BUCKETS, the
-- last one above every bucket).
CREATE TABLE stats_minutes (
    minute       INTEGER NOT NULL,
    queue        TEXT NOT NULL,
    processed    INTEGER NOT NULL DEFAULT 0,
    retried      INTEGER NOT NULL DEFAULT 0,
    failed       INTEGER NOT NULL DEFAULT 0,
    duration_sum REAL NOT NULL DEFAULT 0,
    h0 INTEGER NOT NULL DEFAULT 0,
    h1 INTEGER NOT NULL DEFAULT 0,
    h2 INTEGER NOT NULL DEFAULT 0,
    h3 INTEGER NOT NULL DEFAULT 0,
    h4 INTEGER NOT NULL DEFAULT 0,
    h5 INTEGER NOT NULL DEFAULT 0,
    h6 INTEGER NOT NULL DEFAULT 0,
    h7 INTEGER NOT NULL DEFAULT 0,
    h8 INTEGER NOT NULL DEFAULT 0,
    h9 INTEGER NOT NULL DEFAULT 0,
    h10 INTEGER NOT NULL DEFAULT 0,
    h11 INTEGER NOT NULL DEFAULT 0,
    h12 INTEGER NOT NULL DEFAULT 0,
    h13 INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, queue)
);

-- The jobs list filtered by status or type, newest first, without scanning other jobs.
CREATE INDEX messages_jobs_state_created_idx
    ON messages (state, created_at DESC, id DESC)
    WHERE type IS NOT NULL;

CREATE INDEX messages_jobs_type_created_idx
    ON messages (type, created_at DESC, id DESC)
    WHERE type IS NOT NULL;

-- Finding a job by its idempotency key or correlation id.
CREATE INDEX messages_idempotency_key_idx
    ON messages (idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE INDEX messages_correlation_id_idx
    ON messages (correlation_id)
    WHERE correlation_id IS NOT NULL;
