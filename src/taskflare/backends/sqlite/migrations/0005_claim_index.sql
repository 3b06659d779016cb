-- taskflare schema 5: the by-state index leaves ready rows out, so the claim can only use
-- messages_ready_idx (its order is the claim's order). Before, on a table the planner had
-- no statistics for yet (right after a large enqueue), PostgreSQL picked the by-state
-- index and sorted every ready row on each claim. Mirrors postgres/migrations/0005.
DROP INDEX IF EXISTS messages_queue_state_idx;
CREATE INDEX messages_queue_state_idx
    ON messages (queue, state, created_at)
    WHERE state <> 'ready';
