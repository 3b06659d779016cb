"""Job handlers: imported by taskflare when Django starts (TASKFLARE["TASKS_MODULE"])."""

from typing import Any

from django.utils import timezone

from taskflare.integrations.django import get_app

from .models import Signup

app = get_app()


@app.job("send-welcome", max_attempts=5)
def send_welcome(payload: dict[str, Any]) -> dict[str, Any]:
    # A plain function runs in a worker thread, where the ORM works as in a view.
    Signup.objects.filter(email=payload["email"]).update(welcomed_at=timezone.now())
    return {"welcomed": payload["email"]}
