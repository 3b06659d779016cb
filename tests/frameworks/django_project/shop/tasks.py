"""The shop's job handlers, imported by taskflare when Django starts."""

from taskflare.integrations.django import get_app

from .models import Signup

app = get_app()
audit = app.queue("audit", max_batch_timeout=0)


@app.job("send-welcome")
def send_welcome(payload: dict) -> dict:
    Signup.objects.filter(email=payload["email"]).update(welcomed=True)
    return {"welcomed": payload["email"]}


@app.job("tag-signup")
def tag_signup(payload: dict) -> None:
    pass


@audit.consumer
def record(batch) -> None:
    pass
