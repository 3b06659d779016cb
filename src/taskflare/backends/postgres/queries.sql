-- Every statement the PostgreSQL backend runs, by name. Parameters are %(name)s.
-- {schema} is replaced by the app's quoted schema and {now} by the server's clock in
-- epoch seconds, when the backend loads this file: every table is schema-qualified,
-- so a statement also runs unchanged on a caller's own connection (transactional
-- enqueue), whatever that connection's search_path. Columns are named as the fields of
-- the record they fill. A statement with `{traced:...}` parts is also loaded as
-- `<name>_traced` with them (the trace context of an enqueue made while tracing is on);
-- `<name>` is the text without.
--
-- The change signal: a statement that makes work ready calls
-- pg_notify(channel, 'ready:<queue>'), one that finishes a job pg_notify(done_channel,
-- 'done'), a cancellation request pg_notify(channel, 'cancel'), in the same statement,
-- so the notification is sent if and only if the change commits. Every process
-- listening on the channel (this one included) raises the topic when it arrives. Every
-- worker listens on `channel`; only processes waiting for a job to end listen on
-- `done_channel` (a worker would otherwise wake for every settle of every worker).

-- name: message_enqueue_many
-- One statement stores a whole batch. ON CONFLICT makes a retried enqueue (after a
-- connection lost between commit and reply) a no-op instead of an error. `flush_later`:
-- commit without waiting for the WAL flush (EnqueueParams.durable=False); the next
-- durable commit flushes it.
WITH commit_mode AS MATERIALIZED (
    SELECT CASE WHEN %(flush_later)s::boolean
                THEN set_config('synchronous_commit', 'off', true) END AS setting
), inserted AS (
    INSERT INTO {schema}.messages (id, queue, state, body, content_type, priority, attempts,
                                   created_at, available_at, type, max_attempts,
                                   idempotency_key, correlation_id, batch_id, flow_keys
                                   {traced:, trace_context})
    SELECT m.id, m.queue, 'ready', m.body, m.content_type, m.priority, 0,
           {now}, {now} + m.delay, m.type, m.max_attempts, m.idempotency_key,
           m.correlation_id, m.batch_id,
           -- A job's buckets arrive as a JSON array (arrays of arrays must be rectangular).
           CASE WHEN m.flow IS NOT NULL
                THEN ARRAY(SELECT jsonb_array_elements_text(m.flow::jsonb)) END
           {traced:, m.trace_context}
    FROM unnest(%(ids)s::text[], %(queues)s::text[], %(bodies)s::bytea[],
                %(content_types)s::text[], %(priorities)s::integer[],
                %(delays)s::float8[], %(types)s::text[], %(max_attempts)s::integer[],
                %(idempotency_keys)s::text[], %(correlation_ids)s::text[],
                %(batch_ids)s::text[], %(flow_keys)s::text[]
                {traced:, %(trace_contexts)s::text[]})
         AS m(id, queue, body, content_type, priority, delay, type, max_attempts,
              idempotency_key, correlation_id, batch_id, flow{traced:, trace_context})
    ON CONFLICT (id) DO NOTHING
    RETURNING queue
)
SELECT count(pg_notify(%(channel)s, 'ready:' || q.queue)) AS notified
FROM (SELECT DISTINCT queue FROM inserted) AS q, commit_mode;

-- name: message_enqueue_uniform
-- A batch whose messages differ only in id, body and limit buckets (every enqueue_many
-- chunk, most send_batch calls): the shared values are scalars, so the server parses two
-- or three arrays instead of twelve. Plain INSERT: ids are new, and a retry after a
-- connection lost mid-statement runs message_enqueue_many (ON CONFLICT) instead. One
-- queue, so one NOTIFY; the insert runs whether or not the SELECT reads it.
-- `flush_later`: as in message_enqueue_many.
WITH commit_mode AS MATERIALIZED (
    SELECT CASE WHEN %(flush_later)s::boolean
                THEN set_config('synchronous_commit', 'off', true) END AS setting
), inserted AS (
    INSERT INTO {schema}.messages (id, queue, state, body, content_type, priority, attempts,
                                   created_at, available_at, type, max_attempts,
                                   idempotency_key, correlation_id, batch_id, flow_keys
                                   {traced:, trace_context})
    SELECT m.id, %(queue)s, 'ready', m.body, %(content_type)s, %(priority)s, 0,
           {now}, {now} + %(delay)s::float8, %(type)s, %(max_attempts)s::integer,
           %(idempotency_key)s, %(correlation_id)s, %(batch_id)s,
           CASE WHEN m.flow IS NOT NULL
                THEN ARRAY(SELECT jsonb_array_elements_text(m.flow::jsonb)) END
           {traced:, %(trace_context)s}
    FROM unnest(%(ids)s::text[], %(bodies)s::bytea[], %(flow_keys)s::text[])
         AS m(id, body, flow)
)
SELECT pg_notify(%(channel)s, 'ready:' || %(queue)s::text) AS notified FROM commit_mode;

-- name: claim_settings
-- Run first in a claim's transaction (message_claim_many, message_claim_expected), so
-- the claim is planned and committed with them:
-- - No WAL flush wait: if the server crashes before a claim is durable, its messages
--   are simply ready again and delivered again (at least once). Sends, outcomes and
--   everything else keep synchronous_commit as configured.
-- - No sort: the claim reads its candidates in messages_ready_idx's order and stops at
--   `limit`. Planned from statistics that say ready rows are rare (a fresh table, or one
--   of finished jobs analyzed before a burst of enqueues), the planner could instead read
--   every ready row through a smaller index and sort them all, on every claim until the
--   next ANALYZE: 20 000 jobs drained at half the rate, the server's CPU per job doubled.
-- - No JIT: a node the planner cannot avoid while one is disabled adds 1e10 to the
--   estimate, above jit_above_cost; the session's `jit = off` is not set behind PgBouncer.
SELECT set_config('synchronous_commit', 'off', true),
       set_config('enable_sort', 'off', true),
       set_config('jit', 'off', true);

-- name: claim_expected_settings
-- claim_settings for message_claim_expected (the claim of a woken worker: an idle
-- worker's pickup), which is also planned once a connection (a generic plan) instead of
-- on every execution, where planning was half of its server time. A generic plan is
-- made again only when the table's statistics change, so one made while the table was
-- nearly empty must still be right once it is large: no sequential scan either (made
-- on a nearly empty table, it read the rows to update with one: 250-585 ms a claim once
-- 250 000 rows had arrived before the next ANALYZE). Every row is found through an index.
SELECT set_config('synchronous_commit', 'off', true),
       set_config('enable_sort', 'off', true),
       set_config('plan_cache_mode', 'force_generic_plan', true),
       set_config('enable_seqscan', 'off', true),
       set_config('jit', 'off', true);

-- name: claim_session
-- claim_expected_settings for the whole session of a loop's claim connection, which runs
-- nothing but message_claim_expected: the claim is then one statement in one round trip
-- (no BEGIN, settings and COMMIT around it), on a connection no other statement wakes.
SELECT set_config('synchronous_commit', 'off', false),
       set_config('enable_sort', 'off', false),
       set_config('plan_cache_mode', 'force_generic_plan', false),
       set_config('enable_seqscan', 'off', false),
       set_config('jit', 'off', false);

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
      AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
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
        lease_expires_at = {now} + %(visibility_timeout)s,
        started_at = {now}
    -- = ANY(ARRAY(...)): an index lookup per candidate; `IN (SELECT ... FROM a CTE)`
    -- gets no row estimate and is planned as a hash join over the whole table.
    WHERE m.id = ANY(ARRAY(SELECT id FROM candidates))
      AND ((SELECT count(*) FROM candidates) >= %(min_count)s
           OR (SELECT min(available_at) FROM candidates) <= {now} - %(max_wait)s)
    RETURNING m.id, m.queue, m.body, m.content_type, m.attempts, m.created_at, m.priority,
              m.lease_id, m.type, m.max_attempts, m.correlation_id, m.trace_context
)
SELECT id, queue, body, content_type, attempts, created_at, priority, lease_id,
       type, max_attempts, correlation_id, trace_context,
       NULL::bigint AS ready_count, NULL::float8 AS oldest_available_at,
       NULL::float8 AS next_available_at, NULL::boolean AS paused, NULL::float8 AS now
FROM claimed
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    (SELECT count(*) FROM (SELECT 1 FROM {schema}.messages
                           WHERE queue = %(queue)s AND state = 'ready' AND available_at <= {now}
                             AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
                           LIMIT %(limit)s) AS r),
    (SELECT min(available_at) FROM {schema}.messages
     WHERE queue = %(queue)s AND state = 'ready' AND available_at <= {now}
       AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))),
    (SELECT min(available_at) FROM {schema}.messages
     WHERE queue = %(queue)s AND state = 'ready' AND available_at > {now}
       AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))),
    coalesce((SELECT paused FROM {schema}.queues WHERE name = %(queue)s), false),
    {now}
WHERE NOT EXISTS (SELECT 1 FROM claimed);

-- name: message_claim_expected
-- The claim alone, for a caller that expects work and takes whatever is ready
-- (min_count 1, or max_wait 0: no batch waits to fill up): what the statement
-- above does when it claims, without the description of an empty queue, whose
-- subqueries cost more to plan than the claim itself. An empty result means nothing was
-- claimed; the caller then asks queue_ready_info.
WITH candidates AS MATERIALIZED (
    SELECT id
    FROM {schema}.messages
    WHERE queue = %(queue)s AND state = 'ready' AND available_at <= {now}
      AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
      AND NOT EXISTS (SELECT 1 FROM {schema}.queues WHERE name = %(queue)s AND paused)
    ORDER BY priority DESC, available_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE {schema}.messages AS m
SET state = 'leased',
    attempts = m.attempts + 1,
    lease_id = %(lease_id)s,
    lease_owner = %(owner)s,
    lease_expires_at = {now} + %(visibility_timeout)s,
    started_at = {now}
WHERE m.id = ANY(ARRAY(SELECT id FROM candidates))
RETURNING m.id, m.queue, m.body, m.content_type, m.attempts, m.created_at, m.priority,
          m.lease_id, m.type, m.max_attempts, m.correlation_id, m.trace_context;

-- name: queue_ready_info
SELECT
    (SELECT count(*) FROM (SELECT 1 FROM {schema}.messages
                           WHERE queue = %(queue)s AND state = 'ready' AND available_at <= {now}
                             AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
                           LIMIT %(limit)s) AS r) AS ready_count,
    (SELECT min(available_at) FROM {schema}.messages
     WHERE queue = %(queue)s AND state = 'ready' AND available_at <= {now}
       AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[])))
        AS oldest_available_at,
    (SELECT min(available_at) FROM {schema}.messages
     WHERE queue = %(queue)s AND state = 'ready' AND available_at > {now}
       AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[])))
        AS next_available_at,
    coalesce((SELECT paused FROM {schema}.queues WHERE name = %(queue)s), false) AS paused,
    {now} AS now;

