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
from .content import GenerateContent, content
from .crawl import CrawlSettings, CrawlWebsite, crawler
from .email import EmailSettings, SendEmail, email
from .embeddings import GenerateEmbedding, embeddings
from .imports import BatchImport, ImportSettings, imports
from .net import BlockedDestination, DestinationPolicy
from .openai_api import AiSettings
from .webhooks import WebhookDelivery, WebhookSettings, webhooks

__all__ = [
    "AiSettings",
    "BatchImport",
    "BlockedDestination",
    "ContribSettings",
    "CrawlSettings",
    "CrawlWebsite",
    "DestinationPolicy",
    "EmailSettings",
    "GenerateContent",
    "GenerateEmbedding",
    "ImportSettings",
    "JobOptions",
    "SendEmail",
    "Sink",
    "WebhookDelivery",
    "WebhookSettings",
    "content",
    "crawler",
    "email",
    "embeddings",
    "imports",
    "webhooks",
]
