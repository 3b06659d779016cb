-- taskflare schema 3: cron ticks. One row per trigger and tick decides, across every
-- worker, that the tick runs once (or records that it was skipped).
CREATE TABLE cron_ticks (
    name       TEXT NOT NULL,
    tick       REAL NOT NULL,
    status     TEXT NOT NULL,
    job_id     TEXT,
    created_at REAL NOT NULL,
    PRIMARY KEY (name, tick)
);
