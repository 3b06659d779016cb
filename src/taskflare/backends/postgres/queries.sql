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
                                   created_at, available_at)
    SELECT m.id, m.queue, 'ready', m.body, m.content_type, m.priority, 0,
           {now}, {now} + m.delay
    FROM unnest(%(ids)s::text[], %(queues)s::text[], %(bodies)s::bytea[],
                %(content_types)s::text[], %(priorities)s::integer[],
                %(delays)s::float8[]) AS m(id, queue, body, content_type, priority, delay)
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
), claimed AS (
    UPDATE {schema}.messages AS m
    SET state = 'leased',
        attempts = m.attempts + 1,
        lease_id = %(lease_id)s,
        lease_owner = %(owner)s,
        lease_expires_at = {now} + %(visibility_timeout)s
    -- = ANY(ARRAY(...)): an index lookup per candidate; `IN (SELECT ... FROM a CTE)`
    -- gets no row estimate and is planned as a hash join over the whole table.
    WHERE m.id = ANY(ARRAY(SELECT id FROM candidates))
      AND ((SELECT count(*) FROM candidates) >= %(min_count)s
           OR (SELECT min(available_at) FROM candidates) <= {now} - %(max_wait)s)
    RETURNING m.id, m.queue, m.body, m.content_type, m.attempts, m.created_at, m.priority,
              m.lease_id
)
SELECT id, queue, body, content_type, attempts, created_at, priority, lease_id,
       NULL::bigint, NULL::float8, NULL::float8, NULL::boolean, NULL::float8
FROM claimed
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
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
-- Acks, retries and failures of many batches in one statement (one transaction).
-- Every outcome only applies while its lease is still held. Failed messages that name
-- a dead-letter queue are copied there, body and content type unchanged.
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
), notified AS (
    SELECT pg_notify(%(channel)s, q.queue)
    FROM (SELECT queue FROM retried UNION SELECT queue FROM dead_lettered) AS q
)
SELECT (SELECT count(*) FROM acked),
       (SELECT count(*) FROM retried),
       (SELECT count(*) FROM failed),
       (SELECT count(*) FROM dead_lettered),
       (SELECT count(*) FROM notified);

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

-- name: lease_rescue_requeue
WITH requeued AS (
    UPDATE {schema}.messages
    SET state = 'ready',
        available_at = {now},
        lease_id = NULL,
        lease_owner = NULL,
        lease_expires_at = NULL,
        last_error = 'lease expired: the worker holding this message stopped or lost contact'
    WHERE queue = %(queue)s AND state = 'leased' AND lease_expires_at < {now}
      AND attempts < %(max_attempts)s
    RETURNING queue
)
SELECT (SELECT count(*) FROM requeued),
       (SELECT count(pg_notify(%(channel)s, q.queue))
        FROM (SELECT DISTINCT queue FROM requeued) AS q);

-- name: lease_rescue_exhausted
SELECT id, lease_id
FROM {schema}.messages
WHERE queue = %(queue)s AND state = 'leased' AND lease_expires_at < {now}
  AND attempts >= %(max_attempts)s
FOR UPDATE SKIP LOCKED;

-- name: message_get
SELECT id, queue, state, body, content_type, attempts, priority, created_at, available_at,
       lease_expires_at, last_error, origin_queue, origin_id, finished_at
FROM {schema}.messages WHERE id = %(id)s;

-- name: message_list
SELECT id, queue, state, body, content_type, attempts, priority, created_at, available_at,
       lease_expires_at, last_error, origin_queue, origin_id, finished_at
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
       min(CASE WHEN m.state = 'ready' THEN m.available_at END)
FROM (SELECT name, paused FROM {schema}.queues
      UNION SELECT DISTINCT queue, NULL::boolean FROM {schema}.messages
            WHERE queue NOT IN (SELECT name FROM {schema}.queues)) AS q
LEFT JOIN {schema}.messages AS m ON m.queue = q.name
WHERE (%(queue)s::text IS NULL OR q.name = %(queue)s::text)
GROUP BY q.name, q.paused, m.state
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
