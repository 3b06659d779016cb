-- Every statement the SQLite backend runs, by name. Parameters are named (:name).

-- name: message_insert
INSERT INTO messages (id, queue, state, body, content_type, priority, attempts,
                      created_at, available_at, type, max_attempts, idempotency_key,
                      correlation_id, batch_id)
VALUES (:id, :queue, 'ready', :body, :content_type, :priority, 0, :now, :available_at,
        :type, :max_attempts, :idempotency_key, :correlation_id, :batch_id);

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
    lease_expires_at = :now + :visibility_timeout,
    started_at = :now
WHERE id IN (SELECT id FROM candidates)
  AND ((SELECT count(*) FROM candidates) >= :min_count
       OR (SELECT min(available_at) FROM candidates) <= :now - :max_wait)
  AND NOT EXISTS (SELECT 1 FROM queues WHERE name = :queue AND paused = 1)
RETURNING id, queue, body, content_type, attempts, created_at, priority, lease_id,
          type, max_attempts, correlation_id;

-- name: message_claim_precheck
-- The claim's condition, read without taking the write lock.
WITH candidates AS (
    SELECT available_at
    FROM messages
    WHERE queue = :queue AND state = 'ready' AND available_at <= :now
    ORDER BY priority DESC, available_at, id
    LIMIT :limit
)
SELECT ((SELECT count(*) FROM candidates) >= :min_count
        OR (SELECT min(available_at) FROM candidates) <= :now - :max_wait)
       AND NOT EXISTS (SELECT 1 FROM queues WHERE name = :queue AND paused = 1);

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

-- name: lease_rescue_record_lost
-- A job's history shows the attempt its worker never finished.
INSERT INTO job_attempts (job_id, attempt, worker_id, started_at, finished_at,
                                     outcome, error)
SELECT id, attempts, lease_owner, started_at, :now, 'lost',
       'lease expired: the worker holding this job stopped or lost contact'
FROM messages
WHERE queue = :queue AND state = 'leased' AND lease_expires_at < :now AND type IS NOT NULL;

-- name: lease_rescue_requeue
UPDATE messages
SET state = 'ready',
    available_at = :now,
    lease_id = NULL,
    lease_owner = NULL,
    lease_expires_at = NULL,
    last_error = 'lease expired: the worker holding this message stopped or lost contact'
WHERE queue = :queue AND state = 'leased' AND lease_expires_at < :now
  AND attempts < coalesce(max_attempts, :max_attempts);

-- name: lease_rescue_exhausted
SELECT id, lease_id
FROM messages
WHERE queue = :queue AND state = 'leased' AND lease_expires_at < :now
  AND attempts >= coalesce(max_attempts, :max_attempts);

-- name: message_get
SELECT id, queue, state, body, content_type, attempts, priority, created_at, available_at,
       lease_expires_at, last_error, origin_queue, origin_id, finished_at,
       type, max_attempts, result, progress, progress_note, started_at, idempotency_key,
       correlation_id, batch_id, cancel_requested
FROM messages WHERE id = :id;

-- name: message_list
SELECT id, queue, state, body, content_type, attempts, priority, created_at, available_at,
       lease_expires_at, last_error, origin_queue, origin_id, finished_at,
       type, max_attempts, result, progress, progress_note, started_at, idempotency_key,
       correlation_id, batch_id, cancel_requested
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
SELECT q.name, coalesce(q.paused, 0), m.state, count(m.id),
       min(CASE WHEN m.state = 'ready' THEN m.available_at END), q.settings
FROM (SELECT name, paused, settings FROM queues
      UNION SELECT DISTINCT queue, NULL, NULL FROM messages
            WHERE queue NOT IN (SELECT name FROM queues)) AS q
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

-- Jobs ---------------------------------------------------------------------------------

-- name: job_complete_many
UPDATE messages
SET state = 'completed',
    result = c.result,
    progress = 1.0,
    last_error = NULL,
    lease_id = NULL,
    lease_owner = NULL,
    lease_expires_at = NULL,
    finished_at = :now
FROM (SELECT value ->> 0 AS id, value ->> 1 AS lease_id, CAST(value ->> 2 AS BLOB) AS result
      FROM json_each(:items)) AS c
WHERE messages.id = c.id AND messages.lease_id = c.lease_id AND messages.state = 'leased';

