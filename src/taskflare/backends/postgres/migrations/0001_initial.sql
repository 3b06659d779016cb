-- taskflare schema 1: messages, queues. Mirrors sqlite/migrations/0001_initial.sql.
-- Runs with search_path set to the app's schema. Times are epoch seconds (float8),
-- read from the server's clock, exactly as the protocol exchanges them.
CREATE TABLE messages (
    id               text PRIMARY KEY,
    queue            text NOT NULL,
    state            text NOT NULL DEFAULT 'ready',
    body             bytea NOT NULL,
    content_type     text NOT NULL,
    priority         integer NOT NULL DEFAULT 0,
    attempts         integer NOT NULL DEFAULT 0,
    created_at       double precision NOT NULL,
    available_at     double precision NOT NULL,
    lease_id         text,
    lease_owner      text,
    lease_expires_at double precision,
    last_error       text,
    origin_queue     text,
    origin_id        text,
    finished_at      double precision
);

-- The claim path reads only this index: finished rows never slow a fetch.
CREATE INDEX messages_ready_idx
    ON messages (queue, priority DESC, available_at, id)
    WHERE state = 'ready';

-- The lease rescuer reads only leased rows.
CREATE INDEX messages_leased_idx
    ON messages (queue, lease_expires_at)
    WHERE state = 'leased';

CREATE INDEX messages_lease_id_idx
    ON messages (lease_id)
    WHERE state = 'leased';

CREATE INDEX messages_queue_state_idx ON messages (queue, state, created_at);

CREATE TABLE queues (
    name       text PRIMARY KEY,
    paused     boolean NOT NULL DEFAULT false,
    settings   text NOT NULL DEFAULT '{}',
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL
);
