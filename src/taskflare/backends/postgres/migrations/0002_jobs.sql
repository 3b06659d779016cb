-- taskflare schema 2: jobs (typed messages with tracked status), attempt history,
-- idempotency keys, `ctx.once` results and job batches. Mirrors
-- sqlite/migrations/0002_jobs.sql; runs with search_path set to the app's schema.
ALTER TABLE messages
    ADD COLUMN type             text,
    ADD COLUMN max_attempts     integer,
    ADD COLUMN result           bytea,
    ADD COLUMN progress         double precision,
    ADD COLUMN progress_note    text,
    ADD COLUMN started_at       double precision,
    ADD COLUMN idempotency_key  text,
    ADD COLUMN correlation_id   text,
    ADD COLUMN batch_id         text,
    ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false;

-- Listing jobs newest first, and pruning finished ones, read only job rows.
CREATE INDEX messages_jobs_created_idx
    ON messages (created_at DESC, id DESC)
    WHERE type IS NOT NULL;

CREATE INDEX messages_finished_idx
    ON messages (state, finished_at)
    WHERE state IN ('completed', 'failed', 'cancelled');

CREATE INDEX messages_batch_idx ON messages (batch_id) WHERE batch_id IS NOT NULL;

-- One row per delivery, in order; a manual retry starts attempts at 1 again, so the
-- attempt number alone is not a key. The identity orders the history (and the
-- `taskflare tail` feed).
CREATE TABLE job_attempts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id      text NOT NULL,
    attempt     integer NOT NULL,
    worker_id   text,
    started_at  double precision,
    finished_at double precision,
    outcome     text NOT NULL,
    error       text,
    traceback   text
);

CREATE INDEX job_attempts_job_idx ON job_attempts (job_id, id);

CREATE TABLE idempotency_keys (
    type       text NOT NULL,
    key        text NOT NULL,
    job_id     text NOT NULL,
    expires_at double precision NOT NULL,
    PRIMARY KEY (type, key)
);

CREATE TABLE once_results (
    key         text PRIMARY KEY,
    state       text NOT NULL,
    result      bytea,
    owner       text,
    lease_until double precision,
    expires_at  double precision NOT NULL
);

CREATE TABLE job_batches (
    id         text PRIMARY KEY,
    type       text NOT NULL,
    total      integer NOT NULL,
    created_at double precision NOT NULL
);
