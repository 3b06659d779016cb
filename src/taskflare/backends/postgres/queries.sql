-- Every statement the PostgreSQL backend runs, by name. Parameters are %(name)s.
-- {schema} is replaced by the app's quoted schema and {now} by the server's clock in
-- epoch seconds, when the backend loads this file: every table is schema-qualified,
-- so a statement also runs unchanged on a caller's own connection (transactional
-- enqueue), whatever that connection's search_path.
--
-- Outcomes that make work ready (enqueue, retry, release, resume, dead-letter copy)
-- call pg_notify in the same statement, so the notification is sent if and only if
-- the change commits.

-- name: message_enqueue_many
-- One statement stores a whole batch. ON CONFLICT makes a retried enqueue (after a
-- connection lost between commit and reply) a no-op instead of an error.
WITH inserted AS (
    INSERT INTO {schema}.messages (id, queue, state, body, content_type, priority, attempts,
                                   created_at, available_at, type, max_attempts,
                                   idempotency_key, correlation_id, batch_id)
    SELECT m.id, m.queue, 'ready', m.body, m.content_type, m.priority, 0,
           {now}, {now} + m.delay, m.type, m.max_attempts, m.idempotency_key,
           m.correlation_id, m.batch_id
    FROM unnest(%(ids)s::text[], %(queues)s::text[], %(bodies)s::bytea[],
                %(content_types)s::text[], %(priorities)s::integer[],
                %(delays)s::float8[], %(types)s::text[], %(max_attempts)s::integer[],
                %(idempotency_keys)s::text[], %(correlation_ids)s::text[],
                %(batch_ids)s::text[])
         AS m(id, queue, body, content_type, priority, delay, type, max_attempts,
              idempotency_key, correlation_id, batch_id)
    ON CONFLICT (id) DO NOTHING
    RETURNING queue
)
SELECT count(pg_notify(%(channel)s, q.queue))
FROM (SELECT DISTINCT queue FROM inserted) AS q;

-- name: message_claim_many
-- One statement claims a whole batch. SKIP LOCKED lets concurrent workers take
-- disjoint batches without waiting on each other; the candidate set is materialized
-- once, and the batch is taken only when it is full or its oldest message has waited
-- max_wait (otherwise the row locks are dropped at the end of the statement).
-- When nothing is claimed, the statement instead returns one row describing the queue
-- (the columns of queue_ready_info), so an idle worker needs one query per wake-up.
WITH candidates AS MATERIALIZED (
    SELECT id, available_at
    FROM {schema}.messages
    WHERE queue = %(queue)s AND state = 'ready' AND available_at <= {now}
      AND NOT EXISTS (SELECT 1 FROM {schema}.queues WHERE name = %(queue)s AND paused)
    ORDER BY priority DESC, available_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), async_commit AS MATERIALIZED (
    -- A claim need not wait for its WAL flush: if the server crashes before it is
    -- durable, its messages are simply ready again and delivered again (at least once).
    -- Sends, outcomes and everything else keep synchronous_commit as configured.
    SELECT set_config('synchronous_commit', 'off', true) AS setting
), claimed AS (
    UPDATE {schema}.messages AS m
    SET state = 'leased',
        attempts = m.attempts + 1,
        lease_id = %(lease_id)s,
        lease_owner = %(owner)s,
        lease_expires_at = {now} + %(visibility_timeout)s,
        started_at = {now}
    -- = ANY(ARRAY(...)): an index lookup per candidate; `IN (SELECT ... FROM a CTE)`
    -- gets no row estimate and is planned as a hash join over the whole table.
    WHERE m.id = ANY(ARRAY(SELECT id FROM candidates))
      AND (SELECT setting FROM async_commit) = 'off'
      AND ((SELECT count(*) FROM candidates) >= %(min_count)s
           OR (SELECT min(available_at) FROM candidates) <= {now} - %(max_wait)s)
    RETURNING m.id, m.queue, m.body, m.content_type, m.attempts, m.created_at, m.priority,
              m.lease_id, m.type, m.max_attempts, m.correlation_id
)
SELECT id, queue, body, content_type, attempts, created_at, priority, lease_id,
       type, max_attempts, correlation_id,
       NULL::bigint, NULL::float8, NULL::float8, NULL::boolean, NULL::float8
