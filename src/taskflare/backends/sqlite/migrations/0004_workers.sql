-- taskflare schema 4: worker reports. Each worker upserts its row every few seconds
-- with its counters, so /metrics and `taskflare stats` see every worker's work.
CREATE TABLE workers (
    id         TEXT PRIMARY KEY,
    hostname   TEXT NOT NULL,
    pid        INTEGER NOT NULL,
    started_at REAL NOT NULL,
    last_seen  REAL NOT NULL,
    stats      TEXT NOT NULL DEFAULT '{}'
);
