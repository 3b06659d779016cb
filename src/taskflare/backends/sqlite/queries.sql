-- Every statement the SQLite backend runs, by name. Parameters are named (:name); a
-- sequence parameter arrives as JSON text (read with json_each), :now is this machine's
-- clock in epoch seconds. Columns are named as the fields of the record they fill.
-- A statement with `{traced:...}` parts is also loaded as `<name>_traced` with them (the
-- trace context of an enqueue made while tracing is on); `<name>` is the text without.

-- name: notify_triggers
-- The change signal, raised by the database itself: these temporary triggers (this
-- connection only) call back into Python for every row that becomes ready, every job
-- that finishes and every cancellation requested; the backend raises the topics once
-- the transaction commits, and drops them if it rolls back (NOTIFY semantics).
CREATE TEMP TRIGGER IF NOT EXISTS tf_ready_insert AFTER INSERT ON main.messages
WHEN new.state = 'ready'
BEGIN SELECT tf_notify('ready:' || new.queue); END;
CREATE TEMP TRIGGER IF NOT EXISTS tf_ready_update AFTER UPDATE OF state, queue ON main.messages
WHEN new.state = 'ready'
BEGIN SELECT tf_notify('ready:' || new.queue); END;
CREATE TEMP TRIGGER IF NOT EXISTS tf_done AFTER UPDATE OF state ON main.messages
WHEN new.type IS NOT NULL
     AND (new.state = 'completed' OR new.state = 'failed' OR new.state = 'cancelled')
BEGIN SELECT tf_notify('done'); END;
CREATE TEMP TRIGGER IF NOT EXISTS tf_cancel AFTER UPDATE OF cancel_requested ON main.messages
WHEN new.cancel_requested <> 0 AND old.cancel_requested = 0
BEGIN SELECT tf_notify('cancel'); END;
CREATE TEMP TRIGGER IF NOT EXISTS tf_resume AFTER UPDATE OF paused ON main.queues
WHEN new.paused = 0
BEGIN SELECT tf_notify('ready:' || new.name); END;

