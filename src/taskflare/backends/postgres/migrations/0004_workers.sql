-- taskflare schema 4: worker reports. Each worker upserts its row every few seconds
-- with its counters, so /metrics and `taskflare stats` see every worker's work.
-- Mirrors sqlite/migrations/0004_workers.sql.
CREATE TABLE workers (
    id         text PRIMARY KEY,
    hostname   text NOT NULL,
    pid        integer NOT NULL,
    started_at double precision NOT NULL,
    last_seen  double precision NOT NULL,
    stats      text NOT NULL DEFAULT '{}'
);
