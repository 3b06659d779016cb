"""The PostgreSQL backend: many workers on many machines (SKIP LOCKED, LISTEN/NOTIFY)."""