-- name: message_settle_many
-- Acks, retries, failures, job completions and cancellations of many deliveries, and the
-- attempt rows of those that applied, in one statement (one transaction). Every outcome
-- only applies while its lease is still held (an ack without a lease id: while the plain
-- message is unfinished, Cloudflare's late pull ack); rescue outcomes only once the lease
-- has expired. A job whose cancellation was requested ends cancelled whatever its
-- outcome: the cancel, once accepted, wins. Failed messages that name a dead-letter
-- queue are copied there, body, content type and last error unchanged. The first row
-- (id NULL) only carries the notification count.
WITH acked AS (
    DELETE FROM {schema}.messages AS m
    USING unnest(%(ack_ids)s::text[], %(ack_leases)s::text[]) AS a(id, lease_id)
    WHERE m.id = ANY(%(ack_ids)s::text[])  -- primary-key lookups, never a scan
      AND m.id = a.id
      AND ((a.lease_id IS NULL AND m.type IS NULL AND m.state IN ('ready', 'leased'))
           OR (m.lease_id = a.lease_id AND m.state = 'leased'))
    RETURNING m.id
), retried AS (
    UPDATE {schema}.messages AS m
    SET state = CASE WHEN m.cancel_requested THEN 'cancelled' ELSE 'ready' END,
        available_at = CASE WHEN m.cancel_requested THEN m.available_at
                            ELSE {now} + r.delay END,
        attempts = CASE WHEN r.refund THEN greatest(m.attempts - 1, 0) ELSE m.attempts END,
        finished_at = CASE WHEN m.cancel_requested THEN {now} END,
        last_error = CASE WHEN m.cancel_requested THEN 'cancelled while running'
                          ELSE coalesce(r.error, m.last_error) END,
        lease_id = NULL,
        lease_owner = NULL,
        lease_expires_at = NULL
    FROM unnest(%(retry_ids)s::text[], %(retry_leases)s::text[], %(retry_delays)s::float8[],
                %(retry_errors)s::text[], %(retry_expired)s::boolean[],
                %(retry_refunds)s::boolean[])
         AS r(id, lease_id, delay, error, require_expired, refund)
    WHERE m.id = ANY(%(retry_ids)s::text[])
      AND m.id = r.id AND m.lease_id = r.lease_id AND m.state = 'leased'
      AND (NOT r.require_expired OR m.lease_expires_at < {now})
    RETURNING m.id, m.queue, m.state, m.type
), failed AS (
    UPDATE {schema}.messages AS m
    SET state = CASE WHEN m.cancel_requested THEN 'cancelled' ELSE 'failed' END,
        lease_id = NULL,
        lease_owner = NULL,
        lease_expires_at = NULL,
        last_error = CASE WHEN m.cancel_requested THEN 'cancelled while running'
                          ELSE coalesce(f.error, m.last_error) END,
        finished_at = {now}
    FROM unnest(%(fail_ids)s::text[], %(fail_leases)s::text[], %(fail_errors)s::text[],
                %(dlq_ids)s::text[], %(dlq_queues)s::text[], %(fail_expired)s::boolean[])
         AS f(id, lease_id, error, dlq_id, dlq_queue, require_expired)
    WHERE m.id = ANY(%(fail_ids)s::text[])
      AND m.id = f.id AND m.lease_id = f.lease_id AND m.state = 'leased'
      AND (NOT f.require_expired OR m.lease_expires_at < {now})
    RETURNING m.id, m.queue, m.state, m.type, m.body, m.content_type, m.priority,
              m.created_at, m.last_error, m.trace_context, f.dlq_id, f.dlq_queue
), dead_lettered AS (
    -- The copy keeps the producer's trace context (its consumer's span links to it) and
    -- the original's send time (its `timestamp`, as Cloudflare's local DLQs keep it).
    INSERT INTO {schema}.messages (id, queue, state, body, content_type, priority, attempts,
                                   created_at, available_at, last_error, origin_queue,
                                   origin_id, trace_context)
    SELECT dlq_id, dlq_queue, 'ready', body, content_type, priority, 0, created_at, {now},
           last_error, queue, id, trace_context
    FROM failed
    WHERE state = 'failed' AND dlq_id IS NOT NULL AND dlq_queue IS NOT NULL
    ON CONFLICT (id) DO NOTHING
    RETURNING queue
), completed AS (
    UPDATE {schema}.messages AS m
    SET state = CASE WHEN m.cancel_requested THEN 'cancelled' ELSE 'completed' END,
        result = CASE WHEN m.cancel_requested THEN NULL ELSE c.result END,
        progress = CASE WHEN m.cancel_requested THEN m.progress ELSE 1.0 END,
        last_error = CASE WHEN m.cancel_requested THEN 'cancelled while running' END,
        lease_id = NULL,
        lease_owner = NULL,
        lease_expires_at = NULL,
        finished_at = {now}
    FROM unnest(%(complete_ids)s::text[], %(complete_leases)s::text[],
                %(complete_results)s::bytea[]) AS c(id, lease_id, result)
    WHERE m.id = ANY(%(complete_ids)s::text[])
      AND m.id = c.id AND m.lease_id = c.lease_id AND m.state = 'leased'
    RETURNING m.id, m.queue, m.state, m.type
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
    RETURNING m.id, m.queue, m.state, m.type
), applied AS (
    SELECT id, queue, state, type FROM retried
    UNION ALL SELECT id, queue, state, type FROM failed
    UNION ALL SELECT id, queue, state, type FROM completed
    UNION ALL SELECT id, queue, state, type FROM cancelled
), recorded AS (
    INSERT INTO {schema}.job_attempts (job_id, attempt, worker_id, started_at, finished_at,
                                       outcome, error, traceback)
    SELECT a.job_id, a.attempt, a.worker_id, a.started_at, a.finished_at,
           CASE WHEN p.state = 'cancelled' AND a.outcome IN ('completed', 'retried', 'failed', 'snoozed')
                THEN 'cancelled' ELSE a.outcome END,
           a.error, a.traceback
    FROM unnest(%(attempt_jobs)s::text[], %(attempt_numbers)s::integer[],
                %(attempt_workers)s::text[], %(attempt_starts)s::float8[],
                %(attempt_ends)s::float8[], %(attempt_outcomes)s::text[],
                %(attempt_errors)s::text[], %(attempt_tracebacks)s::text[])
         WITH ORDINALITY
         AS a(job_id, attempt, worker_id, started_at, finished_at, outcome, error, traceback,
              n)
    JOIN applied AS p ON p.id = a.job_id
    ORDER BY a.n
), notified AS (
    SELECT pg_notify(CASE WHEN t.topic = 'done' THEN %(done_channel)s ELSE %(channel)s END,
                     t.topic)
    FROM (SELECT 'ready:' || queue AS topic FROM applied WHERE state = 'ready'
          UNION SELECT 'ready:' || queue FROM dead_lettered
          UNION SELECT 'done' FROM applied
                WHERE type IS NOT NULL AND state IN ('completed', 'failed', 'cancelled')) AS t
)
SELECT NULL::text AS id, NULL::text AS state, (SELECT count(*) FROM notified) AS notified
UNION ALL SELECT id, 'acked', NULL FROM acked
UNION ALL SELECT id, state, NULL FROM applied;

-- name: settle_acks
-- The common case of a message queue, alone: acks only (the full message_settle_many is
-- several times larger to plan and to send).
DELETE FROM {schema}.messages AS m
USING unnest(%(ack_ids)s::text[], %(ack_leases)s::text[]) AS a(id, lease_id)
WHERE m.id = ANY(%(ack_ids)s::text[])
  AND m.id = a.id
  AND ((a.lease_id IS NULL AND m.type IS NULL AND m.state IN ('ready', 'leased'))
       OR (m.lease_id = a.lease_id AND m.state = 'leased'))
RETURNING m.id AS id, 'acked' AS state, NULL::bigint AS notified;

-- name: settle_completes
-- The common case of a job queue, alone: completed jobs and their attempt rows (with the
-- same cancel-wins rule as message_settle_many).
WITH completed AS (
    UPDATE {schema}.messages AS m
    SET state = CASE WHEN m.cancel_requested THEN 'cancelled' ELSE 'completed' END,
        result = CASE WHEN m.cancel_requested THEN NULL ELSE c.result END,
        progress = CASE WHEN m.cancel_requested THEN m.progress ELSE 1.0 END,
        last_error = CASE WHEN m.cancel_requested THEN 'cancelled while running' END,
        lease_id = NULL,
        lease_owner = NULL,
        lease_expires_at = NULL,
        finished_at = {now}
    FROM unnest(%(complete_ids)s::text[], %(complete_leases)s::text[],
                %(complete_results)s::bytea[]) AS c(id, lease_id, result)
    WHERE m.id = ANY(%(complete_ids)s::text[])
      AND m.id = c.id AND m.lease_id = c.lease_id AND m.state = 'leased'
    RETURNING m.id, m.state
), recorded AS (
    INSERT INTO {schema}.job_attempts (job_id, attempt, worker_id, started_at, finished_at,
                                       outcome, error, traceback)
    SELECT a.job_id, a.attempt, a.worker_id, a.started_at, a.finished_at,
           CASE WHEN p.state = 'cancelled' AND a.outcome IN ('completed', 'retried', 'failed', 'snoozed')
                THEN 'cancelled' ELSE a.outcome END,
           a.error, a.traceback
    FROM unnest(%(attempt_jobs)s::text[], %(attempt_numbers)s::integer[],
                %(attempt_workers)s::text[], %(attempt_starts)s::float8[],
                %(attempt_ends)s::float8[], %(attempt_outcomes)s::text[],
                %(attempt_errors)s::text[], %(attempt_tracebacks)s::text[])
         WITH ORDINALITY
         AS a(job_id, attempt, worker_id, started_at, finished_at, outcome, error, traceback,
              n)
    JOIN completed AS p ON p.id = a.job_id
    ORDER BY a.n
)
SELECT NULL::text AS id, NULL::text AS state,
       (SELECT count(pg_notify(%(done_channel)s, 'done'))
        FROM (SELECT 1 FROM completed LIMIT 1) AS d)
           AS notified
UNION ALL SELECT id, state, NULL FROM completed;

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
    RETURNING m.id, m.queue
), notified AS (
    SELECT count(pg_notify(%(channel)s, 'ready:' || q.queue)) AS n
    FROM (SELECT DISTINCT queue FROM released) AS q
)
SELECT id FROM released, notified;

-- name: lease_extend_many
UPDATE {schema}.messages
SET lease_expires_at = {now} + %(visibility_timeout)s
WHERE state = 'leased' AND lease_id = ANY(%(lease_ids)s::text[]);

-- name: lease_list_expired
SELECT id, lease_id, queue, attempts, max_attempts, type, lease_owner, started_at
FROM {schema}.messages
WHERE queue = %(queue)s AND state = 'leased' AND lease_expires_at < {now}
ORDER BY lease_expires_at
LIMIT %(limit)s;

-- name: message_get
SELECT id, queue, state, body, content_type, attempts, priority, created_at, available_at,
       lease_expires_at, last_error, origin_queue, origin_id, finished_at,
       type, max_attempts, result, progress, progress_note, started_at, idempotency_key,
       correlation_id, batch_id, cancel_requested,
       (SELECT o.attempts FROM {schema}.messages AS o WHERE o.id = m.origin_id) AS origin_attempts
FROM {schema}.messages AS m WHERE id = %(id)s;

-- name: message_list
-- Oldest first across states: each state's first %(limit)s from its own index (ready:
-- messages_ready_created_idx, leased: messages_leased_idx, a few rows sorted, the
-- others: messages_queue_state_idx), merged; a queue that also holds a million finished
-- jobs costs what an empty one does. The cursor is always bound (no cursor: -infinity).
WITH page AS MATERIALIZED (
    (SELECT id, created_at FROM {schema}.messages
     WHERE queue = %(queue)s AND state = 'ready'
       AND (%(state)s::text IS NULL OR %(state)s::text = 'ready')
       AND (created_at, id) > (%(after_created)s::float8, %(after_id)s::text)
     ORDER BY created_at, id LIMIT %(limit)s)
    UNION ALL
    (SELECT id, created_at FROM {schema}.messages
     WHERE queue = %(queue)s AND state = 'leased'
       AND (%(state)s::text IS NULL OR %(state)s::text = 'leased')
       AND (created_at, id) > (%(after_created)s::float8, %(after_id)s::text)
     ORDER BY created_at, id LIMIT %(limit)s)
    UNION ALL
    (SELECT id, created_at FROM {schema}.messages
     WHERE queue = %(queue)s AND state = 'completed'
       AND (%(state)s::text IS NULL OR %(state)s::text = 'completed')
       AND (created_at, id) > (%(after_created)s::float8, %(after_id)s::text)
     ORDER BY created_at, id LIMIT %(limit)s)
    UNION ALL
    (SELECT id, created_at FROM {schema}.messages
     WHERE queue = %(queue)s AND state = 'failed'
       AND (%(state)s::text IS NULL OR %(state)s::text = 'failed')
       AND (created_at, id) > (%(after_created)s::float8, %(after_id)s::text)
     ORDER BY created_at, id LIMIT %(limit)s)
    UNION ALL
    (SELECT id, created_at FROM {schema}.messages
     WHERE queue = %(queue)s AND state = 'cancelled'
       AND (%(state)s::text IS NULL OR %(state)s::text = 'cancelled')
       AND (created_at, id) > (%(after_created)s::float8, %(after_id)s::text)
     ORDER BY created_at, id LIMIT %(limit)s)
    ORDER BY created_at, id LIMIT %(limit)s
)
SELECT id, queue, state, body, content_type, attempts, priority, created_at, available_at,
       lease_expires_at, last_error, origin_queue, origin_id, finished_at,
       type, max_attempts, result, progress, progress_note, started_at, idempotency_key,
       correlation_id, batch_id, cancel_requested,
       (SELECT o.attempts FROM {schema}.messages AS o WHERE o.id = m.origin_id) AS origin_attempts