-- name: message_insert
-- `{traced:...}`: only in message_insert_traced (see the file's header).
INSERT INTO messages (id, queue, state, body, content_type, priority, attempts,
                      created_at, available_at, type, max_attempts, idempotency_key,
                      correlation_id, batch_id, flow_keys{traced:, trace_context})
VALUES (:id, :queue, 'ready', :body, :content_type, :priority, 0, :now, :now + :delay,
        :type, :max_attempts, :idempotency_key, :correlation_id, :batch_id,
        :flow_keys{traced:, :trace_context})
ON CONFLICT (id) DO NOTHING;

-- name: message_claim_many
-- A claim reads its batch first, then leases it with message_claim_lease, in one
-- transaction (the write lock is held: nothing can change in between). An UPDATE ...
-- RETURNING of these columns cost a quarter more than the two. The paused check is in
-- the LIMIT, evaluated once before the scan: as a WHERE term SQLite evaluated it once
-- too but still read every ready message of a paused queue looking for `limit` that
-- pass. The batch conditions (full, or the oldest waited max_wait) are the caller's,
-- from the rows.
-- The columns are ClaimedMessage's fields in order (flow_keys too, unused here), so each
-- row becomes one with no Python call of its own.
SELECT id, :queue AS queue, body, content_type, attempts + 1 AS attempts, created_at,
       priority, :lease_id AS lease_id, type, max_attempts, correlation_id,
       NULL AS flow_keys, trace_context
FROM messages
WHERE queue = :queue AND state = 'ready' AND available_at <= :now
  AND (:types IS NULL OR type IN (SELECT value FROM json_each(:types)))
ORDER BY priority DESC, available_at, id
LIMIT CASE WHEN EXISTS (SELECT 1 FROM queues WHERE name = :queue AND paused = 1) THEN 0
           ELSE :limit END;

-- name: message_claim_oldest
-- When the read batch is not full: how long its oldest message has been available.
SELECT min(available_at) FROM messages WHERE id IN (SELECT value FROM json_each(:ids));

-- name: message_claim_lease
UPDATE messages
SET state = 'leased',
    attempts = attempts + 1,
    lease_id = :lease_id,
    lease_owner = :owner,
    lease_expires_at = :now + :visibility_timeout,
    started_at = :now
WHERE id IN (SELECT value FROM json_each(:ids)) AND state = 'ready';

-- name: queue_ready_info
-- What a queue has ready now (count capped at :limit), the oldest ready and the next
-- delayed availability; :types limits it to the job types a worker can run.
SELECT
    (SELECT count(*) FROM (SELECT 1 FROM messages
                           WHERE queue = :queue AND state = 'ready' AND available_at <= :now
                             AND (:types IS NULL
                                  OR type IN (SELECT value FROM json_each(:types)))
                           LIMIT :limit)) AS ready_count,
    (SELECT min(available_at) FROM messages
     WHERE queue = :queue AND state = 'ready' AND available_at <= :now
       AND (:types IS NULL OR type IN (SELECT value FROM json_each(:types))))
        AS oldest_available_at,
    (SELECT min(available_at) FROM messages
     WHERE queue = :queue AND state = 'ready' AND available_at > :now
       AND (:types IS NULL OR type IN (SELECT value FROM json_each(:types))))
        AS next_available_at,
    coalesce((SELECT paused FROM queues WHERE name = :queue), 0) AS paused,
    :now AS now;

-- name: settle_ack
-- A held lease's message, or (no lease id: a late pull ack) an unfinished plain message.
-- Each ack is one primary-key lookup (the join), never a scan of the batch per row.
DELETE FROM messages
WHERE rowid IN (
    SELECT m.rowid
    FROM json_each(:acks) AS a
    JOIN messages AS m ON m.id = a.value ->> 0
    WHERE (a.value ->> 1 IS NULL AND m.type IS NULL AND m.state IN ('ready', 'leased'))
       OR (m.lease_id = a.value ->> 1 AND m.state = 'leased')
)
RETURNING id, 'acked' AS state;

-- name: settle_ack_held
-- The common case: the acks of one lease, a plain primary-key delete with nothing
-- returned (RETURNING doubles its cost). The caller checks the row count: any id it did
-- not delete sends the group back to settle_ack, which says which ones applied.
DELETE FROM messages
WHERE id IN (SELECT value FROM json_each(:ids)) AND lease_id = :lease_id AND state = 'leased';

-- name: settle_retry
-- A job whose cancellation was requested ends cancelled instead: the cancel, once
-- accepted, wins over whatever its worker reports.
UPDATE messages
SET state = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'ready' END,
    available_at = CASE WHEN cancel_requested THEN available_at ELSE :now + r.delay END,
    attempts = CASE WHEN r.refund THEN max(messages.attempts - 1, 0) ELSE messages.attempts END,
    finished_at = CASE WHEN cancel_requested THEN :now END,
    last_error = CASE WHEN cancel_requested THEN 'cancelled while running'
                      ELSE coalesce(r.error, messages.last_error) END,
    lease_id = NULL,
    lease_owner = NULL,
    lease_expires_at = NULL
FROM (SELECT value ->> 0 AS id, value ->> 1 AS lease_id, value ->> 2 AS delay,
             value ->> 3 AS error, value ->> 4 AS require_expired, value ->> 5 AS refund
      FROM json_each(:retries)) AS r
WHERE messages.id = r.id AND messages.lease_id = r.lease_id AND messages.state = 'leased'
  AND (NOT r.require_expired OR messages.lease_expires_at < :now)
RETURNING messages.id AS id, messages.state AS state;

-- name: settle_fail
UPDATE messages
SET state = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'failed' END,
    lease_id = NULL,
    lease_owner = NULL,
    lease_expires_at = NULL,
    last_error = CASE WHEN cancel_requested THEN 'cancelled while running'
                      ELSE coalesce(f.error, messages.last_error) END,
    finished_at = :now
FROM (SELECT value ->> 0 AS id, value ->> 1 AS lease_id, value ->> 2 AS error,
             value ->> 3 AS require_expired
      FROM json_each(:fails)) AS f
WHERE messages.id = f.id AND messages.lease_id = f.lease_id AND messages.state = 'leased'
  AND (NOT f.require_expired OR messages.lease_expires_at < :now)
RETURNING messages.id AS id, messages.state AS state;

-- name: settle_dead_letter
-- Copy failed messages into their dead-letter queue, body, content type, send time (the
-- copy's `timestamp`), last error and trace context (the copy's consumer span links to
-- the producer) unchanged. CROSS JOIN: each failed message is found by its id (with
-- `m.state = 'failed'` SQLite could read every failed job of the finished index instead).
INSERT INTO messages (id, queue, state, body, content_type, priority, attempts,
                      created_at, available_at, last_error, origin_queue, origin_id,
                      trace_context)
SELECT d.value ->> 1, d.value ->> 2, 'ready', m.body, m.content_type, m.priority, 0,
       m.created_at, :now, m.last_error, m.queue, m.id, m.trace_context
FROM json_each(:dead_letters) AS d
CROSS JOIN messages AS m ON m.id = d.value ->> 0
WHERE m.state = 'failed';

-- name: settle_complete
UPDATE messages
SET state = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'completed' END,
    result = CASE WHEN cancel_requested THEN NULL ELSE c.result END,
    progress = CASE WHEN cancel_requested THEN progress ELSE 1.0 END,
    last_error = CASE WHEN cancel_requested THEN 'cancelled while running' END,
    lease_id = NULL,
    lease_owner = NULL,
    lease_expires_at = NULL,
    finished_at = :now
FROM (SELECT value ->> 0 AS id, value ->> 1 AS lease_id, CAST(value ->> 2 AS BLOB) AS result
      FROM json_each(:completes)) AS c
WHERE messages.id = c.id AND messages.lease_id = c.lease_id AND messages.state = 'leased'
RETURNING messages.id AS id, messages.state AS state;

-- name: settle_cancel
UPDATE messages
SET state = 'cancelled',
    lease_id = NULL,
    lease_owner = NULL,
    lease_expires_at = NULL,
    last_error = c.reason,
    finished_at = :now
FROM (SELECT value ->> 0 AS id, value ->> 1 AS lease_id, value ->> 2 AS reason
      FROM json_each(:cancels)) AS c
WHERE messages.id = c.id AND messages.lease_id = c.lease_id AND messages.state = 'leased'
RETURNING messages.id AS id, messages.state AS state;

-- name: attempt_insert
INSERT INTO job_attempts (job_id, attempt, worker_id, started_at, finished_at, outcome,
                          error, traceback)
VALUES (:job_id, :attempt, :worker_id, :started_at, :finished_at, :outcome, :error,
        :traceback);

-- name: message_release_many
UPDATE messages
SET state = 'ready',
    attempts = max(attempts - 1, 0),
    lease_id = NULL,
    lease_owner = NULL,
    lease_expires_at = NULL
WHERE state = 'leased'
  AND (id, lease_id) IN (SELECT i.value, l.value
                         FROM json_each(:ids) AS i JOIN json_each(:leases) AS l
                         ON i.key = l.key)
RETURNING id;

-- name: lease_extend_many
UPDATE messages
SET lease_expires_at = :now + :visibility_timeout
WHERE state = 'leased' AND lease_id IN (SELECT value FROM json_each(:lease_ids));

-- name: lease_list_expired
SELECT id, lease_id, queue, attempts, max_attempts, type, lease_owner, started_at
FROM messages
WHERE queue = :queue AND state = 'leased' AND lease_expires_at < :now
ORDER BY lease_expires_at
LIMIT :limit;

-- name: message_get
SELECT id, queue, state, body, content_type, attempts, priority, created_at, available_at,
       lease_expires_at, last_error, origin_queue, origin_id, finished_at,
       type, max_attempts, result, progress, progress_note, started_at, idempotency_key,
       correlation_id, batch_id, cancel_requested,
       (SELECT o.attempts FROM messages AS o WHERE o.id = m.origin_id) AS origin_attempts
FROM messages AS m WHERE id = :id;

-- name: message_list
-- Oldest first across states: each state's first :limit from its own index (ready:
-- messages_ready_created_idx, the others: messages_queue_state_idx, whose condition is
-- written out), merged; a queue that also holds a million finished jobs costs what an
-- empty one does. The cursor is always bound (no cursor: -infinity).
WITH page AS MATERIALIZED (
    SELECT * FROM (SELECT id, created_at FROM messages
                   WHERE queue = :queue AND state = 'ready'
                     AND (:state IS NULL OR :state = 'ready')
                     AND (created_at, id) > (:after_created, :after_id)
                   ORDER BY created_at, id LIMIT :limit)
    UNION ALL
    SELECT * FROM (SELECT id, created_at FROM messages
                   WHERE queue = :queue AND state <> 'ready' AND state = 'leased'
                     AND (:state IS NULL OR :state = 'leased')
                     AND (created_at, id) > (:after_created, :after_id)
                   ORDER BY created_at, id LIMIT :limit)
    UNION ALL
    SELECT * FROM (SELECT id, created_at FROM messages
                   WHERE queue = :queue AND state <> 'ready' AND state = 'completed'
                     AND (:state IS NULL OR :state = 'completed')
                     AND (created_at, id) > (:after_created, :after_id)
                   ORDER BY created_at, id LIMIT :limit)
    UNION ALL
    SELECT * FROM (SELECT id, created_at FROM messages
                   WHERE queue = :queue AND state <> 'ready' AND state = 'failed'
                     AND (:state IS NULL OR :state = 'failed')
                     AND (created_at, id) > (:after_created, :after_id)
                   ORDER BY created_at, id LIMIT :limit)
    UNION ALL
    SELECT * FROM (SELECT id, created_at FROM messages
                   WHERE queue = :queue AND state <> 'ready' AND state = 'cancelled'
                     AND (:state IS NULL OR :state = 'cancelled')
                     AND (created_at, id) > (:after_created, :after_id)
                   ORDER BY created_at, id LIMIT :limit)
    ORDER BY created_at, id LIMIT :limit
)
SELECT id, queue, state, body, content_type, attempts, priority, created_at, available_at,
       lease_expires_at, last_error, origin_queue, origin_id, finished_at,
       type, max_attempts, result, progress, progress_note, started_at, idempotency_key,
       correlation_id, batch_id, cancel_requested,
       (SELECT o.attempts FROM messages AS o WHERE o.id = m.origin_id) AS origin_attempts
FROM messages AS m
WHERE m.id IN (SELECT id FROM page)
ORDER BY m.created_at, m.id;

-- name: queue_declare_many
INSERT INTO queues (name, paused, settings, created_at, updated_at)
SELECT n.value, 0, s.value, :now, :now
FROM json_each(:names) AS n JOIN json_each(:settings) AS s ON n.key = s.key
WHERE true
ON CONFLICT (name) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at;

-- name: queue_pause
INSERT INTO queues (name, paused, settings, created_at, updated_at)
VALUES (:name, :paused, '{}', :now, :now)
ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at;