FROM claimed
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    (SELECT count(*) FROM (SELECT 1 FROM {schema}.messages
                           WHERE queue = %(queue)s AND state = 'ready' AND available_at <= {now}
                           LIMIT %(limit)s) AS r),
    (SELECT min(available_at) FROM {schema}.messages
     WHERE queue = %(queue)s AND state = 'ready' AND available_at <= {now}),
    (SELECT min(available_at) FROM {schema}.messages
     WHERE queue = %(queue)s AND state = 'ready' AND available_at > {now}),
    coalesce((SELECT paused FROM {schema}.queues WHERE name = %(queue)s), false),
    {now}
WHERE NOT EXISTS (SELECT 1 FROM claimed);

-- name: message_settle_many
-- Acks, retries, failures, job completions and cancellations of many batches, and the
-- jobs' attempt rows, in one statement (one transaction). Every outcome only applies
-- while its lease is still held. Failed messages that name a dead-letter queue are
-- copied there, body and content type unchanged.
WITH acked AS (
    DELETE FROM {schema}.messages AS m
    USING unnest(%(ack_ids)s::text[], %(ack_leases)s::text[]) AS a(id, lease_id)
    WHERE m.id = ANY(%(ack_ids)s::text[])  -- primary-key lookups, never a scan
      AND m.id = a.id AND m.lease_id = a.lease_id AND m.state = 'leased'
    RETURNING m.id
), retried AS (
    UPDATE {schema}.messages AS m
    SET state = 'ready',
        available_at = {now} + r.delay,
        lease_id = NULL,
        lease_owner = NULL,
        lease_expires_at = NULL,
        last_error = coalesce(r.error, m.last_error)
    FROM unnest(%(retry_ids)s::text[], %(retry_leases)s::text[], %(retry_delays)s::float8[],
                %(retry_errors)s::text[]) AS r(id, lease_id, delay, error)
    WHERE m.id = ANY(%(retry_ids)s::text[])
      AND m.id = r.id AND m.lease_id = r.lease_id AND m.state = 'leased'
    RETURNING m.queue
), failed AS (
    UPDATE {schema}.messages AS m
    SET state = 'failed',
        lease_id = NULL,
        lease_owner = NULL,
        lease_expires_at = NULL,
        last_error = coalesce(f.error, m.last_error),
        finished_at = {now}
    FROM unnest(%(fail_ids)s::text[], %(fail_leases)s::text[], %(fail_errors)s::text[],
                %(dlq_ids)s::text[], %(dlq_queues)s::text[])
         AS f(id, lease_id, error, dlq_id, dlq_queue)
    WHERE m.id = ANY(%(fail_ids)s::text[])
      AND m.id = f.id AND m.lease_id = f.lease_id AND m.state = 'leased'
    RETURNING m.id, m.queue, m.body, m.content_type, m.priority, f.dlq_id, f.dlq_queue
), dead_lettered AS (
    INSERT INTO {schema}.messages (id, queue, state, body, content_type, priority, attempts,
                                   created_at, available_at, origin_queue, origin_id)
    SELECT dlq_id, dlq_queue, 'ready', body, content_type, priority, 0, {now}, {now}, queue, id
    FROM failed
    WHERE dlq_id IS NOT NULL AND dlq_queue IS NOT NULL
    ON CONFLICT (id) DO NOTHING
    RETURNING queue
), completed AS (
    UPDATE {schema}.messages AS m
    SET state = 'completed',
        result = c.result,
        progress = 1.0,
        last_error = NULL,
        lease_id = NULL,
        lease_owner = NULL,
        lease_expires_at = NULL,
        finished_at = {now}
    FROM unnest(%(complete_ids)s::text[], %(complete_leases)s::text[],
                %(complete_results)s::bytea[]) AS c(id, lease_id, result)
    WHERE m.id = ANY(%(complete_ids)s::text[])
      AND m.id = c.id AND m.lease_id = c.lease_id AND m.state = 'leased'
    RETURNING m.id
), cancelled AS (
    UPDATE {schema}.messages AS m
    SET state = 'cancelled',
        lease_id = NULL,
        lease_owner = NULL,
        lease_expires_at = NULL,
        last_error = c.reason,
        finished_at = {now}
    FROM unnest(%(cancel_ids)s::text[], %(cancel_leases)s::text[], %(cancel_reasons)s::text[])
         AS c(id, lease_id, reason)
    WHERE m.id = ANY(%(cancel_ids)s::text[])
      AND m.id = c.id AND m.lease_id = c.lease_id AND m.state = 'leased'
    RETURNING m.id
), recorded AS (
    INSERT INTO {schema}.job_attempts (job_id, attempt, worker_id, started_at, finished_at,
                                       outcome, error, traceback)
    SELECT * FROM unnest(%(attempt_jobs)s::text[], %(attempt_numbers)s::integer[],
                         %(attempt_workers)s::text[], %(attempt_starts)s::float8[],
                         %(attempt_ends)s::float8[], %(attempt_outcomes)s::text[],
                         %(attempt_errors)s::text[], %(attempt_tracebacks)s::text[])
), notified AS (
    SELECT pg_notify(%(channel)s, q.queue)
    FROM (SELECT queue FROM retried UNION SELECT queue FROM dead_lettered) AS q
)
SELECT (SELECT count(*) FROM acked),
       (SELECT count(*) FROM retried),
       (SELECT count(*) FROM failed),
       (SELECT count(*) FROM dead_lettered),
       (SELECT count(*) FROM notified),
       (SELECT count(*) FROM completed),
       (SELECT count(*) FROM cancelled);

