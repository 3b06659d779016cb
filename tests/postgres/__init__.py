"""PostgreSQL-only behaviour: transactional enqueue, schemas, migrations, NOTIFY."""
