"""The HTTP service (FastAPI): the seed's job API, queues, pull consumers, webhooks, metrics,
and the web dashboard (`create_dashboard`, mounted at /dashboard by `create_api`)."""

from .api import create_api
from .common import Tokens
from .dashboard import create_dashboard

__all__ = ["Tokens", "create_api", "create_dashboard"]
