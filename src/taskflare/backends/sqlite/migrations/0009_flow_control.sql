-- taskflare schema 9: flow control. A job that is rate- or concurrency-limited carries
-- the buckets it needs (a JSON array of `family|key`, NULL for a job without limits);
-- the token buckets of rate limits live in flow_buckets, one row per bucket that has
-- been used, updated by the claim that spends their tokens. Concurrency limits need no
-- state: they count the queue's leased rows. Mirrors postgres/migrations/0009.
ALTER TABLE messages ADD COLUMN flow_keys TEXT;

CREATE TABLE flow_buckets (
    family     TEXT NOT NULL,
    key        TEXT NOT NULL,
    tokens     REAL NOT NULL,
    updated_at REAL NOT NULL,
    held_until REAL,
    PRIMARY KEY (family, key)
);
