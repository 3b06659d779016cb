"""Django integration: add `"taskflare.integrations.django"` to `INSTALLED_APPS`.

The app is built from `settings.TASKFLARE` (see `conf`), job handlers are declared in
each installed app's `tasks.py` (imported at start-up), `python manage.py taskflare ...`
runs the `taskflare` command line on that app, and `enqueue`, `enqueue_many`, `send` and
`send_batch` join the transaction of Django's connection on PostgreSQL (elsewhere they
wait for its commit).
"""

from __future__ import annotations

from .conf import get_app
from .transaction import enqueue, enqueue_many, send, send_batch

__all__ = ["enqueue", "enqueue_many", "get_app", "send", "send_batch"]
