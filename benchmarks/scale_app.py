"""The app `benchmarks/scale.py` runs in its worker processes: a no-op job and a job that
sleeps 10 ms, on the database `$SCALE_DATABASE_URL` names."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from taskflare import App

app = App(os.environ["SCALE_DATABASE_URL"])


@app.job("noop")
async def noop(payload: dict[str, Any]) -> None:
    return None


@app.job("nap", queue="naps")
async def nap(payload: dict[str, Any]) -> None:
    await asyncio.sleep(0.01)
