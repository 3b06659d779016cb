-- taskflare schema 13: the index of finished jobs names its states as equalities joined
-- by OR instead of an IN list. SQLite evaluates a partial index's condition for every
-- row a statement updates or deletes, and for an IN list it builds a temporary table of
-- the list's values each time (no `Once` guards it there): about a third of the SQLite
-- work of each message's claim and ack, although no message ever enters this index.
-- Same entries, same reads (a query naming one of the states, `state = 'completed'`, now
-- implies the condition, so the pruner no longer repeats it). PostgreSQL evaluates the
-- IN list as an array and keeps schema 2's index (its migrations have no 0013).
DROP INDEX messages_finished_idx;
CREATE INDEX messages_finished_idx
    ON messages (state, finished_at)
    WHERE state = 'completed' OR state = 'failed' OR state = 'cancelled';