-- name: job_cancel_many
UPDATE messages
SET state = 'cancelled',
    lease_id = NULL,
    lease_owner = NULL,
    lease_expires_at = NULL,
    last_error = c.reason,
    finished_at = :now
FROM (SELECT value ->> 0 AS id, value ->> 1 AS lease_id, value ->> 2 AS reason
      FROM json_each(:items)) AS c
WHERE messages.id = c.id AND messages.lease_id = c.lease_id AND messages.state = 'leased';

-- name: job_attempt_record
INSERT INTO job_attempts (job_id, attempt, worker_id, started_at, finished_at,
                                     outcome, error, traceback)
VALUES (:job_id, :attempt, :worker_id, :started_at, :finished_at, :outcome, :error, :traceback);

-- name: job_attempts
SELECT job_id, attempt, worker_id, started_at, finished_at, outcome, error, traceback
FROM job_attempts WHERE job_id = :job_id ORDER BY id;

-- name: idempotency_claim
-- Take the key for this job unless an unexpired key whose job still exists holds it.
INSERT INTO idempotency_keys (type, key, job_id, expires_at)
VALUES (:type, :key, :job_id, :expires_at)
ON CONFLICT (type, key) DO UPDATE
SET job_id = excluded.job_id, expires_at = excluded.expires_at
WHERE idempotency_keys.expires_at < :now
   OR NOT EXISTS (SELECT 1 FROM messages WHERE id = idempotency_keys.job_id);

-- name: idempotency_holder
SELECT job_id FROM idempotency_keys WHERE type = :type AND key = :key;

-- name: job_list
SELECT id, queue, state, body, content_type, attempts, priority, created_at, available_at,
       lease_expires_at, last_error, origin_queue, origin_id, finished_at,
       type, max_attempts, result, progress, progress_note, started_at, idempotency_key,
       correlation_id, batch_id, cancel_requested
FROM messages
WHERE type IS NOT NULL
  AND (:state IS NULL OR state = :state)
  AND (:type IS NULL OR type = :type)
  AND (:queue IS NULL OR queue = :queue)
  AND (:before_created IS NULL OR created_at < :before_created
       OR (created_at = :before_created AND id < :before_id))
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: job_cancel_pending
UPDATE messages
SET state = 'cancelled', finished_at = :now, last_error = 'cancelled before it ran'
WHERE id = :id AND type IS NOT NULL AND state = 'ready';

-- name: job_cancel_request
UPDATE messages SET cancel_requested = 1
WHERE id = :id AND type IS NOT NULL AND state = 'leased';

-- name: job_state
SELECT state FROM messages WHERE id = :id AND type IS NOT NULL;

-- name: job_retry
UPDATE messages
SET state = 'ready',
    attempts = 0,
    available_at = :now,
    finished_at = NULL,
    cancel_requested = 0,
    progress = NULL,
    progress_note = NULL,
    result = NULL,
    last_error = NULL
WHERE id = :id AND type IS NOT NULL AND state IN ('failed', 'cancelled');

-- name: job_progress
UPDATE messages SET progress = :progress, progress_note = :note
WHERE id = :id AND lease_id = :lease_id AND state = 'leased';

-- name: job_cancel_requested
SELECT id FROM messages
WHERE state = 'leased' AND cancel_requested = 1
  AND lease_id IN (SELECT value FROM json_each(:lease_ids));

-- name: job_attempt_seq
SELECT coalesce(max(id), 0) FROM job_attempts;

-- name: job_events_enqueued
SELECT 'enqueued', created_at, id, type, queue, attempts, NULL, NULL, 0
FROM messages
WHERE type IS NOT NULL AND created_at > :enqueued_after
ORDER BY created_at LIMIT :limit;

-- name: job_events_started
SELECT 'started', started_at, id, type, queue, attempts, NULL, NULL, 0
FROM messages
WHERE state = 'leased' AND type IS NOT NULL AND started_at > :started_after
ORDER BY started_at LIMIT :limit;

-- name: job_events_finished
SELECT a.outcome, a.finished_at, a.job_id, m.type, m.queue, a.attempt, a.error,
       a.finished_at - a.started_at, a.id
FROM job_attempts AS a LEFT JOIN messages AS m ON m.id = a.job_id
WHERE a.id > :attempt_after
ORDER BY a.id LIMIT :limit;

-- name: job_counts
SELECT queue, type, state, count(*)
FROM messages
WHERE type IS NOT NULL
  AND (:queue IS NULL OR queue = :queue)
  AND (:type IS NULL OR type = :type)
