-- taskflare schema 5: the by-state index leaves ready rows out, so the claim can only use
-- messages_ready_idx (its order is the claim's order). Before, on a table the planner had
-- no statistics for yet (right after a large enqueue), it picked the by-state index and
-- sorted every ready row on each claim (19 ms a claim at 20 000 ready jobs instead of
-- 0.1 ms). Mirrors sqlite/migrations/0005; runs with search_path set to the app's schema.
DROP INDEX IF EXISTS messages_queue_state_idx;
CREATE INDEX messages_queue_state_idx
    ON messages (queue, state, created_at)
    WHERE state <> 'ready';