-- name: message_release_many
WITH released AS (
    UPDATE {schema}.messages AS m
    SET state = 'ready',
        attempts = greatest(m.attempts - 1, 0),
        lease_id = NULL,
        lease_owner = NULL,
        lease_expires_at = NULL
    FROM unnest(%(ids)s::text[], %(leases)s::text[]) AS r(id, lease_id)
    WHERE m.id = ANY(%(ids)s::text[])
      AND m.id = r.id AND m.lease_id = r.lease_id AND m.state = 'leased'
    RETURNING m.queue
)
SELECT (SELECT count(*) FROM released),
       (SELECT count(pg_notify(%(channel)s, q.queue))
        FROM (SELECT DISTINCT queue FROM released) AS q);

-- name: lease_extend_many
UPDATE {schema}.messages
SET lease_expires_at = {now} + %(visibility_timeout)s
WHERE state = 'leased' AND lease_id = ANY(%(lease_ids)s::text[]);

-- name: lease_rescue_expired
-- Expired leases are locked (SKIP LOCKED: two rescuers take disjoint rows); a job's
-- history gets the attempt its worker never finished ('lost'); those with attempts
-- left (a job's own max_attempts, else the queue's) are requeued, and the exhausted
-- ones are returned, still locked, for the caller to fail in the same transaction.
WITH expired AS MATERIALIZED (
    SELECT id, lease_id, lease_owner, started_at, attempts, type,
           attempts >= coalesce(max_attempts, %(max_attempts)s) AS exhausted
    FROM {schema}.messages
    WHERE queue = %(queue)s AND state = 'leased' AND lease_expires_at < {now}
    FOR UPDATE SKIP LOCKED
), lost AS (
    INSERT INTO {schema}.job_attempts (job_id, attempt, worker_id, started_at, finished_at,
                                       outcome, error)
    SELECT id, attempts, lease_owner, started_at, {now}, 'lost',
           'lease expired: the worker holding this job stopped or lost contact'
    FROM expired
    WHERE type IS NOT NULL
), requeued AS (
    UPDATE {schema}.messages AS m
    SET state = 'ready',
        available_at = {now},
        lease_id = NULL,
        lease_owner = NULL,
        lease_expires_at = NULL,
        last_error = 'lease expired: the worker holding this message stopped or lost contact'
    WHERE m.id = ANY(ARRAY(SELECT id FROM expired WHERE NOT exhausted))
    RETURNING m.queue
), notified AS (
    SELECT pg_notify(%(channel)s, q.queue) FROM (SELECT DISTINCT queue FROM requeued) AS q
)
SELECT NULL, NULL, (SELECT count(*) FROM requeued), (SELECT count(*) FROM notified)
UNION ALL
SELECT id, lease_id, NULL, NULL FROM expired WHERE exhausted;

