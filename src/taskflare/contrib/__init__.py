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
from .imports import BatchImport, ImportSettings, imports
from .net import BlockedDestination, DestinationPolicy
from .webhooks import WebhookDelivery, WebhookSettings, webhooks

__all__ = [
    "BatchImport",
    "BlockedDestination",
    "ContribSettings",
    "DestinationPolicy",
    "EmailSettings",
    "ImportSettings",
    "JobOptions",
    "SendEmail",
    "Sink",
    "WebhookDelivery",
    "WebhookSettings",
    "email",
    "imports",
    "webhooks",
]
