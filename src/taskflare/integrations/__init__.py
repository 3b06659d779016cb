"""Integrations with web frameworks and ORMs: Django (`taskflare.integrations.django`),
Flask (`taskflare.integrations.flask`) and SQLAlchemy sessions
(`taskflare.integrations.sqlalchemy`). Each needs its extra: `taskflare[django]`,
`taskflare[flask]`."""