-- name: queue_counts
-- Every queue (stored, or holding messages: found as queue_depths finds them) with its
-- messages counted by state, each count reading at most :count_limit entries of that
-- state's index for the queue (a count equal to the limit means "at least"), never a
-- scan of the table; the oldest ready time is that of the first :count_limit ready.
WITH RECURSIVE ready_queues(queue) AS (
    SELECT (SELECT min(queue) FROM messages WHERE state = 'ready')
    UNION ALL
    SELECT (SELECT min(m.queue) FROM messages AS m
            WHERE m.state = 'ready' AND m.queue > r.queue)
    FROM ready_queues AS r WHERE r.queue IS NOT NULL
), other_queues(queue) AS (
    SELECT (SELECT min(queue) FROM messages WHERE state <> 'ready')
    UNION ALL
    SELECT (SELECT min(m.queue) FROM messages AS m
            WHERE m.state <> 'ready' AND m.queue > o.queue)
    FROM other_queues AS o WHERE o.queue IS NOT NULL
), names(name) AS (
    SELECT name FROM queues WHERE (:queue IS NULL OR name = :queue)
    UNION SELECT queue FROM ready_queues
          WHERE queue IS NOT NULL AND (:queue IS NULL OR queue = :queue)
    UNION SELECT queue FROM other_queues
          WHERE queue IS NOT NULL AND (:queue IS NULL OR queue = :queue)
), counted AS MATERIALIZED (
    SELECT n.name AS name,
           (SELECT json_array(count(*), CASE WHEN min(w.available_at) IS NOT NULL
                                             THEN printf('%!.17g', min(w.available_at)) END)
            FROM (SELECT available_at FROM messages
                  WHERE queue = n.name AND state = 'ready'
                  ORDER BY created_at LIMIT :count_limit) AS w) AS ready_window,
           (SELECT count(*) FROM (SELECT 1 FROM messages
                                  WHERE queue = n.name AND state <> 'ready'
                                    AND state = 'leased'
                                  LIMIT :count_limit)) AS leased,
           (SELECT count(*) FROM (SELECT 1 FROM messages
                                  WHERE queue = n.name AND state <> 'ready' AND state = 'completed'
                                  LIMIT :count_limit)) AS completed,
           (SELECT count(*) FROM (SELECT 1 FROM messages
                                  WHERE queue = n.name AND state <> 'ready' AND state = 'failed'
                                  LIMIT :count_limit)) AS failed,
           (SELECT count(*) FROM (SELECT 1 FROM messages
                                  WHERE queue = n.name AND state <> 'ready' AND state = 'cancelled'
                                  LIMIT :count_limit)) AS cancelled
    FROM names AS n
)
SELECT c.name AS name, coalesce(q.paused, 0) AS paused, q.settings AS settings,
       json_extract(c.ready_window, '$[0]') AS ready,
       json_extract(c.ready_window, '$[1]') AS oldest_ready_at,
       c.leased, c.completed, c.failed, c.cancelled
FROM counted AS c LEFT JOIN queues AS q ON q.name = c.name
ORDER BY c.name;

-- name: queue_delete_messages
DELETE FROM messages WHERE queue = :queue;

-- name: queue_delete
DELETE FROM queues WHERE name = :queue;

-- name: queue_purge
-- Every message waiting for delivery, delayed ones included, so none is ever delivered.
-- Leased ones (a batch or job in flight) are kept: their worker settles them as usual.
DELETE FROM messages WHERE queue = :queue AND state = 'ready';

-- name: migrations_table
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at REAL NOT NULL
);

-- name: migrations_applied
SELECT version FROM schema_migrations ORDER BY version;

-- name: database_ping
-- The cheapest read that proves the database and this app's schema answer (GET /health).
SELECT 1 FROM schema_migrations LIMIT 1;

-- name: migration_record
INSERT INTO schema_migrations (version, name, applied_at) VALUES (:version, :name, :now);

-- Jobs ---------------------------------------------------------------------------------

-- name: job_attempts
SELECT job_id, attempt, worker_id, started_at, finished_at, outcome, error, traceback
FROM job_attempts
WHERE job_id IN (SELECT value FROM json_each(:job_ids))
ORDER BY job_id, id;

-- name: idempotency_claim
-- Take the key for this job unless an unexpired key holds it whose job still exists and
-- is in a guard state (an idempotency key: pending, running or completed; a unique
-- job: its declared states).
INSERT INTO idempotency_keys (type, key, job_id, expires_at)
VALUES (:type, :key, :job_id, :now + :ttl)
ON CONFLICT (type, key) DO UPDATE
SET job_id = excluded.job_id, expires_at = excluded.expires_at
WHERE idempotency_keys.expires_at < :now
   OR NOT EXISTS (SELECT 1 FROM messages
                  WHERE id = idempotency_keys.job_id
                    AND state IN (SELECT value FROM json_each(:guard_states)));

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
SET state = 'cancelled', finished_at = :now,
    last_error = CASE WHEN attempts > 0 THEN 'cancelled while waiting for its next attempt'
                      ELSE 'cancelled before it ran' END
WHERE id = :id AND type IS NOT NULL AND state = 'ready';

-- name: job_cancel_request
UPDATE messages SET cancel_requested = 1
WHERE id = :id AND type IS NOT NULL AND state = 'leased';

-- name: job_state
SELECT state FROM messages WHERE id = :id AND type IS NOT NULL;

-- name: job_key_holder
-- Another job that holds this job's idempotency key now (unexpired, in a state that keeps
-- it): a failed or cancelled job's key is free, and a new job may have taken it since.
SELECT h.id FROM messages AS j
JOIN idempotency_keys AS k ON k.key = j.idempotency_key AND k.type IN (j.type, '*')
JOIN messages AS h ON h.id = k.job_id
WHERE j.id = :id AND j.idempotency_key IS NOT NULL AND k.job_id <> j.id
  AND k.expires_at >= :now AND h.state IN ('ready', 'leased', 'completed')
LIMIT 1;

-- name: job_rekey
-- A retried job holds its idempotency key again (no other job holds it: job_key_holder).
UPDATE idempotency_keys SET job_id = :id
WHERE key = (SELECT idempotency_key FROM messages WHERE id = :id)
  AND type IN ((SELECT type FROM messages WHERE id = :id), '*')
  AND expires_at >= :now;

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

-- name: job_events
-- Enqueues, starts and finished attempts after the cursor, each bounded, in one query.
-- An enqueue is attempt 0 (no attempt has started), whatever the row counts now.
SELECT * FROM (SELECT 'enqueued' AS kind, created_at AS at, id AS job_id, type, queue,
                      0 AS attempt, NULL AS error, NULL AS duration, 0 AS seq
               FROM messages
               WHERE type IS NOT NULL AND created_at > :enqueued_after
               ORDER BY created_at LIMIT :limit)
UNION ALL
SELECT * FROM (SELECT 'started', started_at, id, type, queue, attempts, NULL, NULL, 0
               FROM messages
               WHERE state = 'leased' AND type IS NOT NULL AND started_at > :started_after
               ORDER BY started_at LIMIT :limit)
UNION ALL
SELECT * FROM (SELECT a.outcome, a.finished_at, a.job_id, m.type, m.queue, a.attempt,
                      a.error, a.finished_at - a.started_at, a.id
               FROM job_attempts AS a LEFT JOIN messages AS m ON m.id = a.job_id
               WHERE a.id > :attempt_after
               ORDER BY a.id LIMIT :limit);

-- name: job_counts
SELECT queue, type, state, count(*) AS count
FROM messages
WHERE type IS NOT NULL
  AND (:queue IS NULL OR queue = :queue)
  AND (:type IS NULL OR type = :type)
GROUP BY queue, type, state;

-- name: job_batch_create
INSERT INTO job_batches (id, type, total, created_at) VALUES (:id, :type, :total, :now);

-- name: job_batch_counts
-- The batch row, and its jobs by state (one row with a NULL state when it has none).
SELECT b.type AS type, b.total AS total, m.state AS state, count(m.state) AS count
FROM job_batches AS b
LEFT JOIN messages AS m ON m.batch_id = b.id
WHERE b.id = :id
GROUP BY b.type, b.total, m.state;

