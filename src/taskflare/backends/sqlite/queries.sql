-- Every statement the SQLite backend runs, by name. Parameters are named (:name).

-- name: message_insert
INSERT INTO messages (id, queue, state, body, content_type, priority, attempts,
                      created_at, available_at)
VALUES (:id, :queue, 'ready', :body, :content_type, :priority, 0, :now, :available_at);

-- name: message_claim_many
-- One statement claims a whole batch. The candidate set is materialized once; the
-- batch is taken only when it is full or its oldest message has waited max_wait.
WITH candidates AS MATERIALIZED (
    SELECT id, available_at
    FROM messages
    WHERE queue = :queue AND state = 'ready' AND available_at <= :now
    ORDER BY priority DESC, available_at, id
    LIMIT :limit
)
UPDATE messages
SET state = 'leased',
    attempts = attempts + 1,
    lease_id = :lease_id,
    lease_owner = :owner,
    lease_expires_at = :now + :visibility_timeout
WHERE id IN (SELECT id FROM candidates)
  AND ((SELECT count(*) FROM candidates) >= :min_count
       OR (SELECT min(available_at) FROM candidates) <= :now - :max_wait)
  AND NOT EXISTS (SELECT 1 FROM queues WHERE name = :queue AND paused = 1)
RETURNING id, queue, body, content_type, attempts, created_at, priority, lease_id;

-- name: message_ack_many
DELETE FROM messages
WHERE state = 'leased'
  AND (id, lease_id) IN (SELECT value ->> 0, value ->> 1 FROM json_each(:refs));

-- name: message_retry_many
UPDATE messages
SET state = 'ready',
    available_at = :now + r.delay,
    lease_id = NULL,
    lease_owner = NULL,
    lease_expires_at = NULL,
    last_error = coalesce(r.error, messages.last_error)
FROM (SELECT value ->> 0 AS id, value ->> 1 AS lease_id, value ->> 2 AS delay,
             value ->> 3 AS error
      FROM json_each(:items)) AS r
WHERE messages.id = r.id AND messages.lease_id = r.lease_id AND messages.state = 'leased';

-- name: message_fail_many
UPDATE messages
SET state = 'failed',
    lease_id = NULL,
    lease_owner = NULL,
    lease_expires_at = NULL,
    last_error = coalesce(f.error, messages.last_error),
    finished_at = :now
FROM (SELECT value ->> 0 AS id, value ->> 1 AS lease_id, value ->> 2 AS error
      FROM json_each(:items)) AS f
WHERE messages.id = f.id AND messages.lease_id = f.lease_id AND messages.state = 'leased'
RETURNING messages.id;

-- name: message_dead_letter_many
-- Copy failed messages into their dead-letter queue, body and content type unchanged.
INSERT INTO messages (id, queue, state, body, content_type, priority, attempts,
                      created_at, available_at, origin_queue, origin_id)
SELECT d.value ->> 1, d.value ->> 2, 'ready', m.body, m.content_type, m.priority, 0,
       :now, :now, m.queue, m.id
FROM json_each(:items) AS d
JOIN messages AS m ON m.id = d.value ->> 0
WHERE m.state = 'failed';

-- name: message_release_many
UPDATE messages
SET state = 'ready',
    attempts = max(attempts - 1, 0),
    lease_id = NULL,
    lease_owner = NULL,
    lease_expires_at = NULL
WHERE state = 'leased'
  AND (id, lease_id) IN (SELECT value ->> 0, value ->> 1 FROM json_each(:refs));

-- name: lease_extend_many
UPDATE messages
SET lease_expires_at = :now + :visibility_timeout
WHERE state = 'leased' AND lease_id IN (SELECT value FROM json_each(:lease_ids));

-- name: lease_rescue_requeue
UPDATE messages
SET state = 'ready',
    available_at = :now,
    lease_id = NULL,
    lease_owner = NULL,
    lease_expires_at = NULL,
    last_error = 'lease expired: the worker holding this message stopped or lost contact'
WHERE queue = :queue AND state = 'leased' AND lease_expires_at < :now
  AND attempts < :max_attempts;

-- name: lease_rescue_exhausted
SELECT id, lease_id
FROM messages
WHERE queue = :queue AND state = 'leased' AND lease_expires_at < :now
  AND attempts >= :max_attempts;

-- name: message_get
SELECT id, queue, state, body, content_type, attempts, priority, created_at, available_at,
       lease_expires_at, last_error, origin_queue, origin_id, finished_at
FROM messages WHERE id = :id;

-- name: message_list
SELECT id, queue, state, body, content_type, attempts, priority, created_at, available_at,
       lease_expires_at, last_error, origin_queue, origin_id, finished_at
FROM messages
WHERE queue = :queue AND (:state IS NULL OR state = :state)
ORDER BY created_at, id
LIMIT :limit;

-- name: queue_ready_info
SELECT
    (SELECT count(*) FROM (SELECT 1 FROM messages
                           WHERE queue = :queue AND state = 'ready' AND available_at <= :now
                           LIMIT :limit)) AS ready_count,
    (SELECT min(available_at) FROM messages
     WHERE queue = :queue AND state = 'ready' AND available_at <= :now) AS oldest,
    (SELECT min(available_at) FROM messages
     WHERE queue = :queue AND state = 'ready' AND available_at > :now) AS next_at,
    coalesce((SELECT paused FROM queues WHERE name = :queue), 0) AS paused;

-- name: queue_declare
INSERT INTO queues (name, paused, settings, created_at, updated_at)
VALUES (:name, 0, :settings, :now, :now)
ON CONFLICT (name) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at;

-- name: queue_pause
INSERT INTO queues (name, paused, settings, created_at, updated_at)
VALUES (:name, :paused, '{}', :now, :now)
ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at;

-- name: queue_counts
SELECT q.name, coalesce(q.paused, 0), m.state, count(m.id), min(CASE WHEN m.state = 'ready' THEN m.available_at END)
FROM (SELECT name, paused FROM queues
      UNION SELECT DISTINCT queue, NULL FROM messages WHERE queue NOT IN (SELECT name FROM queues)) AS q
LEFT JOIN messages AS m ON m.queue = q.name
WHERE (:queue IS NULL OR q.name = :queue)
GROUP BY q.name, m.state
ORDER BY q.name;

-- name: migrations_table
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at REAL NOT NULL
);

-- name: migrations_applied
SELECT version FROM schema_migrations ORDER BY version;

-- name: migration_record
INSERT INTO schema_migrations (version, name, applied_at) VALUES (:version, :name, :now);
