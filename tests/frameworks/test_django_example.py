"""examples/django_shop runs as its docstring says: migrate, a signup through the view,
`manage.py taskflare worker` welcomes it, `manage.py taskflare jobs list` shows the job."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from frameworks.test_django import base_env, manage, running
from integration.procs import wait_for

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "django_shop"
SIGN_UP = """
from django.test import Client
client = Client()
print(client.post("/signup/", {"email": "ada@example.com"}).status_code)
print(client.post("/signup/", {"email": "ada@example.com"}).status_code)
print(client.post("/signup/", {"email": "not-an-email"}).status_code)
"""
WELCOMED = """
from signups.models import Signup
print(Signup.objects.get(email="ada@example.com").welcomed_at is not None)
"""


def test_django_shop_example(tmp_path: Path) -> None:
    env = base_env(
        SHOP_SQLITE=str(tmp_path / "shop.db"),
        TASKFLARE_DATABASE_URL=f"sqlite:///{tmp_path / 'taskflare.db'}",
    )
    for args in (["migrate", "--verbosity", "0"], ["shell", "--verbosity", "0", "-c", SIGN_UP]):
        result = manage(env, *args, project=EXAMPLE)
        assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["201", "409", "400"]

    def jobs() -> list[dict[str, Any]]:
        listed = manage(env, "taskflare", "jobs", "list", "--json", project=EXAMPLE)
        assert listed.returncode == 0, listed.stderr
        found: list[dict[str, Any]] = json.loads(listed.stdout)["jobs"]
        return found

    assert [job["status"] for job in jobs()] == ["pending"]
    log = tmp_path / "worker.log"
    with running(env, "taskflare", "worker", log=log, project=EXAMPLE):
        wait_for(lambda: jobs()[0]["status"] == "completed", 60, "the welcome job to complete")
    welcomed = manage(env, "shell", "--verbosity", "0", "-c", WELCOMED, project=EXAMPLE)
    assert welcomed.stdout.strip() == "True", welcomed.stderr
