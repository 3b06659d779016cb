"""Regenerate the screenshots of docs/dashboard.md (docs/images/dashboard-*.png).

Fills a fresh SQLite database with examples/dashboard_demo.py, runs `taskflare serve`
and `taskflare worker` on it, lets the worker run for a few seconds, then signs in with
headless Debian Chromium and photographs every page at 1280x800 (and the overview on a
390-pixel phone in dark mode).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images"
BIN = Path(sys.executable).parent
TOKEN = "screenshot-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASKFLARE_")}
        env |= {
            "TASKFLARE_DATABASE_URL": f"sqlite:///{folder}/demo.db",
            "TASKFLARE_API_TOKEN": TOKEN,
            "PYTHONPATH": str(ROOT / "examples"),
        }
        port = free_port()
        subprocess.run(
            [BIN / "python", ROOT / "examples" / "dashboard_demo.py"], env=env, check=True
        )
        spec = "dashboard_demo:app"
        procs = [
            subprocess.Popen([BIN / "taskflare", "serve", spec, "--port", str(port)], env=env),
            subprocess.Popen([BIN / "taskflare", "worker", spec, "--concurrency", "8"], env=env),
        ]
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("taskflare serve did not start")
                time.sleep(0.2)
            time.sleep(12)  # the worker runs the demo's jobs and reports its minute
            shoot(f"{base}/dashboard")
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(30)


def shoot(dashboard: str) -> None:
    pages = {
        "overview": "/",
        "queue": "/queues/emails",
        "dead-letters": "/queues/emails/dlq",
        "jobs": "/jobs",
        "cron": "/cron",
        "workers": "/workers",
        "batches": "/batches",
    }
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{dashboard}/login")
            page.fill("#token", TOKEN)
            page.click("form button[type=submit]")
            page.wait_for_url(f"{dashboard}/")
            for name, path in pages.items():
                page.goto(dashboard + path)
                page.screenshot(path=OUT / f"dashboard-{name}.png")
            page.goto(f"{dashboard}/jobs?status=failed")
            page.click("table.rows tbody tr a")
            page.screenshot(path=OUT / "dashboard-job.png", full_page=True)
            phone = browser.new_page(
                viewport={"width": 390, "height": 844}, color_scheme="dark", device_scale_factor=1
            )
            phone.context.add_cookies(page.context.cookies())
            phone.goto(f"{dashboard}/")
            phone.screenshot(path=OUT / "dashboard-phone-dark.png")
        finally:
            browser.close()
    print(f"screenshots written to {OUT}")


if __name__ == "__main__":
    main()