GROUP BY queue, type, state;

-- name: job_batch_create
INSERT INTO job_batches (id, type, total, created_at) VALUES (:id, :type, :total, :now);

-- name: job_batch_get
SELECT type, total FROM job_batches WHERE id = :id;

-- name: job_batch_counts
SELECT state, count(*) FROM messages WHERE batch_id = :id GROUP BY state;

-- name: job_prune
DELETE FROM messages
WHERE id IN (
    SELECT id FROM messages
    WHERE (state = 'completed' AND finished_at < :completed_before)
       OR (state IN ('failed', 'cancelled') AND finished_at < :failed_before)
    LIMIT :limit
)
RETURNING id;

-- name: job_prune_attempts
DELETE FROM job_attempts WHERE job_id IN (SELECT value FROM json_each(:ids));

-- name: idempotency_prune
DELETE FROM idempotency_keys WHERE expires_at < :now;

-- name: once_prune
DELETE FROM once_results WHERE expires_at < :now;

-- name: once_claim
-- Claim the key when absent, expired, or abandoned by a caller whose lease ran out.
INSERT INTO once_results (key, state, result, owner, lease_until, expires_at)
VALUES (:key, 'running', NULL, :owner, :lease_until, :lease_until)
ON CONFLICT (key) DO UPDATE
SET state = 'running', result = NULL, owner = excluded.owner,
    lease_until = excluded.lease_until, expires_at = excluded.expires_at
WHERE once_results.expires_at < :now
   OR (once_results.state = 'running' AND once_results.lease_until < :now);

-- name: once_get
SELECT state, result, owner FROM once_results WHERE key = :key;

-- name: once_finish
UPDATE once_results SET state = 'done', result = :result, expires_at = :expires_at,
                        lease_until = NULL
WHERE key = :key AND owner = :owner;

-- name: once_abandon
DELETE FROM once_results WHERE key = :key AND owner = :owner AND state = 'running';

-- Cron ---------------------------------------------------------------------------------

-- name: cron_tick_insert
INSERT INTO cron_ticks (name, tick, status, job_id, created_at)
VALUES (:name, :tick, :status, :job_id, :now)
ON CONFLICT (name, tick) DO NOTHING;

-- name: cron_last_tick
-- Manual fires are not ticks of the schedule: they must not hide missed ticks.
SELECT max(tick) FROM cron_ticks WHERE name = :name AND status <> 'manual';

-- name: cron_recent
SELECT name, tick, status, job_id, created_at FROM cron_ticks
WHERE name = :name ORDER BY tick DESC LIMIT :limit;

-- Administration -----------------------------------------------------------------------

-- name: queue_purge
-- Every message not yet finished, delayed ones included, so none is ever delivered.
DELETE FROM messages WHERE queue = :queue AND state IN ('ready', 'leased');

-- name: dead_letter_reprocess_jobs
-- A dead-lettered job goes back as the original job, with a fresh attempt budget.
UPDATE messages
SET state = 'ready', attempts = 0, available_at = :now, finished_at = NULL,
    cancel_requested = 0
WHERE type IS NOT NULL AND state = 'failed'
  AND id IN (SELECT origin_id FROM messages
             WHERE queue = :dlq AND state = 'ready' AND origin_id IS NOT NULL
               AND (:ids IS NULL OR id IN (SELECT value FROM json_each(:ids))));

-- name: dead_letter_drop_job_copies
DELETE FROM messages
WHERE queue = :dlq AND state = 'ready'
  AND (:ids IS NULL OR id IN (SELECT value FROM json_each(:ids)))
  AND origin_id IN (SELECT id FROM messages WHERE type IS NOT NULL);

-- name: dead_letter_reprocess_messages
UPDATE messages
SET queue = origin_queue, attempts = 0, available_at = :now
WHERE queue = :dlq AND state = 'ready' AND origin_queue IS NOT NULL
  AND (:ids IS NULL OR id IN (SELECT value FROM json_each(:ids)));

-- name: worker_report
INSERT INTO workers (id, hostname, pid, started_at, last_seen, stats)
VALUES (:id, :hostname, :pid, :started_at, :now, :stats)
ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen, stats = excluded.stats;

-- name: worker_list
SELECT id, hostname, pid, started_at, last_seen, stats FROM workers
WHERE last_seen >= :since ORDER BY started_at;

-- name: worker_prune
DELETE FROM workers WHERE last_seen < :before;
