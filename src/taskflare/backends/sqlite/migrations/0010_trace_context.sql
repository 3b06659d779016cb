-- taskflare schema 10: the W3C trace context of the producer (OpenTelemetry), stored with
-- the message or job when tracing is on (NULL otherwise: an untraced enqueue does not
-- name the column at all). A JSON object of the propagator's fields, e.g.
-- {"traceparent": "00-...-01"}. Mirrors postgres/migrations/0010.
ALTER TABLE messages ADD COLUMN trace_context TEXT;
