-- taskflare schema 8: what keeps the dashboard's and the HTTP API's reads bounded with a
-- million jobs. Mirrors postgres/migrations/0008.
-- A queue's ready messages in creation order, with when each becomes available: the
-- message listing (oldest first) and the depth counts (ready now, delayed, oldest ready)
-- read the first entries of one queue here, never other queues' or finished rows.
-- Partial: an enqueue adds one entry, a claim none (the row leaves the ready state).
-- No id: it would double the entry; the listing sorts ties of one instant by id.
-- `state` is a column too, so SQLite reads these statements from the index alone.
CREATE INDEX messages_ready_created_idx
    ON messages (queue, state, created_at, available_at)
    WHERE state = 'ready';

-- A batch's jobs counted by state from the index alone (the batches page). Replaces the
-- batch index of schema 2, so a write maintains as many indexes as before.
CREATE INDEX messages_batch_state_idx
    ON messages (batch_id, state)
    WHERE batch_id IS NOT NULL;
DROP INDEX messages_batch_idx;

-- The jobs list by status also carries each entry's type, so a status with a type
-- filter (and its capped count) is decided from the index, reading a table row only for
-- the jobs shown. Replaces the status index of schema 6 (same write cost, wider entry).
DROP INDEX messages_jobs_state_created_idx;
CREATE INDEX messages_jobs_state_created_idx
    ON messages (state, created_at DESC, id DESC, type)
    WHERE type IS NOT NULL;