FROM {schema}.messages AS m
WHERE m.id IN (SELECT id FROM page)
ORDER BY m.created_at, m.id;

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
SELECT count(pg_notify(%(channel)s, 'ready:' || name)) AS notified FROM changed WHERE NOT paused;

-- name: queue_counts
-- Every queue (stored, or holding messages: found as queue_depths finds them) with its
-- messages counted by state, each count reading at most %(count_limit)s entries of that
-- state's index for the queue (a count equal to the limit means "at least"), never a
-- scan of the table; the oldest ready time is that of the first %(count_limit)s ready.
-- Queues holding leased messages are found apart (messages_leased_idx): the by-state
-- index leaves leased rows out (schema 13), as it does ready ones.
WITH RECURSIVE ready_queues(queue) AS (
    (SELECT queue FROM {schema}.messages WHERE state = 'ready' ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT m.queue FROM {schema}.messages AS m
            WHERE m.state = 'ready' AND m.queue > r.queue ORDER BY m.queue LIMIT 1)
    FROM ready_queues AS r WHERE r.queue IS NOT NULL
), other_queues(queue) AS (
    (SELECT queue FROM {schema}.messages WHERE state <> 'ready' AND state <> 'leased'
     ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT m.queue FROM {schema}.messages AS m
            WHERE m.state <> 'ready' AND m.state <> 'leased' AND m.queue > o.queue
            ORDER BY m.queue LIMIT 1)
    FROM other_queues AS o WHERE o.queue IS NOT NULL
), leased_queues(queue) AS (
    (SELECT queue FROM {schema}.messages WHERE state = 'leased' ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT m.queue FROM {schema}.messages AS m
            WHERE m.state = 'leased' AND m.queue > l.queue ORDER BY m.queue LIMIT 1)
    FROM leased_queues AS l WHERE l.queue IS NOT NULL
), names(name) AS (
    SELECT name FROM {schema}.queues WHERE (%(queue)s::text IS NULL OR name = %(queue)s::text)
    UNION SELECT queue FROM ready_queues
          WHERE queue IS NOT NULL AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
    UNION SELECT queue FROM other_queues
          WHERE queue IS NOT NULL AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
    UNION SELECT queue FROM leased_queues
          WHERE queue IS NOT NULL AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
)
SELECT n.name AS name, coalesce(q.paused, false) AS paused, q.settings AS settings,
       re.ready, re.oldest AS oldest_ready_at, le.leased, co.completed, fa.failed,
       ca.cancelled
FROM names AS n
LEFT JOIN {schema}.queues AS q ON q.name = n.name
CROSS JOIN LATERAL (
    SELECT count(*) AS ready, min(w.available_at) AS oldest
    FROM (SELECT available_at FROM {schema}.messages
          WHERE queue = n.name AND state = 'ready'
          ORDER BY created_at LIMIT %(count_limit)s) AS w
) AS re
CROSS JOIN LATERAL (
    SELECT count(*) AS leased FROM (
        SELECT 1 FROM {schema}.messages WHERE queue = n.name AND state = 'leased'
        LIMIT %(count_limit)s) AS w
) AS le
CROSS JOIN LATERAL (
    SELECT count(*) AS completed FROM (
        SELECT 1 FROM {schema}.messages WHERE queue = n.name AND state = 'completed'
        LIMIT %(count_limit)s) AS w
) AS co
CROSS JOIN LATERAL (
    SELECT count(*) AS failed FROM (
        SELECT 1 FROM {schema}.messages WHERE queue = n.name AND state = 'failed'
        LIMIT %(count_limit)s) AS w
) AS fa
CROSS JOIN LATERAL (
    SELECT count(*) AS cancelled FROM (
        SELECT 1 FROM {schema}.messages WHERE queue = n.name AND state = 'cancelled'
        LIMIT %(count_limit)s) AS w
) AS ca
ORDER BY n.name;

-- name: queue_delete_messages
DELETE FROM {schema}.messages WHERE queue = %(queue)s;

-- name: queue_delete
DELETE FROM {schema}.queues WHERE name = %(queue)s;

-- name: queue_purge
-- Every message waiting for delivery, delayed ones included, so none is ever delivered.
-- Leased ones (a batch or job in flight) are kept: their worker settles them as usual.
DELETE FROM {schema}.messages WHERE queue = %(queue)s AND state = 'ready';

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

-- name: database_ping
-- The cheapest read that proves the database and this app's schema answer (GET /health).
SELECT 1 FROM {schema}.schema_migrations LIMIT 1;

-- name: statistics_stale
-- Whether the planner's statistics of the message table are far behind what it holds:
-- never gathered while it has rows, or more rows changed since than a fifth of the
-- table (autovacuum waits for its next round, up to a minute, and then for 10 %).
-- A burst of enqueues into a fresh table is the case that matters: without statistics
-- the outcome statement is planned as a nested loop over its own rows.
SELECT coalesce(bool_or(
           (s.last_analyze IS NULL AND s.last_autoanalyze IS NULL
            AND s.n_live_tup + s.n_mod_since_analyze >= %(min_rows)s)
           OR (s.n_mod_since_analyze >= %(min_rows)s
               AND s.n_mod_since_analyze > 0.2 * greatest(c.reltuples, 0))), false)
FROM pg_stat_user_tables AS s JOIN pg_class AS c ON c.oid = s.relid
WHERE s.relid = '{schema}.messages'::regclass;

-- name: statistics_lock
-- One worker at a time refreshes them (the others skip); released at commit.
SELECT pg_try_advisory_xact_lock(hashtext('taskflare-analyze:' || %(channel)s));

-- name: statistics_refresh
ANALYZE {schema}.messages;

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
    SELECT %(key_scope)s::text, %(idempotency_key)s::text, %(id)s::text,
           {now} + %(ttl)s::float8
    WHERE %(idempotency_key)s::text IS NOT NULL
    ON CONFLICT (type, key) DO UPDATE
    SET job_id = excluded.job_id, expires_at = excluded.expires_at
    WHERE k.expires_at < {now} OR k.job_id = %(stale_holder)s::text
    RETURNING k.job_id
), inserted AS (
    INSERT INTO {schema}.messages (id, queue, state, body, content_type, priority, attempts,
                                   created_at, available_at, type, max_attempts,
                                   idempotency_key, correlation_id, batch_id, flow_keys
                                   {traced:, trace_context})
    SELECT %(id)s::text, %(queue)s::text, 'ready', %(body)s::bytea, %(content_type)s::text,
           %(priority)s::integer, 0, {now}, {now} + %(delay)s::float8, %(type)s::text,
           %(max_attempts)s::integer, %(idempotency_key)s::text, %(correlation_id)s::text,
           %(batch_id)s::text, %(flow_keys)s::text[]{traced:, %(trace_context)s::text}
    WHERE %(idempotency_key)s::text IS NULL OR EXISTS (SELECT 1 FROM claimed)
    ON CONFLICT (id) DO NOTHING
    RETURNING queue
)
SELECT (SELECT count(*) FROM inserted) AS inserted,
       (SELECT count(pg_notify(%(channel)s, 'ready:' || queue)) FROM inserted) AS notified;

-- name: job_enqueue_plain
-- One job without an idempotency key (and NOTIFY), in one statement; a repeat of the same
-- id stores nothing and notifies no one.
INSERT INTO {schema}.messages (id, queue, state, body, content_type, priority, attempts,
                               created_at, available_at, type, max_attempts,
                               idempotency_key, correlation_id, batch_id, flow_keys
                               {traced:, trace_context})
VALUES (%(id)s::text, %(queue)s::text, 'ready', %(body)s::bytea, %(content_type)s::text,
        %(priority)s::integer, 0, {now}, {now} + %(delay)s::float8, %(type)s::text,
        %(max_attempts)s::integer, NULL, %(correlation_id)s::text, %(batch_id)s::text,
        %(flow_keys)s::text[]{traced:, %(trace_context)s::text})
ON CONFLICT (id) DO NOTHING
RETURNING pg_notify(%(channel)s, 'ready:' || queue);

-- name: idempotency_holder
-- A new statement, so it sees the key (and its job) as committed by whoever won. Only a
-- job in one of the guard states (an idempotency key: pending, running or completed; a
-- unique job: its declared states) guards its key (`job_exists`); any other is taken
-- over like a deleted one.
SELECT k.job_id AS job_id,
       EXISTS (SELECT 1 FROM {schema}.messages AS m
               WHERE m.id = k.job_id AND m.state = ANY(%(guard_states)s::text[]))
           AS job_exists
FROM {schema}.idempotency_keys AS k
WHERE k.type = %(key_scope)s AND k.key = %(idempotency_key)s;

-- name: job_attempts
SELECT job_id, attempt, worker_id, started_at, finished_at, outcome, error, traceback
FROM {schema}.job_attempts
WHERE job_id = ANY(%(job_ids)s::text[])
ORDER BY job_id, id;

-- name: job_list
-- Leased jobs are not in the jobs list's indexes (schema 13): each statement over them
-- reads the other jobs there (`state <> 'leased'`) and the leased ones, few, through
-- messages_leased_idx, merged in the same order.
-- Each part has its own ORDER BY and LIMIT: PostgreSQL then merges them lazily (a
-- Merge Append), which it does not for a bare UNION ALL.
SELECT * FROM (
(SELECT id, queue, state, body, content_type, attempts, priority, created_at, available_at,
       lease_expires_at, last_error, origin_queue, origin_id, finished_at,
       type, max_attempts, result, progress, progress_note, started_at, idempotency_key,
       correlation_id, batch_id, cancel_requested
 FROM {schema}.messages
 WHERE type IS NOT NULL AND state <> 'leased'
   AND (%(state)s::text IS NULL OR state = %(state)s::text)
   AND (%(type)s::text IS NULL OR type = %(type)s::text)
   AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
   AND (%(before_created)s::float8 IS NULL
        OR (created_at, id) < (%(before_created)s::float8, %(before_id)s::text))
 ORDER BY created_at DESC, id DESC LIMIT %(limit)s)
UNION ALL
(SELECT id, queue, state, body, content_type, attempts, priority, created_at, available_at,
       lease_expires_at, last_error, origin_queue, origin_id, finished_at,
       type, max_attempts, result, progress, progress_note, started_at, idempotency_key,
       correlation_id, batch_id, cancel_requested
 FROM {schema}.messages
 WHERE type IS NOT NULL AND state = 'leased'
   AND (%(state)s::text IS NULL OR state = %(state)s::text)
   AND (%(type)s::text IS NULL OR type = %(type)s::text)
   AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
   AND (%(before_created)s::float8 IS NULL
        OR (created_at, id) < (%(before_created)s::float8, %(before_id)s::text))
 ORDER BY created_at DESC, id DESC LIMIT %(limit)s)
) AS j
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s;

