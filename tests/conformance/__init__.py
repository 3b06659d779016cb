"""The storage protocol, method by method, called directly on each backend (River's
riverdrivertest): every test runs unchanged on SQLite and on PostgreSQL."""
