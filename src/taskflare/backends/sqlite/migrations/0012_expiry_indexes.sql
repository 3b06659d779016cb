-- taskflare schema 12: the expiry of idempotency keys and `ctx.once` results by index.
-- The pruner deletes expired rows of both tables on every pass (`job_prune`); without an
-- index on expires_at each pass read the whole table, with a million keyed jobs a
-- million rows a minute on every worker, holding the write lock. (Schema 11 changed
-- only PostgreSQL's indexes.) Mirrors postgres/migrations/0012.
CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys (expires_at);
CREATE INDEX once_results_expires_idx ON once_results (expires_at);
