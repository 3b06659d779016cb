"""The dashboard's guard in Chromium: sign-in, session cookie, read-only sessions, CSRF,
nothing changes on GET, stored text shown as text, and the same numbers as the API."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from helpers import HTTP_TIMEOUT

from .conftest import READ_TOKEN, WRITE_TOKEN, Stack, expect_failed_load, poll, sign_in

pytestmark = pytest.mark.xdist_group("dashboard-security")

EVIL = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


def test_sign_in_sets_a_strict_http_only_cookie_and_sign_out_ends_it(
    browser: Any, stack: Stack
) -> None:
    context = browser.new_context()
    try:
        tab = context.new_page()
        tab.goto(f"{stack.url}/")  # a browser at the root lands on the dashboard's sign-in
        assert re.search(r"/dashboard/login\?next=", tab.url)
        tab.fill("#token", "not-the-token")
        tab.click("form button[type=submit]")
        assert tab.get_by_role("alert").inner_text() == "That token is not valid."
        sign_in(tab, stack)
        cookie = next(c for c in context.cookies() if c["name"] == "taskflare_session")
        assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
        assert cookie["path"] == "/dashboard"
        assert "TASKFLARE" not in cookie["value"] and "dash-write" not in cookie["value"]
        tab.get_by_role("button", name="Sign out").click()
        tab.wait_for_url(re.compile("/dashboard/login"))
        tab.goto(f"{stack.dashboard}/jobs")
        assert "/dashboard/login" in tab.url  # signed out: back to the form
    finally:
        context.close()


def test_read_only_session_sees_everything_and_can_change_nothing(
    browser: Any, stack: Stack
) -> None:
    job_id = stack.enqueue({"rows": 5}, delaySeconds=3600)
    context = browser.new_context()
    try:
        tab = context.new_page()
        sign_in(tab, stack, READ_TOKEN)
        assert tab.locator(".badge.read-only").is_visible()
        for path in (
            "/",
            "/jobs",
            f"/jobs/{job_id}",
            "/queues/emails",
            "/queues/emails/dlq",
            "/cron",
            "/workers",
            "/batches",
        ):
            tab.goto(f"{stack.dashboard}{path}")
            forms = tab.locator("form[method=post]")
            actions = [forms.nth(i).get_attribute("action") for i in range(forms.count())]
            assert actions == ["/dashboard/logout"], (path, actions)
        # A forged POST with the session's own cookie and a valid CSRF token: still 403.
        tab.goto(f"{stack.dashboard}/jobs/{job_id}")
        csrf = tab.locator("input[name=csrf]").first.get_attribute("value")
        status = tab.evaluate(
            """async ([url, csrf]) => (await fetch(url, {method: "POST",
                body: new URLSearchParams({csrf})})).status""",
            [f"{stack.dashboard}/jobs/{job_id}/cancel", csrf],
        )
        assert status == 403
        assert stack.job(job_id)["status"] == "pending"
    finally:
        context.close()


def test_forms_need_the_csrf_token_and_gets_change_nothing(page: Any, stack: Stack) -> None:
    job_id = stack.enqueue({"rows": 6}, delaySeconds=3600)
    page.goto(f"{stack.dashboard}/jobs/{job_id}")
    expect_failed_load(page, f"/jobs/{job_id}/cancel")  # refused below, on purpose
    no_token = page.evaluate(
        """async (url) => (await fetch(url, {method: "POST",
            body: new URLSearchParams({csrf: "forged"})})).status""",
        f"{stack.dashboard}/jobs/{job_id}/cancel",
    )
    assert no_token == 403
    got = page.goto(f"{stack.dashboard}/jobs/{job_id}/cancel")  # a GET on an action
    assert got is not None and got.status in (404, 405)
    assert stack.job(job_id)["status"] == "pending"
    # Another site's page cannot post either (the Origin is checked before the token).
    with httpx.Client(timeout=HTTP_TIMEOUT) as client:
        forged = client.post(
            f"{stack.dashboard}/jobs/{job_id}/cancel",
            data={"csrf": "x"},
            headers={"Origin": "https://evil.example", "Cookie": page.context.cookies()[0]["name"]},
        )
    assert forged.status_code == 403
    assert stack.job(job_id)["status"] == "pending"


def test_stored_script_renders_as_text_and_never_runs(page: Any, stack: Stack) -> None:
    stack.flag.touch()
    try:
        job_id = stack.enqueue({"flaky": True, "note": EVIL, EVIL: EVIL})
        poll(lambda: stack.job(job_id)["status"] == "failed", 15, "the job to fail")
    finally:
        stack.flag.unlink()
    stack.send("emails", {"to": EVIL})
    with stack.api() as api:
        api.post(
            "/queues/emails-dlq/messages", json={"body": EVIL, "contentType": "text"}
        ).raise_for_status()
    for path in (
        f"/jobs/{job_id}",
        "/jobs?text=onerror",
        "/queues/emails-dlq/messages",
        "/queues/emails/messages",
    ):
        page.goto(f"{stack.dashboard}{path}")
        assert page.evaluate("window.__pwned") is None, path
        assert page.locator("main img").count() == 0, path
    page.goto(f"{stack.dashboard}/jobs/{job_id}")
    assert "<script>window.__pwned = 1</script>" in page.get_by_test_id("payload").inner_text()
    assert "<script>" in page.get_by_test_id("job-error").inner_text()


def test_the_dashboard_shows_the_numbers_the_api_gives(page: Any, stack: Stack) -> None:
    with stack.api() as api:
        api.post("/queues/emails/pause").raise_for_status()
        try:
            for n in range(4):
                stack.send("emails", {"n": n})
            queues = api.get("/queues").json()["queues"]
            page.goto(f"{stack.dashboard}/")
            for queue in queues:
                row = page.locator(f'tr[data-queue="{queue["name"]}"]')
                shown = {
                    col: int(row.locator(f'td[data-col="{col}"]').inner_text())
                    for col in ("ready", "delayed", "leased", "failed")
                }
                depth = queue["depth"]
                assert shown["ready"] + shown["delayed"] == depth["ready"], queue["name"]
                assert shown["leased"] == depth["leased"] and shown["failed"] == depth["failed"]
            failed = sum(q["depth"]["failed"] for q in queues)
            assert int(page.get_by_test_id("total-failed").inner_text()) == failed
        finally:
            api.post("/queues/emails/purge", json={"confirm": "emails"}).raise_for_status()
            api.post("/queues/emails/resume").raise_for_status()


def test_api_keeps_its_paths_and_tokens(stack: Stack) -> None:
    with httpx.Client(base_url=stack.url, timeout=HTTP_TIMEOUT) as client:
        assert client.get("/jobs").status_code == 401  # the API still wants its bearer token
        assert client.get("/", headers={"Accept": "application/json"}).json()["dashboard"]
        page = client.get("/dashboard/", follow_redirects=False)
        assert page.status_code == 303 and "/dashboard/login" in page.headers["location"]


def test_signing_in_from_a_page_lands_on_that_page(browser: Any, stack: Stack) -> None:
    context = browser.new_context()
    try:
        tab = context.new_page()
        for start, lands in ((f"{stack.url}/", "/dashboard/"), (f"{stack.dashboard}/cron", None)):
            tab.goto(start)
            assert "/dashboard/login?next=" in tab.url
            tab.fill("#token", WRITE_TOKEN)
            tab.click("form button[type=submit]")
            tab.wait_for_url(start if lands is None else f"{stack.url}{lands}")
            assert not tab.title().startswith("Error"), tab.title()
            tab.get_by_role("button", name="Sign out").click()
            tab.wait_for_url(re.compile("/dashboard/login"))
    finally:
        context.close()