-- name: job_cancel
-- Decided on the job's row, locked: a pending job is cancelled now; a running one gets
-- its cancellation requested (its outcome will be `cancelled`, see message_settle_many);
-- a finished one is left alone and its state returned.
WITH target AS MATERIALIZED (
    SELECT id, state FROM {schema}.messages
    WHERE id = %(id)s AND type IS NOT NULL
    FOR UPDATE
), cancelled AS (
    UPDATE {schema}.messages AS m
    SET state = 'cancelled', finished_at = {now},
        last_error = CASE WHEN m.attempts > 0
                          THEN 'cancelled while waiting for its next attempt'
                          ELSE 'cancelled before it ran' END
    FROM target AS t
    WHERE m.id = t.id AND t.state = 'ready'
    RETURNING m.id
), requested AS (
    UPDATE {schema}.messages AS m
    SET cancel_requested = true
    FROM target AS t
    WHERE m.id = t.id AND t.state = 'leased'
    RETURNING m.id
), notified AS (
    SELECT pg_notify(%(done_channel)s, 'done') FROM cancelled
    UNION ALL SELECT pg_notify(%(channel)s, 'cancel') FROM requested
)
SELECT t.state AS state,
       EXISTS (SELECT 1 FROM cancelled) AS cancelled,
       EXISTS (SELECT 1 FROM requested) AS requested,
       (SELECT count(*) FROM notified) AS notified
FROM target AS t;

-- name: job_retry
-- Back to pending with a fresh attempt budget; the row's old state when it cannot be, or
-- 'held:<job id>' when another job holds its idempotency key now (unexpired, in a state
-- that keeps it: a failed or cancelled job's key is free, and a new job may have taken
-- it). A retried job holds its key again.
WITH holder AS (
    SELECT h.id FROM {schema}.messages AS j
    JOIN {schema}.idempotency_keys AS k
      ON k.key = j.idempotency_key AND k.type IN (j.type, '*')
    JOIN {schema}.messages AS h ON h.id = k.job_id
    WHERE j.id = %(id)s AND j.idempotency_key IS NOT NULL AND k.job_id <> j.id
      AND k.expires_at >= {now} AND h.state IN ('ready', 'leased', 'completed')
    LIMIT 1
), retried AS (
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
      AND NOT EXISTS (SELECT 1 FROM holder)
    RETURNING queue, type, idempotency_key
), rekeyed AS (
    UPDATE {schema}.idempotency_keys AS k SET job_id = %(id)s
    FROM retried AS r
    WHERE k.key = r.idempotency_key AND k.type IN (r.type, '*') AND k.expires_at >= {now}
)
SELECT 'retried' AS outcome, count(pg_notify(%(channel)s, 'ready:' || queue)) AS notified
FROM retried
HAVING count(*) > 0
UNION ALL
SELECT CASE WHEN state IN ('failed', 'cancelled') AND EXISTS (SELECT 1 FROM holder)
            THEN 'held:' || (SELECT id FROM holder) ELSE state END, 0
FROM {schema}.messages
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
-- An enqueue is attempt 0 (no attempt has started), whatever the row counts now.
-- Enqueues: leased jobs (not in the creation index, schema 13) read apart, merged.
(SELECT * FROM (
    (SELECT 'enqueued' AS kind, created_at AS at, id AS job_id, type, queue,
            0 AS attempt, NULL::text AS error, NULL::float8 AS duration,
            0::bigint AS seq
     FROM {schema}.messages
     WHERE type IS NOT NULL AND state <> 'leased' AND created_at > %(enqueued_after)s
     ORDER BY created_at LIMIT %(limit)s)
    UNION ALL
    (SELECT 'enqueued', created_at, id, type, queue, 0, NULL, NULL, 0
     FROM {schema}.messages
     WHERE type IS NOT NULL AND state = 'leased' AND created_at > %(enqueued_after)s
     ORDER BY created_at LIMIT %(limit)s)
 ) AS e
 ORDER BY at LIMIT %(limit)s)
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
SELECT queue, type, state, count(*) AS count
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
-- Leased jobs are not in the batch index (schema 13): counted apart, few.
SELECT b.type AS type, b.total AS total, m.state AS state, count(m.state) AS count
FROM {schema}.job_batches AS b
LEFT JOIN (
    SELECT batch_id, state FROM {schema}.messages
    WHERE batch_id = %(id)s AND state <> 'leased'
    UNION ALL
    SELECT batch_id, state FROM {schema}.messages
    WHERE batch_id = %(id)s AND state = 'leased'
) AS m ON m.batch_id = b.id
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
SELECT count(*) AS deleted FROM deleted;

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
SELECT (SELECT count(*) FROM tick) AS recorded,
       (SELECT count(pg_notify(%(channel)s, 'ready:' || queue)) FROM job) AS notified;

-- name: cron_last_tick
-- Manual fires are not ticks of the schedule: they must not hide missed ticks.
SELECT max(tick) FROM {schema}.cron_ticks WHERE name = %(name)s AND status <> 'manual';

-- name: cron_recent
SELECT name, tick, status, job_id, created_at FROM {schema}.cron_ticks
WHERE name = %(name)s ORDER BY tick DESC LIMIT %(limit)s;

-- Administration -----------------------------------------------------------------------

-- name: dead_letter_reprocess
-- In one statement: a dead-lettered job goes back as the original job with a fresh
-- attempt budget (its DLQ copy is deleted); a plain message is moved back to its
-- origin queue. Copies being claimed by a DLQ consumer right now are skipped.
WITH copies AS MATERIALIZED (
    SELECT d.id, d.origin_id, d.origin_queue, o.id IS NOT NULL AS of_job
    FROM {schema}.messages AS d
    LEFT JOIN {schema}.messages AS o ON o.id = d.origin_id AND o.type IS NOT NULL
    WHERE d.queue = %(dlq)s AND d.state = 'ready'
      AND (%(origin)s::text IS NULL OR d.origin_queue = %(origin)s::text)
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
    SET queue = c.origin_queue, attempts = 0, available_at = {now}, last_error = NULL
    FROM copies AS c
    WHERE m.id = c.id AND NOT c.of_job AND c.origin_queue IS NOT NULL
    RETURNING m.queue
), notified AS (
    SELECT pg_notify(%(channel)s, 'ready:' || q.queue)
    FROM (SELECT queue FROM revived UNION SELECT queue FROM moved) AS q
)
SELECT (SELECT count(*) FROM revived) + (SELECT count(*) FROM moved) AS reprocessed,
       (SELECT count(*) FROM notified) AS notified;

-- name: worker_report
INSERT INTO {schema}.workers (id, hostname, pid, started_at, last_seen, stats)
VALUES (%(id)s, %(hostname)s, %(pid)s, %(started_at)s, {now}, %(stats_json)s)
ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen, stats = excluded.stats;

-- name: worker_gone
-- Kept (its counters still count in the totals), marked stopped: no longer alive.
UPDATE {schema}.workers SET stats = jsonb_set(stats::jsonb, '{stopped}', 'true')::text
WHERE id = %(id)s;

-- name: worker_list
SELECT id, hostname, pid, started_at, last_seen, stats AS stats_json FROM {schema}.workers
WHERE last_seen >= %(since)s ORDER BY started_at;

-- Dashboard ----------------------------------------------------------------------------
-- The jobs list and its count: planned per execution, so an absent filter folds away and
-- the planner picks the index of the filters given. The cursor and the time range are
-- always bound (open ends as +/- infinity), so the index seeks to the page.

