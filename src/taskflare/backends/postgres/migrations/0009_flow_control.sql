-- taskflare schema 9: flow control. A job that is rate- or concurrency-limited carries
-- the buckets it needs (`family|key`, NULL for a job without limits); the token buckets
-- of rate limits live in flow_buckets, one row per bucket that has been used, updated by
-- the claim that spends their tokens. Concurrency limits need no state: they count the
-- queue's leased rows (few: one per running job). Mirrors sqlite/migrations/0009; runs
-- with search_path set to the app's schema.
ALTER TABLE messages ADD COLUMN flow_keys text[];

CREATE TABLE flow_buckets (
    family     text NOT NULL,
    key        text NOT NULL,
    tokens     double precision NOT NULL,
    updated_at double precision NOT NULL,
    held_until double precision,
    PRIMARY KEY (family, key)
);
