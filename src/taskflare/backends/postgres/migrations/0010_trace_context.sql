-- taskflare schema 10: the W3C trace context of the producer (OpenTelemetry), stored with
-- the message or job when tracing is on (NULL otherwise: an untraced enqueue does not
-- name the column at all). A JSON object of the propagator's fields, e.g.
-- {"traceparent": "00-...-01"}. Mirrors sqlite/migrations/0010; runs with search_path
-- set to the app's schema.
ALTER TABLE messages ADD COLUMN trace_context text;
