-- taskflare schema 3: cron ticks. One row per trigger and tick decides, across every
-- worker, that the tick runs once (or records that it was skipped). Mirrors
-- sqlite/migrations/0003_cron.sql.
CREATE TABLE cron_ticks (
    name       text NOT NULL,
    tick       double precision NOT NULL,
    status     text NOT NULL,
    job_id     text,
    created_at double precision NOT NULL,
    PRIMARY KEY (name, tick)
);
