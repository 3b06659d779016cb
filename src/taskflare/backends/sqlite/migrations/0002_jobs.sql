-- taskflare schema 2: jobs (typed messages with tracked status), attempt history,
-- idempotency keys, `ctx.once` results and job batches.
ALTER TABLE messages ADD COLUMN type TEXT;
ALTER TABLE messages ADD COLUMN max_attempts INTEGER;
ALTER TABLE messages ADD COLUMN result BLOB;
ALTER TABLE messages ADD COLUMN progress REAL;
ALTER TABLE messages ADD COLUMN progress_note TEXT;
ALTER TABLE messages ADD COLUMN started_at REAL;
ALTER TABLE messages ADD COLUMN idempotency_key TEXT;
ALTER TABLE messages ADD COLUMN correlation_id TEXT;
ALTER TABLE messages ADD COLUMN batch_id TEXT;
ALTER TABLE messages ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;

-- Listing jobs newest first, and pruning finished ones, read only job rows.
CREATE INDEX messages_jobs_created_idx
    ON messages (created_at DESC, id DESC)
    WHERE type IS NOT NULL;

CREATE INDEX messages_finished_idx
    ON messages (state, finished_at)
    WHERE state IN ('completed', 'failed', 'cancelled');

CREATE INDEX messages_batch_idx ON messages (batch_id) WHERE batch_id IS NOT NULL;

-- One row per delivery, in order; a manual retry starts attempts at 1 again, so the
-- attempt number alone is not a key.
CREATE TABLE job_attempts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id      TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    worker_id   TEXT,
    started_at  REAL,
    finished_at REAL,
    outcome     TEXT NOT NULL,
    error       TEXT,
    traceback   TEXT
);

CREATE INDEX job_attempts_job_idx ON job_attempts (job_id, id);

CREATE TABLE idempotency_keys (
    type       TEXT NOT NULL,
    key        TEXT NOT NULL,
    job_id     TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (type, key)
);

CREATE TABLE once_results (
    key         TEXT PRIMARY KEY,
    state       TEXT NOT NULL,
    result      BLOB,
    owner       TEXT,
    lease_until REAL,
    expires_at  REAL NOT NULL
);

CREATE TABLE job_batches (
    id         TEXT PRIMARY KEY,
    type       TEXT NOT NULL,
    total      INTEGER NOT NULL,
    created_at REAL NOT NULL
);