-- name: message_get
SELECT id, queue, state, body, content_type, attempts, priority, created_at, available_at,
       lease_expires_at, last_error, origin_queue, origin_id, finished_at,
       type, max_attempts, result, progress, progress_note, started_at, idempotency_key,
       correlation_id, batch_id, cancel_requested
FROM {schema}.messages WHERE id = %(id)s;

-- name: message_list
SELECT id, queue, state, body, content_type, attempts, priority, created_at, available_at,
       lease_expires_at, last_error, origin_queue, origin_id, finished_at,
       type, max_attempts, result, progress, progress_note, started_at, idempotency_key,
       correlation_id, batch_id, cancel_requested
FROM {schema}.messages
WHERE queue = %(queue)s AND (%(state)s::text IS NULL OR state = %(state)s::text)
ORDER BY created_at, id
LIMIT %(limit)s;

-- name: queue_ready_info
SELECT
    (SELECT count(*) FROM (SELECT 1 FROM {schema}.messages
                           WHERE queue = %(queue)s AND state = 'ready' AND available_at <= {now}
                           LIMIT %(limit)s) AS r) AS ready_count,
    (SELECT min(available_at) FROM {schema}.messages
     WHERE queue = %(queue)s AND state = 'ready' AND available_at <= {now}) AS oldest,
    (SELECT min(available_at) FROM {schema}.messages
     WHERE queue = %(queue)s AND state = 'ready' AND available_at > {now}) AS next_at,
    coalesce((SELECT paused FROM {schema}.queues WHERE name = %(queue)s), false) AS paused,
    {now} AS now;

-- name: queue_declare_many
INSERT INTO {schema}.queues (name, paused, settings, created_at, updated_at)
SELECT q.name, false, q.settings, {now}, {now}
FROM unnest(%(names)s::text[], %(settings)s::text[]) AS q(name, settings)
ON CONFLICT (name) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at;

-- name: queue_pause
-- Resuming notifies, so idle workers claim the queue's backlog at once.
WITH changed AS (
    INSERT INTO {schema}.queues (name, paused, settings, created_at, updated_at)
    VALUES (%(name)s, %(paused)s, '{}', {now}, {now})
    ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at
    RETURNING name, paused
)
SELECT count(pg_notify(%(channel)s, name)) FROM changed WHERE NOT paused;

-- name: queue_counts
SELECT q.name, coalesce(q.paused, false), m.state, count(m.id),
       min(CASE WHEN m.state = 'ready' THEN m.available_at END), q.settings
FROM (SELECT name, paused, settings FROM {schema}.queues
      UNION SELECT DISTINCT queue, NULL::boolean, NULL::text FROM {schema}.messages
            WHERE queue NOT IN (SELECT name FROM {schema}.queues)) AS q
LEFT JOIN {schema}.messages AS m ON m.queue = q.name
WHERE (%(queue)s::text IS NULL OR q.name = %(queue)s::text)
GROUP BY q.name, q.paused, q.settings, m.state
ORDER BY q.name;

-- name: migrate_lock
-- Serializes migrations of one schema across processes; released at commit.
SELECT pg_advisory_xact_lock(hashtextextended('taskflare.migrate:' || %(schema)s, 0));

-- name: schema_exists
SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %(schema)s);

-- name: schema_create
CREATE SCHEMA {schema};

-- name: migrations_table_exists
SELECT to_regclass(%(table)s) IS NOT NULL;

-- name: migrations_table
CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at double precision NOT NULL
);

-- name: migrations_applied
SELECT version FROM {schema}.schema_migrations ORDER BY version;

-- name: migration_search_path
SELECT set_config('search_path', %(search_path)s, true);

-- name: migration_record
INSERT INTO {schema}.schema_migrations (version, name, applied_at)
VALUES (%(version)s, %(name)s, {now});

-- Jobs ---------------------------------------------------------------------------------

