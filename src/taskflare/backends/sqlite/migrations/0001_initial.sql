-- taskflare schema 1: messages, queues.
CREATE TABLE messages (
    id               TEXT PRIMARY KEY,
    queue            TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'ready',
    body             BLOB NOT NULL,
    content_type     TEXT NOT NULL,
    priority         INTEGER NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0,
    created_at       REAL NOT NULL,
    available_at     REAL NOT NULL,
    lease_id         TEXT,
    lease_owner      TEXT,
    lease_expires_at REAL,
    last_error       TEXT,
    origin_queue     TEXT,
    origin_id        TEXT,
    finished_at      REAL
);

-- The claim path reads only this index: finished rows never slow a fetch.
CREATE INDEX messages_ready_idx
    ON messages (queue, priority DESC, available_at, id)
    WHERE state = 'ready';

-- The lease rescuer and the heartbeat read only leased rows (a heartbeat matches by
-- lease id among them; an index on lease_id cost more on every claim than it saved).
CREATE INDEX messages_leased_idx
    ON messages (queue, lease_expires_at)
    WHERE state = 'leased';

CREATE INDEX messages_queue_state_idx ON messages (queue, state, created_at);

CREATE TABLE queues (
    name       TEXT PRIMARY KEY,
    paused     INTEGER NOT NULL DEFAULT 0,
    settings   TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