-- name: _payload_matches
-- The payload search of job_search_count and job_search_text.
(position(%(needle)s::bytea IN body) > 0 OR EXISTS (
      -- The text as typed, inside a JSON string or key that the stored text escapes
      -- (a quote, a backslash, a newline; non-ASCII written as \u escapes). jsonb has
      -- no NUL: its escape reads as U+FFFD (still valid JSON, escaped or not).
      SELECT 1 FROM jsonb_path_query(
          CASE WHEN content_type = 'json'
               THEN replace(convert_from(body, 'UTF8'), '\u0000', '\ufffd')::jsonb END,
          'strict $.**') AS v
      WHERE (jsonb_typeof(v) = 'string' AND position(%(needle_text)s::text IN v #>> '{}') > 0)
         OR (jsonb_typeof(v) = 'object' AND EXISTS (
             SELECT 1 FROM jsonb_object_keys(v) AS k
             WHERE position(%(needle_text)s::text IN k) > 0)))

-- name: job_search_count
-- The count of a bulk action's filter: the jobs matching it among the newest
-- %(scan_limit)s entries of the index that drives it (as job_search_scan*), so a filter
-- that matches almost nothing costs one window, not a walk of the whole index; the
-- caller says "at least" when the window did not reach the end. (Leased jobs: job_list.)
SELECT count(*) FROM (
    SELECT * FROM (
        (SELECT state, type, queue, created_at, id FROM {schema}.messages
         WHERE type IS NOT NULL AND state <> 'leased'
           AND created_at >= %(created_from)s::float8
           AND (created_at, id) < (%(before_created)s::float8, %(before_id)s::text)
         ORDER BY created_at DESC, id DESC LIMIT %(scan_limit)s)
        UNION ALL
        (SELECT state, type, queue, created_at, id FROM {schema}.messages
         WHERE type IS NOT NULL AND state = 'leased'
           AND created_at >= %(created_from)s::float8
           AND (created_at, id) < (%(before_created)s::float8, %(before_id)s::text)
         ORDER BY created_at DESC, id DESC LIMIT %(scan_limit)s)
    ) AS w
    ORDER BY created_at DESC, id DESC
    LIMIT %(scan_limit)s
) AS examined
WHERE (%(state)s::text IS NULL OR state = %(state)s::text)
  AND (%(type)s::text IS NULL OR type = %(type)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text);

-- name: job_search_count_state
SELECT count(*) FROM (
    SELECT * FROM (
        (SELECT type, queue, created_at, id FROM {schema}.messages
         WHERE type IS NOT NULL AND state <> 'leased'
           AND state = %(state)s::text
           AND created_at >= %(created_from)s::float8
           AND (created_at, id) < (%(before_created)s::float8, %(before_id)s::text)
         ORDER BY created_at DESC, id DESC LIMIT %(scan_limit)s)
        UNION ALL
        (SELECT type, queue, created_at, id FROM {schema}.messages
         WHERE type IS NOT NULL AND state = 'leased'
           AND state = %(state)s::text
           AND created_at >= %(created_from)s::float8
           AND (created_at, id) < (%(before_created)s::float8, %(before_id)s::text)
         ORDER BY created_at DESC, id DESC LIMIT %(scan_limit)s)
    ) AS w
    ORDER BY created_at DESC, id DESC
    LIMIT %(scan_limit)s
) AS examined
WHERE (%(type)s::text IS NULL OR type = %(type)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text);

-- name: job_search_count_type
SELECT count(*) FROM (
    SELECT * FROM (
        (SELECT state, queue, created_at, id FROM {schema}.messages
         WHERE type IS NOT NULL AND state <> 'leased'
           AND type = %(type)s::text
           AND created_at >= %(created_from)s::float8
           AND (created_at, id) < (%(before_created)s::float8, %(before_id)s::text)
         ORDER BY created_at DESC, id DESC LIMIT %(scan_limit)s)
        UNION ALL
        (SELECT state, queue, created_at, id FROM {schema}.messages
         WHERE type IS NOT NULL AND state = 'leased'
           AND type = %(type)s::text
           AND created_at >= %(created_from)s::float8
           AND (created_at, id) < (%(before_created)s::float8, %(before_id)s::text)
         ORDER BY created_at DESC, id DESC LIMIT %(scan_limit)s)
    ) AS w
    ORDER BY created_at DESC, id DESC
    LIMIT %(scan_limit)s
) AS examined
WHERE (%(state)s::text IS NULL OR state = %(state)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text);

-- name: job_search_count_text
-- A count with a payload text looks inside the newest %(scan_limit)s jobs only (the
-- window of job_search_text), so it costs what one search page does; the caller says
-- "at least".
SELECT count(*) FROM (
    SELECT * FROM (
        (SELECT body, content_type, state, type, queue, created_at, id
         FROM {schema}.messages
         WHERE type IS NOT NULL AND state <> 'leased'
           AND created_at >= %(created_from)s::float8
           AND (created_at, id) < (%(before_created)s::float8, %(before_id)s::text)
         ORDER BY created_at DESC, id DESC LIMIT %(scan_limit)s)
        UNION ALL
        (SELECT body, content_type, state, type, queue, created_at, id
         FROM {schema}.messages
         WHERE type IS NOT NULL AND state = 'leased'
           AND created_at >= %(created_from)s::float8
           AND (created_at, id) < (%(before_created)s::float8, %(before_id)s::text)
         ORDER BY created_at DESC, id DESC LIMIT %(scan_limit)s)
    ) AS w
    ORDER BY created_at DESC, id DESC
    LIMIT %(scan_limit)s
) AS examined
WHERE (%(state)s::text IS NULL OR state = %(state)s::text)
  AND (%(type)s::text IS NULL OR type = %(type)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND {_payload_matches});

-- name: job_search_text
-- A payload search examines a bounded window: the newest %(scan_limit)s jobs after the
-- cursor (whatever the other filters), so one call costs the same on any table size.
WITH examined AS MATERIALIZED (
    SELECT * FROM (
        (SELECT id, created_at FROM {schema}.messages
         WHERE type IS NOT NULL AND state <> 'leased'
           AND created_at >= %(created_from)s::float8
           AND (created_at, id) < (%(before_created)s::float8, %(before_id)s::text)
         ORDER BY created_at DESC, id DESC LIMIT %(scan_limit)s)
        UNION ALL
        (SELECT id, created_at FROM {schema}.messages
         WHERE type IS NOT NULL AND state = 'leased'
           AND created_at >= %(created_from)s::float8
           AND (created_at, id) < (%(before_created)s::float8, %(before_id)s::text)
         ORDER BY created_at DESC, id DESC LIMIT %(scan_limit)s)
    ) AS w
    ORDER BY created_at DESC, id DESC
    LIMIT %(scan_limit)s
)
SELECT id, queue, state, body, content_type, attempts, priority, created_at, available_at,
       lease_expires_at, last_error, origin_queue, origin_id, finished_at,
       type, max_attempts, result, progress, progress_note, started_at, idempotency_key,
       correlation_id, batch_id, cancel_requested
FROM {schema}.messages
WHERE id IN (SELECT id FROM examined)
  AND (%(state)s::text IS NULL OR state = %(state)s::text)
  AND (%(type)s::text IS NULL OR type = %(type)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND {_payload_matches})
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s;

-- name: job_search_window_end
-- The last job of job_search_text's window when the window was full (else no row): a
-- search that found too few goes on from there.
SELECT * FROM (
    (SELECT created_at, id FROM {schema}.messages
     WHERE type IS NOT NULL AND state <> 'leased'
       AND created_at >= %(created_from)s::float8
       AND (created_at, id) < (%(before_created)s::float8, %(before_id)s::text)
     ORDER BY created_at DESC, id DESC LIMIT %(scan_limit)s)
    UNION ALL
    (SELECT created_at, id FROM {schema}.messages
     WHERE type IS NOT NULL AND state = 'leased'
       AND created_at >= %(created_from)s::float8
       AND (created_at, id) < (%(before_created)s::float8, %(before_id)s::text)
     ORDER BY created_at DESC, id DESC LIMIT %(scan_limit)s)
) AS w
ORDER BY created_at DESC, id DESC
OFFSET %(scan_limit)s - 1 LIMIT 1;

-- Bounded jobs list: a filter examines at most scan_limit entries of the index that
-- drives it (the status index when a status is given, else the type index when a type
-- is, else the creation index), newest first after the cursor, and keeps those matching
-- every other filter; so a combination that matches almost nothing costs one window, not
-- a walk of the whole index. The store picks the statement by the filters given. The
-- window is a subquery with its own LIMIT read lazily: a common filter stops after a
-- page of matches. job_search_scan_end* give the window's last entry when the page was
-- not filled (the next call continues from there).

-- name: job_search_scan
SELECT id, queue, state, body, content_type, attempts, priority, created_at, available_at,
       lease_expires_at, last_error, origin_queue, origin_id, finished_at,
       type, max_attempts, result, progress, progress_note, started_at, idempotency_key,
       correlation_id, batch_id, cancel_requested
FROM (
    SELECT * FROM (
        (SELECT id, queue, state, body, content_type, attempts, priority, created_at, available_at,
           lease_expires_at, last_error, origin_queue, origin_id, finished_at,
           type, max_attempts, result, progress, progress_note, started_at, idempotency_key,
           correlation_id, batch_id, cancel_requested FROM {schema}.messages
         WHERE type IS NOT NULL AND state <> 'leased'
           AND created_at >= %(created_from)s::float8
           AND (created_at, id) < (%(before_created)s::float8, %(before_id)s::text)
         ORDER BY created_at DESC, id DESC LIMIT %(scan_limit)s)
        UNION ALL
        (SELECT id, queue, state, body, content_type, attempts, priority, created_at, available_at,
           lease_expires_at, last_error, origin_queue, origin_id, finished_at,
           type, max_attempts, result, progress, progress_note, started_at, idempotency_key,
           correlation_id, batch_id, cancel_requested FROM {schema}.messages
         WHERE type IS NOT NULL AND state = 'leased'
           AND created_at >= %(created_from)s::float8
           AND (created_at, id) < (%(before_created)s::float8, %(before_id)s::text)
         ORDER BY created_at DESC, id DESC LIMIT %(scan_limit)s)
    ) AS w
    ORDER BY created_at DESC, id DESC
    LIMIT %(scan_limit)s
) AS examined
WHERE (%(state)s::text IS NULL OR state = %(state)s::text)
  AND (%(type)s::text IS NULL OR type = %(type)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s;

-- name: job_search_scan_state
SELECT id, queue, state, body, content_type, attempts, priority, created_at, available_at,
       lease_expires_at, last_error, origin_queue, origin_id, finished_at,
       type, max_attempts, result, progress, progress_note, started_at, idempotency_key,
       correlation_id, batch_id, cancel_requested
FROM (
    SELECT * FROM (
        (SELECT id, queue, state, body, content_type, attempts, priority, created_at, available_at,
           lease_expires_at, last_error, origin_queue, origin_id, finished_at,
           type, max_attempts, result, progress, progress_note, started_at, idempotency_key,
           correlation_id, batch_id, cancel_requested FROM {schema}.messages
         WHERE type IS NOT NULL AND state <> 'leased'
           AND state = %(state)s::text
           AND created_at >= %(created_from)s::float8
           AND (created_at, id) < (%(before_created)s::float8, %(before_id)s::text)
         ORDER BY created_at DESC, id DESC LIMIT %(scan_limit)s)
        UNION ALL
        (SELECT id, queue, state, body, content_type, attempts, priority, created_at, available_at,
           lease_expires_at, last_error, origin_queue, origin_id, finished_at,
           type, max_attempts, result, progress, progress_note, started_at, idempotency_key,
           correlation_id, batch_id, cancel_requested FROM {schema}.messages
         WHERE type IS NOT NULL AND state = 'leased'
           AND state = %(state)s::text
           AND created_at >= %(created_from)s::float8
           AND (created_at, id) < (%(before_created)s::float8, %(before_id)s::text)
         ORDER BY created_at DESC, id DESC LIMIT %(scan_limit)s)
    ) AS w
    ORDER BY created_at DESC, id DESC
    LIMIT %(scan_limit)s
) AS examined
WHERE (%(state)s::text IS NULL OR state = %(state)s::text)
  AND (%(type)s::text IS NULL OR type = %(type)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s;

-- name: job_search_scan_type
SELECT id, queue, state, body, content_type, attempts, priority, created_at, available_at,
       lease_expires_at, last_error, origin_queue, origin_id, finished_at,
       type, max_attempts, result, progress, progress_note, started_at, idempotency_key,
       correlation_id, batch_id, cancel_requested
FROM (
    SELECT * FROM (
        (SELECT id, queue, state, body, content_type, attempts, priority, created_at, available_at,
           lease_expires_at, last_error, origin_queue, origin_id, finished_at,
           type, max_attempts, result, progress, progress_note, started_at, idempotency_key,
           correlation_id, batch_id, cancel_requested FROM {schema}.messages
         WHERE type IS NOT NULL AND state <> 'leased'
           AND type = %(type)s::text
           AND created_at >= %(created_from)s::float8
           AND (created_at, id) < (%(before_created)s::float8, %(before_id)s::text)
         ORDER BY created_at DESC, id DESC LIMIT %(scan_limit)s)
        UNION ALL
        (SELECT id, queue, state, body, content_type, attempts, priority, created_at, available_at,
           lease_expires_at, last_error, origin_queue, origin_id, finished_at,
           type, max_attempts, result, progress, progress_note, started_at, idempotency_key,
           correlation_id, batch_id, cancel_requested FROM {schema}.messages
         WHERE type IS NOT NULL AND state = 'leased'
           AND type = %(type)s::text
           AND created_at >= %(created_from)s::float8
           AND (created_at, id) < (%(before_created)s::float8, %(before_id)s::text)
         ORDER BY created_at DESC, id DESC LIMIT %(scan_limit)s)
    ) AS w
    ORDER BY created_at DESC, id DESC
    LIMIT %(scan_limit)s
) AS examined
WHERE (%(state)s::text IS NULL OR state = %(state)s::text)
  AND (%(type)s::text IS NULL OR type = %(type)s::text)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s;

-- name: job_search_scan_end
SELECT * FROM (
    (SELECT created_at, id FROM {schema}.messages
     WHERE type IS NOT NULL AND state <> 'leased'
       AND created_at >= %(created_from)s::float8
       AND (created_at, id) < (%(before_created)s::float8, %(before_id)s::text)
     ORDER BY created_at DESC, id DESC LIMIT %(scan_limit)s)
    UNION ALL
    (SELECT created_at, id FROM {schema}.messages
     WHERE type IS NOT NULL AND state = 'leased'
       AND created_at >= %(created_from)s::float8
       AND (created_at, id) < (%(before_created)s::float8, %(before_id)s::text)
     ORDER BY created_at DESC, id DESC LIMIT %(scan_limit)s)
) AS w
ORDER BY created_at DESC, id DESC
OFFSET %(scan_limit)s - 1 LIMIT 1;

-- name: job_search_scan_end_state
SELECT * FROM (
    (SELECT created_at, id FROM {schema}.messages
     WHERE type IS NOT NULL AND state <> 'leased'
       AND state = %(state)s::text
       AND created_at >= %(created_from)s::float8
       AND (created_at, id) < (%(before_created)s::float8, %(before_id)s::text)
     ORDER BY created_at DESC, id DESC LIMIT %(scan_limit)s)
    UNION ALL
    (SELECT created_at, id FROM {schema}.messages
     WHERE type IS NOT NULL AND state = 'leased'
       AND state = %(state)s::text
       AND created_at >= %(created_from)s::float8
       AND (created_at, id) < (%(before_created)s::float8, %(before_id)s::text)
     ORDER BY created_at DESC, id DESC LIMIT %(scan_limit)s)
) AS w
ORDER BY created_at DESC, id DESC
OFFSET %(scan_limit)s - 1 LIMIT 1;

-- name: job_search_scan_end_type
SELECT * FROM (
    (SELECT created_at, id FROM {schema}.messages
     WHERE type IS NOT NULL AND state <> 'leased'
       AND type = %(type)s::text
       AND created_at >= %(created_from)s::float8
       AND (created_at, id) < (%(before_created)s::float8, %(before_id)s::text)
     ORDER BY created_at DESC, id DESC LIMIT %(scan_limit)s)
    UNION ALL
    (SELECT created_at, id FROM {schema}.messages
     WHERE type IS NOT NULL AND state = 'leased'
       AND type = %(type)s::text
       AND created_at >= %(created_from)s::float8
       AND (created_at, id) < (%(before_created)s::float8, %(before_id)s::text)
     ORDER BY created_at DESC, id DESC LIMIT %(scan_limit)s)
) AS w
ORDER BY created_at DESC, id DESC
OFFSET %(scan_limit)s - 1 LIMIT 1;

-- name: job_find
-- Jobs by id, idempotency key, correlation id or batch id: the matches are found through
-- those four indexes first (a BitmapOr), then ordered; planned as one ordered scan of the
-- creation index with a filter, PostgreSQL read a million rows to find one. Leased
-- jobs are not in the batch index (schema 13): those of the batch are read apart.
WITH found AS MATERIALIZED (
    SELECT id, queue, state, body, content_type, attempts, priority, created_at, available_at,
       lease_expires_at, last_error, origin_queue, origin_id, finished_at,
       type, max_attempts, result, progress, progress_note, started_at, idempotency_key,
       correlation_id, batch_id, cancel_requested
    FROM {schema}.messages
    WHERE type IS NOT NULL
      AND (id = %(key)s OR idempotency_key = %(key)s OR correlation_id = %(key)s
           OR (batch_id = %(key)s AND state <> 'leased'))
      AND (created_at, id) < (%(before_created)s::float8, %(before_id)s::text)
    UNION ALL
    SELECT id, queue, state, body, content_type, attempts, priority, created_at, available_at,
       lease_expires_at, last_error, origin_queue, origin_id, finished_at,
       type, max_attempts, result, progress, progress_note, started_at, idempotency_key,
       correlation_id, batch_id, cancel_requested
    FROM {schema}.messages
    WHERE type IS NOT NULL AND state = 'leased' AND batch_id = %(key)s
      AND id <> %(key)s AND idempotency_key IS DISTINCT FROM %(key)s
      AND correlation_id IS DISTINCT FROM %(key)s
      AND (created_at, id) < (%(before_created)s::float8, %(before_id)s::text)
)
SELECT * FROM found
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s;

-- name: job_batch_list
-- The newest batches with their jobs counted by state, each count from the index on
-- (batch_id, state) and stopped at count_limit: a page reads at most limit x 5 x
-- count_limit entries whatever the batches hold (right after a bulk update, before
-- VACUUM, each entry is also checked in the table). Leased jobs are not in that index
-- (schema 13): they are counted apart, every batch of the page in one read of the leased
-- rows (few).
WITH b AS MATERIALIZED (
    SELECT id, type, total, created_at FROM {schema}.job_batches
    ORDER BY created_at DESC LIMIT %(limit)s
), s(state) AS (
    VALUES ('ready'), ('leased'), ('completed'), ('failed'), ('cancelled')
), leased AS MATERIALIZED (
    SELECT batch_id, count(*) AS n FROM {schema}.messages
    WHERE state = 'leased' AND batch_id IN (SELECT id FROM b)
    GROUP BY batch_id
)
SELECT b.id AS id, b.type AS type, b.total AS total, b.created_at AS created_at,
       s.state AS state,
       CASE WHEN s.state = 'leased' THEN
           least(coalesce((SELECT l.n FROM leased AS l WHERE l.batch_id = b.id), 0),
                 %(count_limit)s::bigint)
       ELSE
           (SELECT count(*) FROM (
                SELECT 1 FROM {schema}.messages AS m
                WHERE m.batch_id IS NOT NULL AND m.state <> 'leased'
                  AND m.batch_id = b.id AND m.state = s.state
                LIMIT %(count_limit)s) AS counted)
       END AS count
FROM b CROSS JOIN s
ORDER BY b.created_at DESC, b.id;

-- name: job_ahead_count
-- Counted up to a limit (one more than it means "more than").
SELECT count(*) FROM (
SELECT 1 FROM {schema}.messages
WHERE queue = %(queue)s AND state = 'ready' AND available_at <= {now} AND id <> %(id)s
  AND (priority > %(priority)s
       OR (priority = %(priority)s AND available_at < %(available_at)s::float8))
LIMIT %(count_limit)s) AS ahead;

-- name: job_delete_many
-- The jobs, their history and the idempotency keys that point at them, in one statement.
WITH deleted AS (
    DELETE FROM {schema}.messages
    WHERE type IS NOT NULL AND id = ANY(%(ids)s::text[])
    RETURNING id
), history AS (
    DELETE FROM {schema}.job_attempts WHERE job_id IN (SELECT id FROM deleted)
), keys AS (
    DELETE FROM {schema}.idempotency_keys WHERE job_id IN (SELECT id FROM deleted)
)
SELECT id FROM deleted;

-- name: message_delete_many
DELETE FROM {schema}.messages
WHERE queue = %(queue)s AND state <> 'leased' AND id = ANY(%(ids)s::text[]);

-- name: stats_add
INSERT INTO {schema}.stats_minutes AS s (minute, queue, processed, retried, failed,
                                          duration_sum, h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13)
SELECT (r->>0)::bigint, r->>1, (r->>2)::bigint, (r->>3)::bigint, (r->>4)::bigint,
       (r->>5)::float8, (r->>6)::bigint, (r->>7)::bigint, (r->>8)::bigint, (r->>9)::bigint, (r->>10)::bigint, (r->>11)::bigint, (r->>12)::bigint, (r->>13)::bigint, (r->>14)::bigint, (r->>15)::bigint, (r->>16)::bigint, (r->>17)::bigint, (r->>18)::bigint, (r->>19)::bigint
FROM jsonb_array_elements(%(rows)s::jsonb) AS r
ON CONFLICT (minute, queue) DO UPDATE SET
    processed = s.processed + excluded.processed,
    retried = s.retried + excluded.retried,
    failed = s.failed + excluded.failed,
    duration_sum = s.duration_sum + excluded.duration_sum,
    h0 = s.h0 + excluded.h0, h1 = s.h1 + excluded.h1, h2 = s.h2 + excluded.h2, h3 = s.h3 + excluded.h3, h4 = s.h4 + excluded.h4, h5 = s.h5 + excluded.h5, h6 = s.h6 + excluded.h6, h7 = s.h7 + excluded.h7, h8 = s.h8 + excluded.h8, h9 = s.h9 + excluded.h9, h10 = s.h10 + excluded.h10, h11 = s.h11 + excluded.h11, h12 = s.h12 + excluded.h12, h13 = s.h13 + excluded.h13;

-- name: stats_history
-- Minutes summed into buckets of :step seconds (one row per bucket and queue).
SELECT (minute / %(step)s::bigint) * %(step)s::bigint AS minute, queue, sum(processed) AS processed,
       sum(retried) AS retried, sum(failed) AS failed, sum(duration_sum) AS duration_sum,
       sum(h0) AS h0, sum(h1) AS h1, sum(h2) AS h2, sum(h3) AS h3, sum(h4) AS h4, sum(h5) AS h5, sum(h6) AS h6, sum(h7) AS h7, sum(h8) AS h8, sum(h9) AS h9, sum(h10) AS h10, sum(h11) AS h11, sum(h12) AS h12, sum(h13) AS h13
FROM {schema}.stats_minutes
WHERE minute >= ceil(%(since)s::float8)::bigint AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
GROUP BY (minute / %(step)s::bigint) * %(step)s::bigint, queue
ORDER BY 1, 2;

-- name: stats_prune
DELETE FROM {schema}.stats_minutes WHERE minute < ceil(%(before)s::float8)::bigint;

-- name: queue_rows
SELECT name, paused, settings FROM {schema}.queues
WHERE (%(queue)s::text IS NULL OR name = %(queue)s::text)
ORDER BY name;

-- name: queue_depths
-- Per queue, each count is bounded: it reads at most %(count_limit)s entries of one
-- state's index for that queue (a count equal to the limit means "at least"), so a
-- page costs the same with a thousand jobs or a million. Ready messages are read in
-- creation order (messages_ready_created_idx): the first %(count_limit)s give ready now,
-- delayed and the oldest ready time. The queues: every stored queue row, and any queue
-- holding messages without one, found by skipping through the indexes a queue at a time
-- (ready, leased and the other states each have their own: schemas 5 and 13).
-- The clock is read once (OFFSET 0 keeps the planner from copying the expression into
-- each row's test, where the numeric `extract` cost more than the scan).
WITH RECURSIVE ready_queues(queue) AS (
    (SELECT queue FROM {schema}.messages WHERE state = 'ready' ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT m.queue FROM {schema}.messages AS m
            WHERE m.state = 'ready' AND m.queue > r.queue ORDER BY m.queue LIMIT 1)
    FROM ready_queues AS r WHERE r.queue IS NOT NULL
), other_queues(queue) AS (
    (SELECT queue FROM {schema}.messages WHERE state <> 'ready' AND state <> 'leased'
     ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT m.queue FROM {schema}.messages AS m
            WHERE m.state <> 'ready' AND m.state <> 'leased' AND m.queue > o.queue
            ORDER BY m.queue LIMIT 1)
    FROM other_queues AS o WHERE o.queue IS NOT NULL
), leased_queues(queue) AS (
    (SELECT queue FROM {schema}.messages WHERE state = 'leased' ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT m.queue FROM {schema}.messages AS m
            WHERE m.state = 'leased' AND m.queue > l.queue ORDER BY m.queue LIMIT 1)
    FROM leased_queues AS l WHERE l.queue IS NOT NULL
), names(name) AS (
    SELECT name FROM {schema}.queues WHERE (%(queue)s::text IS NULL OR name = %(queue)s::text)
    UNION SELECT queue FROM ready_queues
          WHERE queue IS NOT NULL AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
    UNION SELECT queue FROM other_queues
          WHERE queue IS NOT NULL AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
    UNION SELECT queue FROM leased_queues
          WHERE queue IS NOT NULL AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
)
SELECT n.name AS queue, r.ready, r.delayed, r.oldest, r.seen AS ready_seen,
       l.leased, f.failed
FROM names AS n
CROSS JOIN (SELECT {now} AS now OFFSET 0) AS clock
CROSS JOIN LATERAL (
    SELECT count(*) FILTER (WHERE w.available_at <= clock.now) AS ready,
           count(*) FILTER (WHERE w.available_at > clock.now) AS delayed,
           min(w.available_at) FILTER (WHERE w.available_at <= clock.now) AS oldest,
           count(*) AS seen
    FROM (SELECT available_at FROM {schema}.messages
          WHERE queue = n.name AND state = 'ready'
          ORDER BY created_at LIMIT %(count_limit)s) AS w
) AS r
CROSS JOIN LATERAL (
    SELECT count(*) AS leased FROM (
        SELECT 1 FROM {schema}.messages WHERE queue = n.name AND state = 'leased'
        LIMIT %(count_limit)s) AS w
) AS l
CROSS JOIN LATERAL (
    SELECT count(*) AS failed FROM (
        SELECT 1 FROM {schema}.messages WHERE queue = n.name AND state = 'failed'
        LIMIT %(count_limit)s) AS w
) AS f;

-- Documents (the namespaced document store) ---------------------------------------------

-- name: doc_put_many
INSERT INTO {schema}.documents AS d (namespace, key, value, updated_at)
SELECT %(namespace)s::text, u.k, u.v::jsonb, {now}
FROM unnest(%(keys)s::text[], %(doc_values)s::text[]) AS u(k, v)
ON CONFLICT (namespace, key) DO UPDATE
SET value = excluded.value, updated_at = excluded.updated_at;

-- name: doc_lock_namespace
-- Serializes inserts that count the namespace (doc_insert with a limit) until commit.
SELECT pg_advisory_xact_lock(hashtextextended('taskflare.documents:' || %(namespace)s::text, 0));

-- name: doc_insert
INSERT INTO {schema}.documents (namespace, key, value, updated_at)
SELECT %(namespace)s::text, %(key)s::text, %(value)s::jsonb, {now}
WHERE %(max_count)s::integer IS NULL
   OR (SELECT count(*) FROM {schema}.documents WHERE namespace = %(namespace)s::text)
      < %(max_count)s::integer
ON CONFLICT (namespace, key) DO NOTHING
RETURNING key;

-- name: doc_get
SELECT namespace, key, value::text AS value, updated_at FROM {schema}.documents
WHERE namespace = %(namespace)s AND key = %(key)s;

-- name: doc_list
SELECT namespace, key, value::text AS value, updated_at FROM {schema}.documents
WHERE namespace = %(namespace)s::text
  AND (%(after)s::text IS NULL OR key > %(after)s::text)
  AND (%(prefix)s::text IS NULL OR starts_with(key, %(prefix)s::text))
ORDER BY key
LIMIT %(limit)s;

-- name: doc_delete
DELETE FROM {schema}.documents WHERE namespace = %(namespace)s AND key = %(key)s RETURNING key;

-- name: doc_count
SELECT count(*) FROM {schema}.documents WHERE namespace = %(namespace)s;

-- name: doc_namespaces
SELECT namespace, count(*) AS count FROM {schema}.documents GROUP BY namespace
ORDER BY namespace;

-- name: job_batch_raise_total
-- A batch that grows while it runs (a crawl discovering pages): the total only rises.
UPDATE {schema}.job_batches SET total = greatest(total, %(total)s::integer)
WHERE id = %(id)s;

-- Flow control ---------------------------------------------------------------------------

-- name: flow_lock
-- Claims of a queue whose jobs have limits take turns (until commit): each one's next
-- statement then sees every earlier claim's leases and spent tokens.
-- Like message_claim_many, the claim does not wait for its WAL flush: lost in a server
-- crash, its jobs are simply ready again (and its spent tokens unspent).
SELECT pg_advisory_xact_lock(hashtextextended('taskflare.flow:' || %(channel)s || ':'
                                              || %(queue)s, 0)),
       set_config('synchronous_commit', 'off', true),
       -- The claim is large to plan (~2-7 ms) and its plan does not depend on the values:
       -- planned once a connection, instead of on every execution.
       set_config('plan_cache_mode', 'force_generic_plan', true),
       set_config('enable_seqscan', 'off', true),
       -- As for the plain claim (claim_settings): the head is read in the ready index's
       -- order and stops at `limit`, never every ready row sorted.
       set_config('enable_sort', 'off', true),
       -- A plan node that stays disabled (the claim's window sort) adds 1e10 to the
       -- estimate, far above jit_above_cost: behind PgBouncer, where the session's
       -- `jit = off` (_configure) is not set, each claim was JIT-compiled, 2-3 s of
       -- server CPU, with the queue's flow lock held meanwhile.
       set_config('jit', 'off', true);

-- name: message_claim_limited_fast
-- message_claim_limited while no limit is near, run right after flow_lock in the same
-- transaction: no rate bucket of the queue's limits has fewer tokens than this claim
-- takes or is held, and no concurrency limit allows fewer than this claim beyond the
-- queue's running jobs (`running_cap`: the least of their amounts minus the claim, NULL
-- when there is none), and the caller saw no limit smaller than a claim. Then no bucket
-- is tight, and message_claim_limited would take the first `limit` claimable jobs as
-- the plain claim does: so does this, and spends their tokens, without that statement's
-- bookkeeping. When it claims nothing, its one row (id NULL) says whether a limit was
-- near: then the caller runs message_claim_limited; else nothing was ready to claim (as
-- an empty plain claim: the caller asks queue_ready_info).
WITH running AS MATERIALIZED (
    -- The queue's running jobs, or an upper bound of them: the row `~running` of
    -- flow_buckets (key: the queue) holds the last count plus every job claimed with
    -- limits since (jobs only stop running otherwise). Counted again only when that
    -- bound is above the cap: the count reads the queue's leased index, dead entries of
    -- jobs finished since the last vacuum included, which costs a drain more than the
    -- rest of the claim whenever another transaction holds back their removal.
    SELECT CASE WHEN %(running_cap)s::float8 IS NULL THEN NULL
                WHEN b.tokens <= %(running_cap)s::float8 THEN b.tokens
                ELSE (SELECT count(*)
                      -- In the order of the queue's leased index, so the plan reads
                      -- that index (not every leased job's, as another could).
                      FROM (SELECT 1 FROM {schema}.messages
                            WHERE queue = %(queue)s AND state = 'leased'
                            ORDER BY lease_expires_at
                            LIMIT %(running_rows)s) AS r)::float8 END AS n
    FROM (SELECT (SELECT tokens FROM {schema}.flow_buckets
                  WHERE family = '~running' AND key = %(queue)s) AS tokens) AS b
), near AS MATERIALIZED (
    SELECT EXISTS (
               SELECT 1
               FROM {schema}.flow_buckets AS b
               JOIN unnest(%(families)s::text[], %(amounts)s::float8[], %(periods)s::float8[],
                           %(bursts)s::float8[]) AS l(family, amount, period, burst)
                 ON l.family = b.family AND l.period > 0
               WHERE b.family = ANY(%(families)s::text[])
                 AND (least(l.burst, b.tokens + greatest({stmt_now} - b.updated_at, 0)
                                                * l.amount / l.period) < %(limit)s
                      OR b.held_until > {stmt_now}))
           OR coalesce((SELECT n FROM running) > %(running_cap)s::float8, false) AS yes
), candidates AS MATERIALIZED (
    SELECT id
    FROM {schema}.messages
    WHERE queue = %(queue)s AND state = 'ready' AND available_at <= {stmt_now}
      AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
      AND NOT EXISTS (SELECT 1 FROM {schema}.queues WHERE name = %(queue)s AND paused)
      AND NOT (SELECT yes FROM near)
    ORDER BY priority DESC, available_at, id
    LIMIT %(limit)s
), claimed AS (
    UPDATE {schema}.messages AS m
    SET state = 'leased',
        attempts = m.attempts + 1,
        lease_id = %(lease_id)s,
        lease_owner = %(owner)s,
        lease_expires_at = {stmt_now} + %(visibility_timeout)s,
        started_at = {stmt_now}
    -- As in message_claim_limited: not locked (claims with limits take turns), checked
    -- again here, looked up by primary key.
    WHERE m.id = ANY(ARRAY(SELECT id FROM candidates))
      AND CASE WHEN m.state = 'ready' THEN true END
    RETURNING m.id, m.queue, m.body, m.content_type, m.attempts, m.created_at, m.priority,
              m.lease_id, m.type, m.max_attempts, m.correlation_id, m.flow_keys,
              m.trace_context
), spent AS (
    -- As in message_claim_limited.
    INSERT INTO {schema}.flow_buckets AS b (family, key, tokens, updated_at)
    SELECT l.family, s.key,
           coalesce(least(l.burst, f.tokens + greatest({stmt_now} - f.updated_at, 0)
                                              * l.amount / l.period), l.burst) - s.n,
           {stmt_now}
    FROM (SELECT split_part(u.bucket, '|', 1) AS family,
                 substr(u.bucket, strpos(u.bucket, '|') + 1) AS key, sum(u.n) AS n
          FROM (SELECT unnest(g.flow_keys) AS bucket, g.n
                FROM (SELECT flow_keys, count(*)::integer AS n FROM claimed
                      GROUP BY flow_keys) AS g) AS u
          WHERE u.bucket LIKE 'r%%' GROUP BY u.bucket) AS s
    JOIN unnest(%(families)s::text[], %(amounts)s::float8[], %(periods)s::float8[],
                %(bursts)s::float8[]) AS l(family, amount, period, burst)
      ON l.period > 0 AND l.family = s.family
    LEFT JOIN {schema}.flow_buckets AS f ON f.family = s.family AND f.key = s.key
    ON CONFLICT (family, key) DO UPDATE
    SET tokens = excluded.tokens, updated_at = greatest(b.updated_at, excluded.updated_at)
), counted AS (
    -- The bound of the queue's running jobs, with this claim's jobs (none when the
    -- count stopped above the cap: then it is no bound, and the next claim counts).
    INSERT INTO {schema}.flow_buckets AS b (family, key, tokens, updated_at)
    SELECT '~running', %(queue)s,
           CASE WHEN r.n > %(running_cap)s::float8 THEN 'Infinity'::float8
                ELSE r.n + (SELECT count(*) FROM claimed) END,
           {stmt_now}
    FROM running AS r
    WHERE r.n IS NOT NULL
    ON CONFLICT (family, key) DO UPDATE
    SET tokens = excluded.tokens, updated_at = excluded.updated_at
), bumped AS (
    -- Without a concurrency limit (now), a bound kept before still counts these jobs.
    UPDATE {schema}.flow_buckets AS b
    SET tokens = b.tokens + (SELECT count(*) FROM claimed)
    WHERE b.family = '~running' AND b.key = %(queue)s
      AND (SELECT n FROM running) IS NULL AND EXISTS (SELECT 1 FROM claimed)
)
SELECT id, queue, body, content_type, attempts, created_at, priority, lease_id,
       type, max_attempts, correlation_id, flow_keys, trace_context, NULL::boolean AS near
FROM claimed
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       (SELECT yes FROM near)
WHERE NOT EXISTS (SELECT 1 FROM claimed);

-- name: message_claim_limited
-- message_claim_many for a queue whose jobs carry limit buckets (`family|key`), run
-- right after flow_lock in the same transaction. A bucket of a concurrency limit
-- (period 0) allows `amount` leased jobs; one of a rate limit holds tokens (a row of
-- flow_buckets, full when it has none yet) refilled at amount/period per second up to
-- `burst`, one spent per job started, and may be held (a 429's back-off).
-- Only *tight* buckets are counted job by job: those allowing fewer jobs than this claim
-- takes (running jobs or spent tokens), and every bucket of a *small* limit (one that
-- allows fewer than the claim even when idle). Jobs needing a tight bucket that allows
-- nothing are skipped by the scan (never claimed, never rewritten); among the rest, a
-- job is taken only if it comes within what each of its tight buckets allows, in claim
-- order. A limit that is far from its budget costs what the plain claim does, plus one
-- look at the running jobs and the token rows: the scan reads `limit` jobs, not `scan`.
-- The spent tokens are written in the same statement. When nothing is claimed, the row
-- describing the queue says when a held bucket frees up.
-- Its clock is statement_timestamp(), not the transaction's now(): the transaction began
-- before it waited for the lock, and the tokens must be counted from when it claims.
-- Planned once a connection (flow_lock), so no step may depend on the planner's row
-- estimates: lookups in the tight buckets go through one jsonb map (`?`, `->>`), never
-- a join whose plan could be a nested loop over a large set.
WITH limits AS MATERIALIZED (
    SELECT l.family, l.amount, l.period, l.burst,
           CASE WHEN l.period = 0 THEN l.amount ELSE floor(l.burst) END AS idle_allows
    FROM unnest(%(families)s::text[], %(amounts)s::float8[], %(periods)s::float8[],
                %(bursts)s::float8[]) AS l(family, amount, period, burst)
), running AS MATERIALIZED (
    SELECT k.bucket, count(*) AS n
    -- Read in the order of the queue's leased index, so the plan reads that index (a
    -- generic plan could otherwise read every leased job's through another).
    FROM (SELECT flow_keys FROM {schema}.messages
          WHERE queue = %(queue)s AND state = 'leased' AND flow_keys IS NOT NULL
          ORDER BY lease_expires_at) AS m,
         unnest(m.flow_keys) AS k(bucket)
    -- Not counted when no concurrency limit can be near: fewer jobs of the queue run
    -- than any of them allows beyond this claim (max_concurrency=10000, say).
    WHERE EXISTS (SELECT 1 FROM limits
                  WHERE period = 0
                    AND amount - %(limit)s < (SELECT count(*)
                                             FROM (SELECT 1 FROM {schema}.messages
                                                   WHERE queue = %(queue)s AND state = 'leased'
                                                   ORDER BY lease_expires_at) AS r))
    GROUP BY k.bucket
), tight AS MATERIALIZED (
    SELECT r.bucket, l.amount - r.n AS allowed, NULL::float8 AS free_at
    FROM running AS r
    JOIN limits AS l ON l.period = 0 AND l.family = split_part(r.bucket, '|', 1)
    WHERE l.amount - r.n < %(limit)s
    UNION ALL
    SELECT t.bucket, CASE WHEN t.held_until > {stmt_now} THEN 0 ELSE floor(t.tokens) END,
           greatest(coalesce(t.held_until, 0),
                    {stmt_now} + greatest(1 - t.tokens, 0) * t.period / t.amount)
    FROM (SELECT b.family || '|' || b.key AS bucket, b.held_until, l.amount, l.period,
                 least(l.burst, b.tokens + greatest({stmt_now} - b.updated_at, 0)
                                           * l.amount / l.period) AS tokens
          FROM {schema}.flow_buckets AS b
          JOIN limits AS l ON l.family = b.family AND l.period > 0
          WHERE b.family = ANY(%(families)s::text[])) AS t
    WHERE t.tokens < %(limit)s OR t.held_until > {stmt_now}
), maps AS MATERIALIZED (
    SELECT coalesce((SELECT jsonb_object_agg(bucket, allowed) FROM tight), '{}') AS tight,
           coalesce((SELECT array_agg(bucket) FROM tight WHERE allowed < 1), '{}') AS blocked,
           coalesce((SELECT jsonb_object_agg(family, idle_allows) FROM limits
                     WHERE idle_allows < %(limit)s), '{}') AS small
), head AS MATERIALIZED (
    -- The first `limit` claimable jobs, as the plain claim reads them.
    SELECT id, priority, available_at, flow_keys
    FROM {schema}.messages
    WHERE queue = %(queue)s AND state = 'ready' AND available_at <= {stmt_now}
      AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
      AND NOT EXISTS (SELECT 1 FROM {schema}.queues WHERE name = %(queue)s AND paused)
      AND (flow_keys IS NULL OR NOT flow_keys && (SELECT blocked FROM maps))
    ORDER BY priority DESC, available_at, id
    LIMIT %(limit)s
), crowded AS MATERIALIZED (
    -- Whether a tight bucket would get more of the head's jobs than it allows.
    SELECT (SELECT tight <> '{}' OR small <> '{}' FROM maps) AND EXISTS (
        SELECT 1
        FROM (SELECT count(*) AS n,
                     min(coalesce((x.tight ->> k.bucket)::float8,
                                  (x.small ->> split_part(k.bucket, '|', 1))::float8)) AS allowed
              FROM maps AS x, head AS c, unnest(c.flow_keys) AS k(bucket)
              WHERE x.tight ? k.bucket OR x.small ? split_part(k.bucket, '|', 1)
              GROUP BY k.bucket) AS g
        WHERE g.n > g.allowed) AS yes
), wide AS MATERIALIZED (
    -- Only then: `scan` jobs, ranked per tight bucket (not read otherwise).
    SELECT id, priority, available_at, flow_keys
    FROM {schema}.messages
    WHERE (SELECT yes FROM crowded)
      AND queue = %(queue)s AND state = 'ready' AND available_at <= {stmt_now}
      AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))
      AND (flow_keys IS NULL OR NOT flow_keys && (SELECT blocked FROM maps))
    ORDER BY priority DESC, available_at, id
    LIMIT %(scan)s
), over AS MATERIALIZED (
    -- Jobs beyond what one of their tight buckets allows.
    SELECT p.id
    FROM (SELECT c.id,
                 coalesce((x.tight ->> k.bucket)::float8,
                          (x.small ->> split_part(k.bucket, '|', 1))::float8) AS allowed,
                 row_number() OVER (PARTITION BY k.bucket
                                    ORDER BY c.priority DESC, c.available_at, c.id) AS rank
          FROM maps AS x, wide AS c, unnest(c.flow_keys) AS k(bucket)
          WHERE x.tight ? k.bucket OR x.small ? split_part(k.bucket, '|', 1)) AS p
    WHERE p.rank > p.allowed
), chosen AS (
    SELECT id FROM head WHERE NOT (SELECT yes FROM crowded)
    UNION ALL
    SELECT w.id
    FROM (SELECT id FROM wide WHERE id NOT IN (SELECT id FROM over)
          ORDER BY priority DESC, available_at, id
          LIMIT %(limit)s) AS w
), claimed AS (
    UPDATE {schema}.messages AS m
    SET state = 'leased',
        attempts = m.attempts + 1,
        lease_id = %(lease_id)s,
        lease_owner = %(owner)s,
        lease_expires_at = {stmt_now} + %(visibility_timeout)s,
        started_at = {stmt_now}
    -- Candidates are not locked (claims with limits take turns), so the state is checked
    -- again here; written as a CASE so the plan looks the ids up by primary key instead
    -- of reading the whole ready index (which `m.state = 'ready'` would allow).
    WHERE m.id = ANY(ARRAY(SELECT id FROM chosen))
      AND CASE WHEN m.state = 'ready' THEN true END
    RETURNING m.id, m.queue, m.body, m.content_type, m.attempts, m.created_at, m.priority,
              m.lease_id, m.type, m.max_attempts, m.correlation_id, m.flow_keys,
              m.trace_context
), spent AS (
    -- One row per rate bucket of the claimed jobs: its tokens (refilled, then spent).
    INSERT INTO {schema}.flow_buckets AS b (family, key, tokens, updated_at)
    SELECT l.family, s.key,
           coalesce(least(l.burst, f.tokens + greatest({stmt_now} - f.updated_at, 0)
                                              * l.amount / l.period), l.burst) - s.n,
           {stmt_now}
    FROM (SELECT split_part(u.bucket, '|', 1) AS family,
                 substr(u.bucket, strpos(u.bucket, '|') + 1) AS key, sum(u.n) AS n
          -- Counted per distinct flow_keys first (most claimed jobs share theirs), then
          -- per bucket: about half the work of unnesting every job's keys.
          FROM (SELECT unnest(g.flow_keys) AS bucket, g.n
                FROM (SELECT flow_keys, count(*)::integer AS n FROM claimed
                      GROUP BY flow_keys) AS g) AS u
          WHERE u.bucket LIKE 'r%%' GROUP BY u.bucket) AS s
    JOIN limits AS l ON l.period > 0 AND l.family = s.family
    LEFT JOIN {schema}.flow_buckets AS f ON f.family = s.family AND f.key = s.key
    ON CONFLICT (family, key) DO UPDATE
    SET tokens = excluded.tokens, updated_at = greatest(b.updated_at, excluded.updated_at)
), bumped AS (
    -- The bound of the queue's running jobs that message_claim_limited_fast keeps
    -- counts these jobs too.
    UPDATE {schema}.flow_buckets AS b
    SET tokens = b.tokens + (SELECT count(*) FROM claimed)
    WHERE b.family = '~running' AND b.key = %(queue)s AND EXISTS (SELECT 1 FROM claimed)
)
SELECT id, queue, body, content_type, attempts, created_at, priority, lease_id,
       type, max_attempts, correlation_id, flow_keys, trace_context,
       NULL::bigint AS ready_count, NULL::float8 AS oldest_available_at,
       NULL::float8 AS next_available_at, NULL::boolean AS paused, NULL::float8 AS now
FROM claimed
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    0,
    NULL,
    least(
        (SELECT min(available_at) FROM {schema}.messages
         WHERE queue = %(queue)s AND state = 'ready' AND available_at > {stmt_now}
           AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s::text[]))),
        (SELECT min(free_at) FROM tight WHERE allowed < 1),
        CASE WHEN EXISTS (SELECT 1 FROM tight WHERE allowed < 1 AND free_at IS NULL)
             THEN {stmt_now} + %(concurrency_poll)s END),
    coalesce((SELECT paused FROM {schema}.queues WHERE name = %(queue)s), false),
    {stmt_now}
WHERE NOT EXISTS (SELECT 1 FROM claimed);

-- name: flow_hold
-- A 429's back-off: no job needing these buckets is claimed before held_until. A bucket
-- seen for the first time starts empty (it refills from the end of the hold).
INSERT INTO {schema}.flow_buckets AS b (family, key, tokens, updated_at, held_until)
SELECT split_part(h.bucket, '|', 1), substr(h.bucket, strpos(h.bucket, '|') + 1), 0, {now},
       {now} + %(seconds)s::float8
FROM unnest(%(buckets)s::text[]) AS h(bucket)
ON CONFLICT (family, key) DO UPDATE
SET held_until = greatest(coalesce(b.held_until, 0), excluded.held_until);

-- name: flow_stats
-- Per limit: distinct keys of unfinished jobs, running jobs, ready jobs held by a bucket
-- that allows nothing now, starts over the last `window` seconds, the earliest hold end.
WITH limits AS (
    SELECT l.family, l.amount, l.period, l.burst
    FROM unnest(%(families)s::text[], %(amounts)s::float8[], %(periods)s::float8[],
                %(bursts)s::float8[]) AS l(family, amount, period, burst)
), jobs AS MATERIALIZED (
    SELECT m.state, m.available_at, m.started_at, k.bucket,
           split_part(k.bucket, '|', 1) AS family
    FROM {schema}.messages AS m, unnest(m.flow_keys) AS k(bucket)
    WHERE m.flow_keys IS NOT NULL
      AND (m.state IN ('ready', 'leased') OR m.started_at > {now} - %(window)s)
), running AS (
    SELECT bucket, count(*) AS n FROM jobs WHERE state = 'leased' GROUP BY bucket
), rates AS (
    SELECT b.family || '|' || b.key AS bucket, b.family,
           least(l.burst, b.tokens + greatest({now} - b.updated_at, 0) * l.amount / l.period)
               AS tokens,
           b.held_until, l.amount, l.period
    FROM {schema}.flow_buckets AS b JOIN limits AS l ON l.family = b.family AND l.period > 0
), blocked AS (
    SELECT r.bucket, NULL::float8 AS until FROM running AS r
    JOIN limits AS l ON l.period = 0 AND l.family = split_part(r.bucket, '|', 1)
    WHERE r.n >= l.amount
    UNION ALL
    SELECT bucket, greatest(coalesce(held_until, 0),
                            {now} + greatest(1 - tokens, 0) * period / amount)
    FROM rates WHERE tokens < 1 OR held_until > {now}
)
SELECT l.family AS family,
       (SELECT count(DISTINCT j.bucket) FROM jobs AS j
        WHERE j.family = l.family AND j.state IN ('ready', 'leased')) AS keys,
       (SELECT count(*) FROM jobs AS j WHERE j.family = l.family AND j.state = 'leased')
           AS running,
       (SELECT count(*) FROM jobs AS j
        WHERE j.family = l.family AND j.state = 'ready' AND j.available_at <= {now}
          AND j.bucket IN (SELECT bucket FROM blocked)) AS waiting,
       (SELECT count(*) FROM jobs AS j
        WHERE j.family = l.family AND j.started_at > {now} - %(window)s) AS started,
       (SELECT min(b.until) FROM blocked AS b WHERE split_part(b.bucket, '|', 1) = l.family)
           AS held_until
FROM limits AS l
ORDER BY l.family;

-- name: flow_job_hold
-- Why a pending job is not claimed yet: its buckets that allow nothing now, and until
-- when (NULL for a full concurrency limit: until one of its jobs ends).
WITH limits AS (
    SELECT l.family, l.amount, l.period, l.burst
    FROM unnest(%(families)s::text[], %(amounts)s::float8[], %(periods)s::float8[],
                %(bursts)s::float8[]) AS l(family, amount, period, burst)
), job AS (
    SELECT k.bucket, split_part(k.bucket, '|', 1) AS family, m.queue
    FROM {schema}.messages AS m, unnest(m.flow_keys) AS k(bucket)
    WHERE m.id = %(id)s
)
SELECT j.bucket AS bucket, NULL::float8 AS until
FROM job AS j JOIN limits AS l ON l.family = j.family AND l.period = 0
WHERE (SELECT count(*) FROM {schema}.messages AS m
       WHERE m.queue = j.queue AND m.state = 'leased' AND j.bucket = ANY(m.flow_keys))
      >= l.amount
UNION ALL
SELECT j.bucket,
       greatest(coalesce(b.held_until, 0),
                {now} + greatest(1 - least(l.burst, b.tokens + greatest({now} - b.updated_at, 0)
                                                         * l.amount / l.period), 0)
                        * l.period / l.amount)
FROM job AS j JOIN limits AS l ON l.family = j.family AND l.period > 0
JOIN {schema}.flow_buckets AS b ON b.family || '|' || b.key = j.bucket
WHERE b.held_until > {now}
   OR least(l.burst, b.tokens + greatest({now} - b.updated_at, 0) * l.amount / l.period) < 1;