-- name: job_enqueue
-- One job, in one statement. With an idempotency key, the job is only stored when this
-- call takes the key: it is new, expired, or held by `stale_holder` (a job seen gone).
-- The conditions are on the key row itself, so they are checked again on its latest
-- version when a concurrent enqueue of the same key commits first: exactly one wins.
WITH claimed AS (
    INSERT INTO {schema}.idempotency_keys AS k (type, key, job_id, expires_at)
    SELECT %(type)s::text, %(idempotency_key)s::text, %(id)s::text, {now} + %(ttl)s::float8
    WHERE %(idempotency_key)s::text IS NOT NULL
    ON CONFLICT (type, key) DO UPDATE
    SET job_id = excluded.job_id, expires_at = excluded.expires_at
    WHERE k.expires_at < {now} OR k.job_id = %(stale_holder)s::text
    RETURNING k.job_id
), inserted AS (
    INSERT INTO {schema}.messages (id, queue, state, body, content_type, priority, attempts,
                                   created_at, available_at, type, max_attempts,
                                   idempotency_key, correlation_id, batch_id)
    SELECT %(id)s::text, %(queue)s::text, 'ready', %(body)s::bytea, %(content_type)s::text,
           %(priority)s::integer, 0, {now}, {now} + %(delay)s::float8, %(type)s::text,
           %(max_attempts)s::integer, %(idempotency_key)s::text, %(correlation_id)s::text,
           %(batch_id)s::text
    WHERE %(idempotency_key)s::text IS NULL OR EXISTS (SELECT 1 FROM claimed)
    ON CONFLICT (id) DO NOTHING
    RETURNING queue
)
SELECT (SELECT count(*) FROM inserted),
       (SELECT count(pg_notify(%(channel)s, queue)) FROM inserted);

-- name: idempotency_holder
-- A new statement, so it sees the key (and its job) as committed by whoever won.
SELECT k.job_id, EXISTS (SELECT 1 FROM {schema}.messages AS m WHERE m.id = k.job_id)
FROM {schema}.idempotency_keys AS k
WHERE k.type = %(type)s AND k.key = %(idempotency_key)s;

-- name: job_attempts
SELECT job_id, attempt, worker_id, started_at, finished_at, outcome, error, traceback
FROM {schema}.job_attempts WHERE job_id = %(job_id)s ORDER BY id;

-- name: job_list
SELECT id, queue, state, body, content_type, attempts, priority, created_at, available_at,
       lease_expires_at, last_error, origin_queue, origin_id, finished_at,
       type, max_attempts, result, progress, progress_note, started_at, idempotency_key,
       correlation_id, batch_id, cancel_requested
FROM {schema}.messages
WHERE type IS NOT NULL
  AND (%(state)s::text IS NULL OR state = %(state)s::text)
  AND (%(type)s::text IS NULL OR type = %(type)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(before_created)s::float8 IS NULL
       OR (created_at, id) < (%(before_created)s::float8, %(before_id)s::text))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s;

-- name: job_lock
-- Cancelling decides on the job's state while holding its row, so a concurrent claim
-- cannot slip between the look and the change.
SELECT state FROM {schema}.messages WHERE id = %(id)s AND type IS NOT NULL FOR UPDATE;

-- name: job_cancel_pending
UPDATE {schema}.messages
SET state = 'cancelled', finished_at = {now}, last_error = 'cancelled before it ran'
WHERE id = %(id)s AND type IS NOT NULL AND state = 'ready';

-- name: job_cancel_request
UPDATE {schema}.messages SET cancel_requested = true
WHERE id = %(id)s AND type IS NOT NULL AND state = 'leased';

-- name: job_retry
-- Back to pending with a fresh attempt budget; the row's old state when it cannot be.
WITH retried AS (
    UPDATE {schema}.messages
    SET state = 'ready',
        attempts = 0,
        available_at = {now},
        finished_at = NULL,
        cancel_requested = false,
        progress = NULL,
        progress_note = NULL,
        result = NULL,
        last_error = NULL
    WHERE id = %(id)s AND type IS NOT NULL AND state IN ('failed', 'cancelled')
    RETURNING queue
)
SELECT 'retried', count(pg_notify(%(channel)s, queue)) FROM retried
HAVING count(*) > 0
UNION ALL
SELECT state, 0 FROM {schema}.messages
WHERE id = %(id)s AND type IS NOT NULL AND NOT EXISTS (SELECT 1 FROM retried);

-- name: job_progress
UPDATE {schema}.messages SET progress = %(progress)s, progress_note = %(note)s
WHERE id = %(id)s AND lease_id = %(lease_id)s AND state = 'leased';

-- name: job_cancel_requested
SELECT id FROM {schema}.messages
WHERE state = 'leased' AND cancel_requested AND lease_id = ANY(%(lease_ids)s::text[]);

