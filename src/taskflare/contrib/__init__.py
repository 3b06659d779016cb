"""Built-in job types, each registered with one call:

```python
from taskflare import App, contrib

app = App()
app.use(contrib.email(), contrib.webhooks(), contrib.imports())
```

Each takes a typed settings object whose fields also come from `TASKFLARE_*` environment
variables; secrets are `SecretStr` and never appear in logs, results or the HTTP API.
"""

from .common import ContribSettings, JobOptions, Sink
from .email import EmailSettings, SendEmail, email

__all__ = [
    "ContribSettings",
    "EmailSettings",
    "JobOptions",
    "SendEmail",
    "Sink",
    "email",
]
