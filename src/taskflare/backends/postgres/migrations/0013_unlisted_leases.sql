-- taskflare schema 13: leased rows kept out of the indexes that serve lists and counts.
-- A claim (state ready -> leased) is not a HOT update: it adds an entry to every index
-- whose condition the leased row meets. These five held leased rows; now a claim writes
-- entries only to the primary key and the two leased indexes (3 instead of 8). Leased
-- rows are few (bounded by the workers' concurrency); the statements that list or count
-- them (the jobs list and search, the queue counts, batch progress) read them through
-- messages_leased_idx instead (queries.sql: a `state = 'leased'` part beside each
-- `state <> 'leased'` one). Measured on a job drain: docs/performance.md. Rebuilding them
-- reads the jobs table once per index (writes wait meanwhile). SQLite keeps its indexes
-- as they are. Runs with search_path set to the app's schema.
DROP INDEX messages_jobs_created_idx;
CREATE INDEX messages_jobs_created_idx
    ON messages (created_at, id)
    WHERE type IS NOT NULL AND state <> 'leased';

DROP INDEX messages_jobs_state_created_idx;
CREATE INDEX messages_jobs_state_created_idx
    ON messages (state, created_at, id) INCLUDE (type)
    WHERE type IS NOT NULL AND state <> 'leased';

DROP INDEX messages_jobs_type_created_idx;
CREATE INDEX messages_jobs_type_created_idx
    ON messages (type, created_at, id)
    WHERE type IS NOT NULL AND state <> 'leased';

DROP INDEX messages_queue_state_idx;
CREATE INDEX messages_queue_state_idx
    ON messages (queue, state, created_at)
    WHERE state <> 'ready' AND state <> 'leased';

DROP INDEX messages_batch_state_idx;
CREATE INDEX messages_batch_state_idx
    ON messages (batch_id, state)
    WHERE batch_id IS NOT NULL AND state <> 'leased';