-- name: job_attempt_seq
SELECT coalesce(max(id), 0) FROM {schema}.job_attempts;

-- name: job_events
-- Enqueues, starts and finished attempts after the cursor, each bounded, in one query.
(SELECT 'enqueued', created_at, id, type, queue, attempts, NULL::text, NULL::float8,
        0::bigint
 FROM {schema}.messages
 WHERE type IS NOT NULL AND created_at > %(enqueued_after)s
 ORDER BY created_at LIMIT %(limit)s)
UNION ALL
(SELECT 'started', started_at, id, type, queue, attempts, NULL, NULL, 0
 FROM {schema}.messages
 WHERE state = 'leased' AND type IS NOT NULL AND started_at > %(started_after)s
 ORDER BY started_at LIMIT %(limit)s)
UNION ALL
(SELECT a.outcome, a.finished_at, a.job_id, m.type, m.queue, a.attempt, a.error,
        a.finished_at - a.started_at, a.id
 FROM {schema}.job_attempts AS a LEFT JOIN {schema}.messages AS m ON m.id = a.job_id
 WHERE a.id > %(attempt_after)s
 ORDER BY a.id LIMIT %(limit)s);

-- name: job_counts
SELECT queue, type, state, count(*)
FROM {schema}.messages
WHERE type IS NOT NULL
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(type)s::text IS NULL OR type = %(type)s::text)
GROUP BY queue, type, state;

-- name: job_batch_create
INSERT INTO {schema}.job_batches (id, type, total, created_at)
VALUES (%(id)s, %(type)s, %(total)s, {now});

-- name: job_batch_counts
-- The batch row, and its jobs by state (one row with a NULL state when it has none).
SELECT b.type, b.total, m.state, count(m.id)
FROM {schema}.job_batches AS b
LEFT JOIN {schema}.messages AS m ON m.batch_id = b.id
WHERE b.id = %(id)s
GROUP BY b.type, b.total, m.state;

-- name: job_prune
-- One bounded chunk of finished rows past retention, their history, and expired keys
-- and `once` results. SKIP LOCKED: two pruners delete disjoint chunks.
WITH doomed AS MATERIALIZED (
    SELECT id FROM {schema}.messages
    WHERE (state = 'completed' AND finished_at < %(completed_before)s)
       OR (state IN ('failed', 'cancelled') AND finished_at < %(failed_before)s)
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), deleted AS (
    DELETE FROM {schema}.messages WHERE id = ANY(ARRAY(SELECT id FROM doomed))
    RETURNING id
), history AS (
    DELETE FROM {schema}.job_attempts WHERE job_id = ANY(ARRAY(SELECT id FROM doomed))
), keys AS (
    DELETE FROM {schema}.idempotency_keys WHERE expires_at < {now}
), once AS (
    DELETE FROM {schema}.once_results WHERE expires_at < {now}
)
SELECT count(*) FROM deleted;

-- name: once_claim
-- Claim the key when absent, expired, or abandoned by a caller whose lease ran out.
-- The conditions are on the row itself, so a concurrent claim is decided on its latest
-- version: one caller gets the row back, the others get nothing and read it.
INSERT INTO {schema}.once_results AS o (key, state, result, owner, lease_until, expires_at)
VALUES (%(key)s, 'running', NULL, %(owner)s, {now} + %(lease)s::float8, {now} + %(lease)s::float8)
ON CONFLICT (key) DO UPDATE
SET state = 'running', result = NULL, owner = excluded.owner,
    lease_until = excluded.lease_until, expires_at = excluded.expires_at
WHERE o.expires_at < {now} OR (o.state = 'running' AND o.lease_until < {now})
RETURNING o.owner;

-- name: once_get
SELECT state, result, owner FROM {schema}.once_results WHERE key = %(key)s;

-- name: once_finish
UPDATE {schema}.once_results
SET state = 'done', result = %(result)s, expires_at = {now} + %(ttl)s::float8, lease_until = NULL
WHERE key = %(key)s AND owner = %(owner)s;

-- name: once_abandon
DELETE FROM {schema}.once_results
WHERE key = %(key)s AND owner = %(owner)s AND state = 'running';

-- Cron ---------------------------------------------------------------------------------