-- name: job_prune
-- Each cutoff is one range per state of messages_finished_idx (state, finished_at):
-- `state = 'completed'` implies the index's condition (schema 13: equalities joined by
-- OR), so SQLite reads the range from the index. As one OR of the cutoffs SQLite scanned
-- the whole table instead, on every pass of every worker's pruner even when nothing was
-- past retention (~0.1 s with a million finished jobs kept, the write lock held
-- throughout).
DELETE FROM messages
WHERE id IN (
    SELECT id FROM messages WHERE state = 'completed' AND finished_at < :completed_before
    UNION ALL
    SELECT id FROM messages WHERE state = 'failed' AND finished_at < :failed_before
    UNION ALL
    SELECT id FROM messages WHERE state = 'cancelled' AND finished_at < :failed_before
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
-- Claim the key when absent, expired, or abandoned by a caller whose lease ran out. The
-- conditions are on the row itself: one caller gets the row back, the others nothing.
INSERT INTO once_results (key, state, result, owner, lease_until, expires_at)
VALUES (:key, 'running', NULL, :owner, :now + :lease, :now + :lease)
ON CONFLICT (key) DO UPDATE
SET state = 'running', result = NULL, owner = excluded.owner,
    lease_until = excluded.lease_until, expires_at = excluded.expires_at
WHERE once_results.expires_at < :now
   OR (once_results.state = 'running' AND once_results.lease_until < :now)
RETURNING owner;

-- name: once_get
SELECT state, result, owner FROM once_results WHERE key = :key;

-- name: once_finish
UPDATE once_results SET state = 'done', result = :result, expires_at = :now + :ttl,
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

-- name: dead_letter_reprocess_jobs
-- A dead-lettered job goes back as the original job, with a fresh attempt budget.
UPDATE messages
SET state = 'ready', attempts = 0, available_at = :now, finished_at = NULL,
    cancel_requested = 0
WHERE type IS NOT NULL AND state = 'failed'
  AND id IN (SELECT origin_id FROM messages
             WHERE queue = :dlq AND state = 'ready' AND origin_id IS NOT NULL
               AND (:origin IS NULL OR origin_queue = :origin)
               AND (:ids IS NULL OR id IN (SELECT value FROM json_each(:ids))));

-- name: dead_letter_drop_job_copies
DELETE FROM messages
WHERE queue = :dlq AND state = 'ready'
  AND (:origin IS NULL OR origin_queue = :origin)
  AND (:ids IS NULL OR id IN (SELECT value FROM json_each(:ids)))
  AND origin_id IN (SELECT id FROM messages WHERE type IS NOT NULL);

-- name: dead_letter_reprocess_messages
UPDATE messages
SET queue = origin_queue, attempts = 0, available_at = :now, last_error = NULL
WHERE queue = :dlq AND state = 'ready' AND origin_queue IS NOT NULL
  AND (:origin IS NULL OR origin_queue = :origin)
  AND (:ids IS NULL OR id IN (SELECT value FROM json_each(:ids)));

-- name: worker_report
INSERT INTO workers (id, hostname, pid, started_at, last_seen, stats)
VALUES (:id, :hostname, :pid, :started_at, :now, :stats_json)
ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen, stats = excluded.stats;

-- name: worker_gone
-- Kept (its counters still count in the totals), marked stopped: no longer alive.
UPDATE workers SET stats = json_set(stats, '$.stopped', json('true')) WHERE id = :id;

-- name: worker_list
SELECT id, hostname, pid, started_at, last_seen, stats AS stats_json FROM workers
WHERE last_seen >= :since ORDER BY started_at;

-- Dashboard ----------------------------------------------------------------------------
-- The jobs list: one statement per index that can drive it (SQLite plans a statement
-- once, so an optional filter cannot pick its index); the store picks by the filters
-- given. The cursor and the time range are always bound (open ends as +/- infinity), so
-- the index seeks to the page instead of stepping over the pages before it.

-- name: _payload_matches
-- The payload search of job_search_count and job_search_text.
(instr(body, :needle) > 0 OR EXISTS (
      -- The text as typed, inside a JSON string or key that the stored text escapes
      -- (a quote, a backslash, a newline; non-ASCII written as \u escapes). A NUL would
      -- end the text instr() reads: its escape reads as U+FFFD (still valid JSON).
      SELECT 1 FROM json_tree(CASE WHEN content_type = 'json'
                                   THEN replace(CAST(body AS TEXT), '\u0000', '\ufffd') END)
      WHERE (type = 'text' AND instr(atom, :needle_text) > 0)
         OR (typeof(key) = 'text' AND instr(key, :needle_text) > 0)))

-- name: job_search_count
-- The count of a bulk action's filter: the jobs matching it among the newest
-- :scan_limit entries of the index that drives it (as job_search_scan*), so a filter
-- that matches almost nothing costs one window, not a walk of the whole index; the
-- caller says "at least" when the window did not reach the end.
SELECT count(*) FROM (
    SELECT state, type, queue FROM messages
    WHERE type IS NOT NULL
      AND created_at >= :created_from
      AND (created_at, id) < (:before_created, :before_id)
    ORDER BY created_at DESC, id DESC
    LIMIT :scan_limit
) AS examined
WHERE (:state IS NULL OR state = :state)
  AND (:type IS NULL OR type = :type)
  AND (:queue IS NULL OR queue = :queue);

-- name: job_search_count_state
-- The status index holds the type and queue, so the count reads no table row.
SELECT count(*) FROM (
    SELECT type, queue FROM messages
    WHERE type IS NOT NULL
      AND state = :state
      AND created_at >= :created_from
      AND (created_at, id) < (:before_created, :before_id)
    ORDER BY created_at DESC, id DESC
    LIMIT :scan_limit
) AS examined
WHERE (:type IS NULL OR type = :type)
  AND (:queue IS NULL OR queue = :queue);

-- name: job_search_count_type
SELECT count(*) FROM (
    SELECT state, queue FROM messages
    WHERE type IS NOT NULL
      AND type = :type
      AND created_at >= :created_from
      AND (created_at, id) < (:before_created, :before_id)
    ORDER BY created_at DESC, id DESC
    LIMIT :scan_limit
) AS examined
WHERE (:state IS NULL OR state = :state)
  AND (:queue IS NULL OR queue = :queue);

-- name: job_search_count_text
-- A count with a payload text looks inside the newest :scan_limit jobs only (the window
-- of job_search_text), so it costs what one search page does; the caller says "at
-- least".
SELECT count(*) FROM (
    SELECT body, content_type, state, type, queue FROM messages
    WHERE type IS NOT NULL
      AND created_at >= :created_from
      AND (created_at, id) < (:before_created, :before_id)
    ORDER BY created_at DESC, id DESC
    LIMIT :scan_limit
) AS examined
WHERE (:state IS NULL OR state = :state)
  AND (:type IS NULL OR type = :type)
  AND (:queue IS NULL OR queue = :queue)
  AND {_payload_matches};

-- name: job_search_text
-- A payload search examines a bounded window: the newest :scan_limit jobs after the
-- cursor (whatever the other filters), so one call costs the same on any table size.
WITH examined AS (
    SELECT id FROM messages
    WHERE type IS NOT NULL
      AND created_at >= :created_from
      AND (created_at, id) < (:before_created, :before_id)
    ORDER BY created_at DESC, id DESC
    LIMIT :scan_limit
)
SELECT id, queue, state, body, content_type, attempts, priority, created_at, available_at,
       lease_expires_at, last_error, origin_queue, origin_id, finished_at,
       type, max_attempts, result, progress, progress_note, started_at, idempotency_key,
       correlation_id, batch_id, cancel_requested
FROM messages
WHERE id IN (SELECT id FROM examined)
  AND (:state IS NULL OR state = :state)
  AND (:type IS NULL OR type = :type)
  AND (:queue IS NULL OR queue = :queue)
  AND {_payload_matches}
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: job_search_window_end
-- The last job of job_search_text's window when the window was full (else no row): a
-- search that found too few goes on from there.
SELECT created_at, id FROM messages
WHERE type IS NOT NULL
  AND created_at >= :created_from
  AND (created_at, id) < (:before_created, :before_id)
ORDER BY created_at DESC, id DESC
LIMIT 1 OFFSET :scan_limit - 1;

-- Bounded jobs list: a filter examines at most scan_limit entries of the index that
-- drives it (the status index when a status is given, else the type index when a type
-- is, else the creation index), newest first after the cursor, and keeps those matching
-- every other filter; so a combination that matches almost nothing costs one window, not
-- a walk of the whole index. The store picks the statement by the filters given. The
-- window is a subquery with its own LIMIT read lazily (a co-routine): a common filter
-- stops after a page of matches. The window reads only its index (the rowid, and the
-- type in the status index), so a filter decided there reads a table row only for the
-- jobs shown; CROSS JOIN keeps the window as the outer loop. No ORDER BY outside: the
-- co-routine yields the window newest first already, and SQLite would sort the whole
-- window (a temp B-tree) to order it again. job_search_scan_end* give the window's last entry when the page was
-- not filled (the next call continues from there).

-- name: job_search_scan
SELECT m.id, m.queue, m.state, m.body, m.content_type, m.attempts, m.priority, m.created_at,
       m.available_at, m.lease_expires_at, m.last_error, m.origin_queue, m.origin_id,
       m.finished_at, m.type, m.max_attempts, m.result, m.progress, m.progress_note,
       m.started_at, m.idempotency_key, m.correlation_id, m.batch_id, m.cancel_requested
FROM (
    SELECT rowid AS rid FROM messages
    WHERE type IS NOT NULL
      AND created_at >= :created_from
      AND (created_at, id) < (:before_created, :before_id)
    ORDER BY created_at DESC, id DESC
    LIMIT :scan_limit
) AS examined
CROSS JOIN messages AS m ON m.rowid = examined.rid
WHERE (:state IS NULL OR m.state = :state)
  AND (:type IS NULL OR m.type = :type)
  AND (:queue IS NULL OR m.queue = :queue)
LIMIT :limit;

-- name: job_search_scan_state
SELECT m.id, m.queue, m.state, m.body, m.content_type, m.attempts, m.priority, m.created_at,
       m.available_at, m.lease_expires_at, m.last_error, m.origin_queue, m.origin_id,
       m.finished_at, m.type, m.max_attempts, m.result, m.progress, m.progress_note,
       m.started_at, m.idempotency_key, m.correlation_id, m.batch_id, m.cancel_requested
FROM (
    SELECT rowid AS rid, type AS t FROM messages
    WHERE type IS NOT NULL
      AND state = :state
      AND created_at >= :created_from
      AND (created_at, id) < (:before_created, :before_id)
    ORDER BY created_at DESC, id DESC
    LIMIT :scan_limit
) AS examined
CROSS JOIN messages AS m ON m.rowid = examined.rid
WHERE (:state IS NULL OR m.state = :state)
  AND (:type IS NULL OR examined.t = :type)
  AND (:queue IS NULL OR m.queue = :queue)
LIMIT :limit;

-- name: job_search_scan_type
SELECT m.id, m.queue, m.state, m.body, m.content_type, m.attempts, m.priority, m.created_at,
       m.available_at, m.lease_expires_at, m.last_error, m.origin_queue, m.origin_id,
       m.finished_at, m.type, m.max_attempts, m.result, m.progress, m.progress_note,
       m.started_at, m.idempotency_key, m.correlation_id, m.batch_id, m.cancel_requested
FROM (
    SELECT rowid AS rid FROM messages
    WHERE type IS NOT NULL
      AND type = :type
      AND created_at >= :created_from
      AND (created_at, id) < (:before_created, :before_id)
    ORDER BY created_at DESC, id DESC
    LIMIT :scan_limit
) AS examined
CROSS JOIN messages AS m ON m.rowid = examined.rid
WHERE (:state IS NULL OR m.state = :state)
  AND (:type IS NULL OR m.type = :type)
  AND (:queue IS NULL OR m.queue = :queue)
LIMIT :limit;

-- name: job_search_scan_end
SELECT created_at, id FROM messages
WHERE type IS NOT NULL
  AND created_at >= :created_from
  AND (created_at, id) < (:before_created, :before_id)
ORDER BY created_at DESC, id DESC
LIMIT 1 OFFSET :scan_limit - 1;

-- name: job_search_scan_end_state
SELECT created_at, id FROM messages
WHERE type IS NOT NULL
      AND state = :state
  AND created_at >= :created_from
  AND (created_at, id) < (:before_created, :before_id)
ORDER BY created_at DESC, id DESC
LIMIT 1 OFFSET :scan_limit - 1;

-- name: job_search_scan_end_type
SELECT created_at, id FROM messages
WHERE type IS NOT NULL
      AND type = :type
  AND created_at >= :created_from
  AND (created_at, id) < (:before_created, :before_id)
ORDER BY created_at DESC, id DESC
LIMIT 1 OFFSET :scan_limit - 1;

-- name: job_find
-- Jobs by id, idempotency key, correlation id or batch id (each has its index).
SELECT id, queue, state, body, content_type, attempts, priority, created_at, available_at,
       lease_expires_at, last_error, origin_queue, origin_id, finished_at,
       type, max_attempts, result, progress, progress_note, started_at, idempotency_key,
       correlation_id, batch_id, cancel_requested
FROM messages
WHERE type IS NOT NULL
  AND (id = :key OR idempotency_key = :key OR correlation_id = :key OR batch_id = :key)
  AND (created_at, id) < (:before_created, :before_id)
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: job_batch_list
-- The newest batches with their jobs counted by state, each count from the index on
-- (batch_id, state) and stopped at count_limit: a page reads at most limit x 5 x
-- count_limit entries whatever the batches hold (right after a bulk update, before
-- VACUUM, each entry is also checked in the table).
WITH b AS MATERIALIZED (
    SELECT id, type, total, created_at FROM job_batches
    ORDER BY created_at DESC LIMIT :limit
), s(state) AS (
    VALUES ('ready'), ('leased'), ('completed'), ('failed'), ('cancelled')
)
SELECT b.id AS id, b.type AS type, b.total AS total, b.created_at AS created_at,
       s.state AS state,
       (SELECT count(*) FROM (
            SELECT 1 FROM messages AS m
            WHERE m.batch_id IS NOT NULL AND m.batch_id = b.id AND m.state = s.state
            LIMIT :count_limit) AS counted) AS count
FROM b CROSS JOIN s
ORDER BY b.created_at DESC, b.id;

-- name: job_ahead_count
-- Counted up to a limit (one more than it means "more than").
SELECT count(*) FROM (
SELECT 1 FROM messages
WHERE queue = :queue AND state = 'ready' AND available_at <= :now AND id <> :id
  AND (priority > :priority OR (priority = :priority AND available_at < :available_at))
LIMIT :count_limit) AS ahead;

-- name: job_delete_many
DELETE FROM messages
WHERE type IS NOT NULL AND id IN (SELECT value FROM json_each(:ids))
RETURNING id;

-- name: job_delete_attempts
DELETE FROM job_attempts WHERE job_id IN (SELECT value FROM json_each(:ids));

-- name: job_delete_keys
DELETE FROM idempotency_keys WHERE job_id IN (SELECT value FROM json_each(:ids));

-- name: message_delete_many
DELETE FROM messages
WHERE queue = :queue AND state <> 'leased' AND id IN (SELECT value FROM json_each(:ids));

-- name: stats_add
INSERT INTO stats_minutes (minute, queue, processed, retried, failed, duration_sum,
                           h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13)
SELECT json_extract(r.value, '$[0]'), json_extract(r.value, '$[1]'),
       json_extract(r.value, '$[2]'), json_extract(r.value, '$[3]'),
       json_extract(r.value, '$[4]'), json_extract(r.value, '$[5]'),
       json_extract(r.value, '$[6]'), json_extract(r.value, '$[7]'), json_extract(r.value, '$[8]'), json_extract(r.value, '$[9]'), json_extract(r.value, '$[10]'), json_extract(r.value, '$[11]'), json_extract(r.value, '$[12]'), json_extract(r.value, '$[13]'), json_extract(r.value, '$[14]'), json_extract(r.value, '$[15]'), json_extract(r.value, '$[16]'), json_extract(r.value, '$[17]'), json_extract(r.value, '$[18]'), json_extract(r.value, '$[19]')
FROM json_each(:rows) AS r
WHERE true
ON CONFLICT (minute, queue) DO UPDATE SET
    processed = processed + excluded.processed,
    retried = retried + excluded.retried,
    failed = failed + excluded.failed,
    duration_sum = duration_sum + excluded.duration_sum,
    h0 = h0 + excluded.h0, h1 = h1 + excluded.h1, h2 = h2 + excluded.h2, h3 = h3 + excluded.h3, h4 = h4 + excluded.h4, h5 = h5 + excluded.h5, h6 = h6 + excluded.h6, h7 = h7 + excluded.h7, h8 = h8 + excluded.h8, h9 = h9 + excluded.h9, h10 = h10 + excluded.h10, h11 = h11 + excluded.h11, h12 = h12 + excluded.h12, h13 = h13 + excluded.h13;

-- name: stats_history
-- Minutes summed into buckets of :step seconds (one row per bucket and queue).
SELECT (minute / :step) * :step AS minute, queue, sum(processed) AS processed,
       sum(retried) AS retried, sum(failed) AS failed, sum(duration_sum) AS duration_sum,
       sum(h0) AS h0, sum(h1) AS h1, sum(h2) AS h2, sum(h3) AS h3, sum(h4) AS h4, sum(h5) AS h5, sum(h6) AS h6, sum(h7) AS h7, sum(h8) AS h8, sum(h9) AS h9, sum(h10) AS h10, sum(h11) AS h11, sum(h12) AS h12, sum(h13) AS h13
FROM stats_minutes
WHERE minute >= :since AND (:queue IS NULL OR queue = :queue)
GROUP BY (minute / :step) * :step, queue
ORDER BY 1, 2;

-- name: stats_prune
DELETE FROM stats_minutes WHERE minute < :before;

-- name: queue_rows
SELECT name, paused, settings FROM queues
WHERE (:queue IS NULL OR name = :queue)
ORDER BY name;

-- name: queue_depths
-- Per queue, each count is bounded: it reads at most :count_limit entries of one state's
-- index for that queue (a count equal to the limit means "at least"), so a page costs
-- the same with a thousand jobs or a million. Ready messages are read in creation order
-- (messages_ready_created_idx): the first :count_limit give ready now, delayed and the
-- oldest ready time, in one pass (a JSON array, read back by the outer select; the time
-- as text with every digit, as JSON would round it). The queues: every stored queue
-- row, and any queue holding messages without one, found by skipping through the
-- indexes a queue at a time. (`state <> 'ready'` is written out so SQLite may use the
-- by-state index, whose condition it is, and count from it alone.)
WITH RECURSIVE ready_queues(queue) AS (
    SELECT (SELECT min(queue) FROM messages WHERE state = 'ready')
    UNION ALL
    SELECT (SELECT min(m.queue) FROM messages AS m
            WHERE m.state = 'ready' AND m.queue > r.queue)
    FROM ready_queues AS r WHERE r.queue IS NOT NULL
), other_queues(queue) AS (
    SELECT (SELECT min(queue) FROM messages WHERE state <> 'ready')
    UNION ALL
    SELECT (SELECT min(m.queue) FROM messages AS m
            WHERE m.state <> 'ready' AND m.queue > o.queue)
    FROM other_queues AS o WHERE o.queue IS NOT NULL
), names(name) AS (
    SELECT name FROM queues WHERE (:queue IS NULL OR name = :queue)
    UNION SELECT queue FROM ready_queues
          WHERE queue IS NOT NULL AND (:queue IS NULL OR queue = :queue)
    UNION SELECT queue FROM other_queues
          WHERE queue IS NOT NULL AND (:queue IS NULL OR queue = :queue)
), counted AS MATERIALIZED (
    SELECT n.name AS queue,
           (SELECT json_array(sum(w.available_at <= :now), sum(w.available_at > :now),
                              CASE WHEN min(w.available_at) <= :now
                                   THEN printf('%!.17g', min(w.available_at)) END,
                              count(*))
            FROM (SELECT available_at FROM messages
                  WHERE queue = n.name AND state = 'ready'
                  ORDER BY created_at LIMIT :count_limit) AS w) AS ready_window,
           (SELECT count(*) FROM (SELECT 1 FROM messages
                                  WHERE queue = n.name AND state <> 'ready'
                                    AND state = 'leased'
                                  LIMIT :count_limit)) AS leased,
           (SELECT count(*) FROM (SELECT 1 FROM messages
                                  WHERE queue = n.name AND state <> 'ready'
                                    AND state = 'failed'
                                  LIMIT :count_limit)) AS failed
    FROM names AS n
)
SELECT queue, coalesce(json_extract(ready_window, '$[0]'), 0) AS ready,
       coalesce(json_extract(ready_window, '$[1]'), 0) AS delayed,
       json_extract(ready_window, '$[2]') AS oldest,
       json_extract(ready_window, '$[3]') AS ready_seen, leased, failed
FROM counted;

-- Documents (the namespaced document store) ---------------------------------------------

-- name: doc_put_many
-- Keys and values come as two JSON arrays of the same length; json_each's `key` is the
-- position in the array. `WHERE true` tells SQLite's parser the ON CONFLICT is an upsert.
INSERT INTO documents (namespace, key, value, updated_at)
SELECT :namespace, k.value, v.value, :now
FROM json_each(:keys) AS k JOIN json_each(:doc_values) AS v ON v.key = k.key
WHERE true
ON CONFLICT (namespace, key) DO UPDATE
SET value = excluded.value, updated_at = excluded.updated_at;

-- name: doc_insert
-- Only if absent and, with a limit, while the namespace is under it. Writers are
-- serialized (BEGIN IMMEDIATE), so the count cannot move under this statement.
INSERT INTO documents (namespace, key, value, updated_at)
SELECT :namespace, :key, :value, :now
WHERE :max_count IS NULL
   OR (SELECT count(*) FROM documents WHERE namespace = :namespace) < :max_count
ON CONFLICT (namespace, key) DO NOTHING
RETURNING key;

-- name: doc_get
SELECT namespace, key, value, updated_at FROM documents
WHERE namespace = :namespace AND key = :key;

-- name: doc_list
SELECT namespace, key, value, updated_at FROM documents
WHERE namespace = :namespace
  AND (:after IS NULL OR key > :after)
  AND (:prefix IS NULL OR substr(key, 1, length(:prefix)) = :prefix)
ORDER BY key
LIMIT :limit;

-- name: doc_delete
DELETE FROM documents WHERE namespace = :namespace AND key = :key RETURNING key;

-- name: doc_count
SELECT count(*) FROM documents WHERE namespace = :namespace;

-- name: doc_namespaces
SELECT namespace, count(*) AS count FROM documents GROUP BY namespace ORDER BY namespace;

-- name: job_batch_raise_total
-- A batch that grows while it runs (a crawl discovering pages): the total only rises.
UPDATE job_batches SET total = max(total, :total) WHERE id = :id;

-- Flow control ---------------------------------------------------------------------------
-- :limits is a JSON array of [family, amount, period, burst]; period 0 is a concurrency
-- limit (at most `amount` leased jobs per bucket), else a token bucket. A bucket is
-- `family|key`; a job's buckets are the JSON array in messages.flow_keys.

-- name: message_claim_limited_fast
-- The read of a claim of a queue whose jobs carry limit buckets when no limit can be
-- near: no concurrency limit that the leased jobs of the queue (all of them, whatever
-- their keys) could bring within `limit` of its amount, no rate bucket holding fewer
-- than `limit` tokens or held, no limit allowing fewer than `limit` jobs even idle (a
-- tight bucket, a `small` limit of message_claim_limited). Then no bucket can keep any
-- of the first `limit` jobs, and this is the plain claim's read (message_claim_many),
-- with their flow_keys. Else (or paused) it reads nothing: the caller runs
-- message_claim_limited. Its tests sit in the LIMIT, evaluated once before the scan
-- (see message_claim_many), and need none of the temporary tables of
-- message_claim_limited, whose setting up alone costs a claim of 100 jobs about a
-- tenth more than the plain claim.
SELECT id, :queue AS queue, body, content_type, attempts + 1 AS attempts, created_at,
       priority, :lease_id AS lease_id, type, max_attempts, correlation_id, flow_keys,
       trace_context
FROM messages
WHERE queue = :queue AND state = 'ready' AND available_at <= :now
  AND (:types IS NULL OR type IN (SELECT value FROM json_each(:types)))
ORDER BY priority DESC, available_at, id
LIMIT CASE
    WHEN EXISTS (SELECT 1 FROM queues WHERE name = :queue AND paused = 1)
      OR EXISTS (SELECT 1 FROM json_each(:limits) AS l
                 WHERE CASE WHEN l.value ->> 2 = 0 THEN l.value ->> 1
                            ELSE CAST(l.value ->> 3 AS INTEGER) END < :limit)
      OR EXISTS (SELECT 1 FROM json_each(:limits) AS l
                 WHERE l.value ->> 2 = 0
                   AND l.value ->> 1 - :limit < (SELECT count(*) FROM messages
                                                 WHERE queue = :queue AND state = 'leased'))
      OR EXISTS (SELECT 1
                 FROM json_each(:limits) AS l
                 JOIN flow_buckets AS b ON b.family = l.value ->> 0
                 WHERE l.value ->> 2 > 0
                   AND (b.held_until > :now
                        OR min(l.value ->> 3, b.tokens + max(:now - b.updated_at, 0)
                                                 * (l.value ->> 1) / (l.value ->> 2))
                           < :limit))
    THEN 0 ELSE :limit END;

-- name: message_claim_limited
-- The read of a claim of a queue whose jobs carry limit buckets (see the PostgreSQL
-- statement of the same name; here the write lock of the transaction serializes
-- claims); message_claim_lease leases what it read, flow_spend spends the tokens.
-- Only tight buckets (allowing fewer jobs than this claim takes) and those of small
-- limits are counted job by job: the first `limit` claimable jobs are taken as the
-- plain claim takes them unless one of these buckets would get more of them than it
-- allows; only then are `scan` jobs read and ranked per bucket. Jobs needing a bucket
-- that allows nothing are skipped by the scan.
--
-- SQLite evaluates an uncorrelated subquery in a WHERE once, but still reads every row
-- of the scan looking for rows that pass it (every ready job of the queue, on every
-- claim, when none do): each "only when" below is a LIMIT of 0, never a WHERE term.
WITH limits AS MATERIALIZED (
    SELECT value ->> 0 AS family, value ->> 1 AS amount, value ->> 2 AS period,
           value ->> 3 AS burst,
           CASE WHEN value ->> 2 = 0 THEN value ->> 1
                ELSE CAST(value ->> 3 AS INTEGER) END AS idle_allows
    FROM json_each(:limits)
), running AS MATERIALIZED (
    -- Not counted when no concurrency limit can be near (as on PostgreSQL).
    SELECT j.value AS bucket, count(*) AS n
    FROM (SELECT flow_keys FROM messages
          WHERE queue = :queue AND state = 'leased' AND flow_keys IS NOT NULL
          LIMIT CASE WHEN EXISTS (
                  SELECT 1 FROM limits
                  WHERE period = 0
                    AND amount - :limit < (SELECT count(*) FROM messages
                                           WHERE queue = :queue AND state = 'leased'))
                THEN -1 ELSE 0 END) AS m,
         json_each(m.flow_keys) AS j
    GROUP BY j.value
), tight AS MATERIALIZED (
    SELECT r.bucket AS bucket, l.amount - r.n AS allowed
    FROM running AS r
    JOIN limits AS l ON l.period = 0 AND l.family = substr(r.bucket, 1, instr(r.bucket, '|') - 1)
    WHERE l.amount - r.n < :limit
    UNION ALL
    SELECT bucket, CASE WHEN held_until > :now THEN 0 ELSE CAST(tokens AS INTEGER) END
    FROM (SELECT b.family || '|' || b.key AS bucket, b.held_until AS held_until,
                 min(l.burst, b.tokens + max(:now - b.updated_at, 0) * l.amount / l.period)
                     AS tokens
          FROM flow_buckets AS b JOIN limits AS l ON l.family = b.family AND l.period > 0)
    WHERE tokens < :limit OR held_until > :now
), blocked AS MATERIALIZED (
    SELECT bucket FROM tight WHERE allowed < 1
), small AS MATERIALIZED (
    SELECT family, idle_allows FROM limits WHERE idle_allows < :limit
), head AS MATERIALIZED (
    -- The first `limit` claimable jobs, as the plain claim reads them.
    SELECT id, priority, available_at, flow_keys
    FROM messages
    WHERE queue = :queue AND state = 'ready' AND available_at <= :now
      AND (:types IS NULL OR type IN (SELECT value FROM json_each(:types)))
      AND (flow_keys IS NULL OR NOT EXISTS (SELECT 1 FROM blocked)
           OR NOT EXISTS (SELECT 1 FROM json_each(messages.flow_keys) AS j
                          WHERE j.value IN (SELECT bucket FROM blocked)))
    ORDER BY priority DESC, available_at, id
    LIMIT CASE WHEN EXISTS (SELECT 1 FROM queues WHERE name = :queue AND paused = 1)
               THEN 0 ELSE :limit END
), crowded AS MATERIALIZED (
    -- Whether a tight bucket would get more of the head's jobs than it allows. A CASE,
    -- not an AND: SQLite evaluates both sides of an AND outside a WHERE.
    SELECT CASE WHEN EXISTS (SELECT 1 FROM tight) OR EXISTS (SELECT 1 FROM small)
                THEN EXISTS (
        SELECT 1
        FROM (SELECT count(*) AS n, min(coalesce(t.allowed, s.idle_allows)) AS allowed
              FROM head AS c, json_each(c.flow_keys) AS j
              LEFT JOIN tight AS t ON t.bucket = j.value
              LEFT JOIN small AS s ON s.family = substr(j.value, 1, instr(j.value, '|') - 1)
              WHERE t.bucket IS NOT NULL OR s.family IS NOT NULL
              GROUP BY j.value)
        WHERE n > allowed) ELSE 0 END AS yes
), wide AS MATERIALIZED (
    -- Only then: `scan` jobs, ranked per tight bucket (not read otherwise).
    SELECT id, priority, available_at, flow_keys
    FROM messages
    WHERE queue = :queue AND state = 'ready' AND available_at <= :now
      AND (:types IS NULL OR type IN (SELECT value FROM json_each(:types)))
      AND (flow_keys IS NULL
           OR NOT EXISTS (SELECT 1 FROM json_each(messages.flow_keys) AS j
                          WHERE j.value IN (SELECT bucket FROM blocked)))
    ORDER BY priority DESC, available_at, id
    LIMIT CASE WHEN (SELECT yes FROM crowded) THEN :scan ELSE 0 END
), over AS MATERIALIZED (
    -- Jobs beyond what one of their tight buckets allows.
    SELECT id
    FROM (SELECT c.id AS id, coalesce(t.allowed, s.idle_allows) AS allowed,
                 row_number() OVER (PARTITION BY j.value
                                    ORDER BY c.priority DESC, c.available_at, c.id) AS rank
          FROM wide AS c, json_each(c.flow_keys) AS j
          LEFT JOIN tight AS t ON t.bucket = j.value
          LEFT JOIN small AS s ON s.family = substr(j.value, 1, instr(j.value, '|') - 1)
          WHERE t.bucket IS NOT NULL OR s.family IS NOT NULL)
    WHERE rank > allowed
), chosen AS (
    SELECT id FROM head WHERE NOT (SELECT yes FROM crowded)
    UNION ALL
    SELECT id
    FROM (SELECT id FROM wide WHERE id NOT IN (SELECT id FROM over)
          ORDER BY priority DESC, available_at, id
          LIMIT :limit)
)
SELECT id, :queue AS queue, body, content_type, attempts + 1 AS attempts, created_at,
       priority, :lease_id AS lease_id, type, max_attempts, correlation_id, flow_keys,
       trace_context
FROM messages
WHERE id IN (SELECT id FROM chosen);

-- name: flow_spend
-- The tokens the jobs just claimed spent, one row per rate bucket: its tokens refilled
-- up to now, less one per job. :spent is [[bucket, jobs], ...], counted by the caller
-- from the claimed rows' flow_keys (the messages are not read again). One statement
-- per claim that took jobs with rate buckets.
WITH limits AS (
    SELECT value ->> 0 AS family, value ->> 1 AS amount, value ->> 2 AS period,
           value ->> 3 AS burst
    FROM json_each(:limits)
    WHERE value ->> 2 > 0
), spent AS (
    SELECT substr(value ->> 0, 1, instr(value ->> 0, '|') - 1) AS family,
           substr(value ->> 0, instr(value ->> 0, '|') + 1) AS key, value ->> 1 AS n
    FROM json_each(:spent)
)
INSERT INTO flow_buckets AS b (family, key, tokens, updated_at)
SELECT s.family, s.key,
       coalesce(min(l.burst, f.tokens + max(:now - f.updated_at, 0) * l.amount / l.period),
                l.burst) - s.n,
       :now
FROM spent AS s
JOIN limits AS l ON l.family = s.family
LEFT JOIN flow_buckets AS f ON f.family = s.family AND f.key = s.key
WHERE true
ON CONFLICT (family, key) DO UPDATE
SET tokens = excluded.tokens, updated_at = max(b.updated_at, excluded.updated_at);

-- name: flow_ready_info
-- queue_ready_info for a queue with limits whose claim took nothing: nothing counts as
-- ready now; the next time to look is the next delayed job, the end of the earliest
-- hold or token wait, or (a full concurrency limit) a short poll.
WITH limits AS (
    SELECT value ->> 0 AS family, value ->> 1 AS amount, value ->> 2 AS period,
           value ->> 3 AS burst
    FROM json_each(:limits)
), running AS (
    SELECT j.value AS bucket, count(*) AS n
    FROM messages AS m, json_each(m.flow_keys) AS j
    WHERE m.queue = :queue AND m.state = 'leased' AND m.flow_keys IS NOT NULL
    GROUP BY j.value
), rates AS (
    SELECT min(l.burst, b.tokens + max(:now - b.updated_at, 0) * l.amount / l.period) AS tokens,
           b.held_until, l.amount, l.period
    FROM flow_buckets AS b JOIN limits AS l ON l.family = b.family AND l.period > 0
)
SELECT 0 AS ready_count, NULL AS oldest_available_at,
       (SELECT min(t) FROM (
            SELECT min(available_at) AS t FROM messages
            WHERE queue = :queue AND state = 'ready' AND available_at > :now
              AND (:types IS NULL OR type IN (SELECT value FROM json_each(:types)))
            UNION ALL
            SELECT min(max(coalesce(held_until, 0), :now + max(1 - tokens, 0) * period / amount))
            FROM rates WHERE tokens < 1 OR held_until > :now
            UNION ALL
            SELECT :now + :concurrency_poll
            WHERE EXISTS (SELECT 1 FROM running AS r
                          JOIN limits AS l ON l.period = 0
                           AND l.family = substr(r.bucket, 1, instr(r.bucket, '|') - 1)
                          WHERE r.n >= l.amount))) AS next_available_at,
       coalesce((SELECT paused FROM queues WHERE name = :queue), 0) AS paused,
       :now AS now;

-- name: flow_hold
INSERT INTO flow_buckets AS b (family, key, tokens, updated_at, held_until)
SELECT substr(value, 1, instr(value, '|') - 1), substr(value, instr(value, '|') + 1), 0, :now,
       :now + :seconds
FROM json_each(:buckets) WHERE true
ON CONFLICT (family, key) DO UPDATE
SET held_until = max(coalesce(b.held_until, 0), excluded.held_until);

-- name: flow_stats
WITH limits AS (
    SELECT f.value AS family, a.value AS amount, p.value AS period, b.value AS burst
    FROM json_each(:families) AS f
    JOIN json_each(:amounts) AS a ON a.key = f.key
    JOIN json_each(:periods) AS p ON p.key = f.key
    JOIN json_each(:bursts) AS b ON b.key = f.key
), jobs AS MATERIALIZED (
    SELECT m.state, m.available_at, m.started_at, j.value AS bucket,
           substr(j.value, 1, instr(j.value, '|') - 1) AS family
    FROM messages AS m, json_each(m.flow_keys) AS j
    WHERE m.flow_keys IS NOT NULL
      AND (m.state IN ('ready', 'leased') OR m.started_at > :now - :window)
), running AS (
    SELECT bucket, count(*) AS n FROM jobs WHERE state = 'leased' GROUP BY bucket
), rates AS (
    SELECT b.family || '|' || b.key AS bucket,
           min(l.burst, b.tokens + max(:now - b.updated_at, 0) * l.amount / l.period) AS tokens,
           b.held_until, l.amount, l.period
    FROM flow_buckets AS b JOIN limits AS l ON l.family = b.family AND l.period > 0
), blocked AS (
    SELECT r.bucket, NULL AS until FROM running AS r
    JOIN limits AS l ON l.period = 0 AND l.family = substr(r.bucket, 1, instr(r.bucket, '|') - 1)
    WHERE r.n >= l.amount
    UNION ALL
    SELECT bucket, max(coalesce(held_until, 0), :now + max(1 - tokens, 0) * period / amount)
    FROM rates WHERE tokens < 1 OR held_until > :now
)
SELECT l.family AS family,
       (SELECT count(DISTINCT j.bucket) FROM jobs AS j
        WHERE j.family = l.family AND j.state IN ('ready', 'leased')) AS keys,
       (SELECT count(*) FROM jobs AS j WHERE j.family = l.family AND j.state = 'leased')
           AS running,
       (SELECT count(*) FROM jobs AS j
        WHERE j.family = l.family AND j.state = 'ready' AND j.available_at <= :now
          AND j.bucket IN (SELECT bucket FROM blocked)) AS waiting,
       (SELECT count(*) FROM jobs AS j
        WHERE j.family = l.family AND j.started_at > :now - :window) AS started,
       (SELECT min(b.until) FROM blocked AS b
        WHERE substr(b.bucket, 1, instr(b.bucket, '|') - 1) = l.family) AS held_until
FROM limits AS l
ORDER BY l.family;

-- name: flow_job_hold
WITH limits AS (
    SELECT f.value AS family, a.value AS amount, p.value AS period, b.value AS burst
    FROM json_each(:families) AS f
    JOIN json_each(:amounts) AS a ON a.key = f.key
    JOIN json_each(:periods) AS p ON p.key = f.key
    JOIN json_each(:bursts) AS b ON b.key = f.key
), job AS (
    SELECT j.value AS bucket, substr(j.value, 1, instr(j.value, '|') - 1) AS family, m.queue
    FROM messages AS m, json_each(m.flow_keys) AS j
    WHERE m.id = :id
)
SELECT j.bucket AS bucket, NULL AS until
FROM job AS j JOIN limits AS l ON l.family = j.family AND l.period = 0
WHERE (SELECT count(*) FROM messages AS m, json_each(m.flow_keys) AS k
       WHERE m.queue = j.queue AND m.state = 'leased' AND k.value = j.bucket) >= l.amount
UNION ALL
SELECT j.bucket,
       max(coalesce(b.held_until, 0),
           :now + max(1 - min(l.burst, b.tokens + max(:now - b.updated_at, 0)
                                                  * l.amount / l.period), 0)
                  * l.period / l.amount)
FROM job AS j JOIN limits AS l ON l.family = j.family AND l.period > 0
JOIN flow_buckets AS b ON b.family || '|' || b.key = j.bucket
WHERE b.held_until > :now
   OR min(l.burst, b.tokens + max(:now - b.updated_at, 0) * l.amount / l.period) < 1;