-- name: cron_tick_record
-- The tick row decides: only the caller that inserts it stores the tick's job, in the
-- same statement (and notifies).
WITH tick AS (
    INSERT INTO {schema}.cron_ticks (name, tick, status, job_id, created_at)
    VALUES (%(name)s, %(tick)s, %(status)s, %(id)s::text, {now})
    ON CONFLICT (name, tick) DO NOTHING
    RETURNING name
), job AS (
    INSERT INTO {schema}.messages (id, queue, state, body, content_type, priority, attempts,
                                   created_at, available_at, type, max_attempts,
                                   idempotency_key, correlation_id, batch_id)
    SELECT %(id)s::text, %(queue)s::text, 'ready', %(body)s::bytea, %(content_type)s::text,
           %(priority)s::integer, 0, {now}, {now} + %(delay)s::float8, %(type)s::text,
           %(max_attempts)s::integer, %(idempotency_key)s::text, %(correlation_id)s::text,
           %(batch_id)s::text
    WHERE %(id)s::text IS NOT NULL AND EXISTS (SELECT 1 FROM tick)
    ON CONFLICT (id) DO NOTHING
    RETURNING queue
)
SELECT (SELECT count(*) FROM tick), (SELECT count(pg_notify(%(channel)s, queue)) FROM job);

-- name: cron_last_tick
-- Manual fires are not ticks of the schedule: they must not hide missed ticks.
SELECT max(tick) FROM {schema}.cron_ticks WHERE name = %(name)s AND status <> 'manual';

-- name: cron_recent
SELECT name, tick, status, job_id, created_at FROM {schema}.cron_ticks
WHERE name = %(name)s ORDER BY tick DESC LIMIT %(limit)s;

-- Administration -----------------------------------------------------------------------

-- name: queue_purge
-- Every message not yet finished, delayed ones included, so none is ever delivered.
DELETE FROM {schema}.messages WHERE queue = %(queue)s AND state IN ('ready', 'leased');

-- name: dead_letter_reprocess
-- In one statement: a dead-lettered job goes back as the original job with a fresh
-- attempt budget (its DLQ copy is deleted); a plain message is moved back to its
-- origin queue. Copies being claimed by a DLQ consumer right now are skipped.
WITH copies AS MATERIALIZED (
    SELECT d.id, d.origin_id, d.origin_queue, o.id IS NOT NULL AS of_job
    FROM {schema}.messages AS d
    LEFT JOIN {schema}.messages AS o ON o.id = d.origin_id AND o.type IS NOT NULL
    WHERE d.queue = %(dlq)s AND d.state = 'ready'
      AND (%(ids)s::text[] IS NULL OR d.id = ANY(%(ids)s::text[]))
    FOR UPDATE OF d SKIP LOCKED
), revived AS (
    UPDATE {schema}.messages
    SET state = 'ready', attempts = 0, available_at = {now}, finished_at = NULL,
        cancel_requested = false
    WHERE type IS NOT NULL AND state = 'failed'
      AND id = ANY(ARRAY(SELECT origin_id FROM copies WHERE of_job))
    RETURNING queue
), dropped AS (
    DELETE FROM {schema}.messages WHERE id = ANY(ARRAY(SELECT id FROM copies WHERE of_job))
), moved AS (
    UPDATE {schema}.messages AS m
    SET queue = c.origin_queue, attempts = 0, available_at = {now}
    FROM copies AS c
    WHERE m.id = c.id AND NOT c.of_job AND c.origin_queue IS NOT NULL
    RETURNING m.queue
), notified AS (
    SELECT pg_notify(%(channel)s, q.queue)
    FROM (SELECT queue FROM revived UNION SELECT queue FROM moved) AS q
)
SELECT (SELECT count(*) FROM revived) + (SELECT count(*) FROM moved),
       (SELECT count(*) FROM notified);

-- name: worker_report
INSERT INTO {schema}.workers (id, hostname, pid, started_at, last_seen, stats)
VALUES (%(id)s, %(hostname)s, %(pid)s, %(started_at)s, {now}, %(stats)s)
ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen, stats = excluded.stats;

-- name: worker_list
SELECT id, hostname, pid, started_at, last_seen, stats FROM {schema}.workers
WHERE last_seen >= %(since)s ORDER BY started_at;
