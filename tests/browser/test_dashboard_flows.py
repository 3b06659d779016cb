"""The dashboard end to end in Chromium, with a real `taskflare serve` and a real worker
process: live numbers, repairs from the pages, pause/resume, bulk actions, cron, workers."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from helpers import HTTP_TIMEOUT
from taskflare import App

from .conftest import Stack, poll

pytestmark = pytest.mark.xdist_group("dashboard-flows")


def test_overview_numbers_rise_live_without_a_reload(page: Any, stack: Stack) -> None:
    page.goto(f"{stack.dashboard}/")
    page.evaluate("window.__sameDocument = true")
    ids = [stack.enqueue({"sleep": 1.0, "rows": n}) for n in range(8)]
    # While they run, the in-flight column of their queue rises, and so does the
    # processed-per-minute figure the workers report.
    in_flight = page.locator('tr[data-queue="reports"] td[data-col="leased"]')
    poll(lambda: int(in_flight.inner_text()) > 0, 15, "jobs in flight on the page")
    rate = page.locator('tr[data-queue="reports"] td[data-col="rate"]')
    poll(lambda: float(rate.inner_text()) > 0, 20, "a processing rate on the page")
    assert page.evaluate("window.__sameDocument") is True  # refreshed in place, not reloaded
    # A rate shows as soon as the first job ends; the others are still running then
    # (the worker's concurrency may be below eight), so wait for the rest to finish.
    poll(lambda: all(stack.job(i)["status"] == "completed" for i in ids), 30, "all eight done")


def test_failed_job_is_retried_from_its_page_and_ends_completed(page: Any, stack: Stack) -> None:
    stack.flag.touch()
    job_id = stack.enqueue({"flaky": True, "note": "first try"})
    poll(lambda: stack.job(job_id)["status"] == "failed", 15, "the job to fail")
    page.goto(f"{stack.dashboard}/jobs/{job_id}")
    assert page.get_by_test_id("job-status").inner_text() == "failed"
    page.get_by_text("traceback").first.click()
    assert "PermanentError" in page.locator("pre.traceback").first.inner_text()
    stack.flag.unlink()
    page.get_by_test_id("retry").click()
    page.wait_for_url(re.compile(f"/jobs/{job_id}$"))
    assert "retry queued" in page.locator(".flash").inner_text()
    # The page refreshes itself until the job has finished.
    poll(lambda: page.get_by_test_id("job-status").inner_text() == "completed", 20, "completed")
    assert stack.job(job_id)["status"] == "completed"


def test_dead_letters_are_replayed_and_consumed(page: Any, stack: Stack) -> None:
    stack.flag.touch()
    stack.send("emails", {"fail_while_flag": True, "to": "dlq@example.com"})
    stack.send("emails", {"fail_while_flag": True, "to": "one@example.com"})
    poll(lambda: stack.queue("emails-dlq")["depth"]["ready"] >= 2, 15, "two dead letters")
    page.goto(f"{stack.dashboard}/queues/emails/dlq")
    assert "dlq@example.com" in page.locator("table.rows").inner_text()
    stack.flag.unlink()
    # One row's own Replay button sends back that message only.
    row = page.locator("table.rows tbody tr", has_text="one@example.com")
    row.get_by_test_id("replay-one").click()
    page.wait_for_url(re.compile("/queues/emails/dlq$"))
    assert "Replayed 1 messages" in page.locator(".flash").inner_text()
    assert "one@example.com" not in page.locator("table.rows").inner_text()
    assert "dlq@example.com" in page.locator("table.rows").inner_text()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id("replay-all").click()
    page.wait_for_url(re.compile("/queues/emails/dlq$"))
    assert re.search(r"Replayed [1-9]\d* messages", page.locator(".flash").inner_text())
    poll(
        lambda: (
            stack.queue("emails-dlq")["depth"]["ready"] == 0
            and stack.queue("emails")["depth"]["ready"] == 0
            and stack.queue("emails")["depth"]["leased"] == 0
        ),
        15,
        "the replayed message to be consumed",
    )


def test_a_paused_queue_is_not_consumed_until_resumed(page: Any, stack: Stack) -> None:
    page.goto(f"{stack.dashboard}/queues/emails")
    page.get_by_test_id("pause-toggle").click()
    page.wait_for_url(re.compile("/queues/emails$"))
    assert page.get_by_test_id("paused").is_visible()
    assert stack.queue("emails")["paused"] is True
    page.fill("#body", '{"to": "paused@example.com"}')
    page.get_by_test_id("send").click()
    assert "Sent test message" in page.locator(".flash").inner_text()
    # Paused: it stays ready while the worker keeps running (checked for two seconds).
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        assert stack.queue("emails")["depth"]["ready"] == 1
        time.sleep(0.1)
    page.get_by_test_id("pause-toggle").click()
    page.wait_for_url(re.compile("/queues/emails$"))
    assert page.get_by_test_id("pause-toggle").inner_text() == "Pause"
    poll(lambda: stack.queue("emails")["depth"]["ready"] == 0, 15, "consumption after resume")


def test_purge_needs_the_queue_name_typed(page: Any, stack: Stack) -> None:
    with stack.api() as api:
        api.post("/queues/emails/pause").raise_for_status()
    try:
        for n in range(3):
            stack.send("emails", {"n": n})
        page.goto(f"{stack.dashboard}/queues/emails")
        purge = page.get_by_test_id("purge")
        assert purge.is_disabled()  # until the name is typed
        page.fill("#confirm", "email")
        assert purge.is_disabled()
        page.fill("#confirm", "emails")
        purge.click()
        assert "Purged 3 messages" in page.locator(".flash").inner_text()
        assert stack.queue("emails")["depth"]["ready"] == 0
    finally:
        with stack.api() as api:
            api.post("/queues/emails/resume").raise_for_status()


def test_jobs_filter_search_and_bulk_retry_of_all_that_match(page: Any, stack: Stack) -> None:
    stack.flag.touch()
    marker = f"bulk-{time.monotonic_ns()}"
    ids = [stack.enqueue({"flaky": True, "note": marker, "n": n}) for n in range(7)]
    poll(lambda: all(stack.job(i)["status"] == "failed" for i in ids), 20, "7 failures")
    stack.flag.unlink()
    page.goto(f"{stack.dashboard}/jobs?status=failed&text={marker}")
    rows = page.locator("table.rows tbody tr")
    assert rows.count() == 7
    # Search by id finds exactly one.
    page.goto(f"{stack.dashboard}/jobs?key={ids[3]}")
    assert page.locator("table.rows tbody tr").count() == 1
    page.goto(f"{stack.dashboard}/jobs?status=failed&text={marker}")
    page.select_option("[data-testid=bulk-action]", "retry")
    messages: list[str] = []

    def accept(dialog: Any) -> None:
        messages.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    page.get_by_test_id("bulk-all").click()
    status = page.locator("[data-bulk-status]")
    poll(lambda: "finished" in status.inner_text(), 20, "bulk done", lambda: status.inner_text())
    assert messages == ["retry all 7 matching jobs?"]  # the count before confirming
    poll(lambda: all(stack.job(i)["status"] == "completed" for i in ids), 20, "retried jobs")


def test_jobs_list_pages_with_a_cursor(page: Any, stack: Stack) -> None:
    note = f"paging-{time.monotonic_ns()}"
    for n in range(55):
        stack.enqueue({"rows": n, "note": note}, delaySeconds=3600)
    page.goto(f"{stack.dashboard}/jobs?text={note}")
    assert page.locator("table.rows tbody tr").count() == 50
    first_page = page.locator("table.rows tbody").inner_text()
    page.get_by_test_id("next-page").click()
    assert page.locator("table.rows tbody tr").count() == 5
    assert page.locator("table.rows tbody").inner_text() not in first_page
    # Clean up: cancel them through the selection form.
    page.goto(f"{stack.dashboard}/jobs?text={note}&status=pending")
    page.select_option("[data-testid=bulk-action]", "delete")
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id("bulk-all").click()
    poll(lambda: "finished" in page.locator("[data-bulk-status]").inner_text(), 20, "deleted")
    with stack.api() as api:
        left = api.get("/jobs", params={"status": "pending", "limit": 1000}).json()["jobs"]
    assert not [j for j in left if j["payload"].get("note") == note]


def test_pending_job_says_why_it_is_not_running(page: Any, stack: Stack) -> None:
    job_id = stack.enqueue({"rows": 1}, delaySeconds=3600)
    page.goto(f"{stack.dashboard}/jobs/{job_id}")
    why = page.get_by_test_id("why-pending").inner_text()
    assert "scheduled for later" in why and "in 60 min" in why
    with stack.api() as api:
        api.post("/queues/reports/pause").raise_for_status()
        try:
            page.reload()
            assert "queue 'reports' is paused" in page.get_by_test_id("why-pending").inner_text()
        finally:
            api.post("/queues/reports/resume").raise_for_status()
        api.delete(f"/jobs/{job_id}").raise_for_status()


def test_cron_page_in_words_next_runs_and_trigger_now(page: Any, stack: Stack) -> None:
    page.goto(f"{stack.dashboard}/cron")
    card = page.locator('[data-trigger="nightly"]')
    assert card.get_by_test_id("cron-words").inner_text() == "At 00:00 (UTC)"
    assert card.locator("ol.next li").count() == 5
    card.get_by_test_id("trigger").click()
    assert "Triggered nightly" in page.locator(".flash").inner_text()
    runs = page.locator('[data-trigger="nightly"] tbody')

    def completed() -> bool:
        page.reload()
        return "completed" in runs.inner_text()

    poll(completed, 15, "the manual run to complete", runs.inner_text)
    assert "manual" in page.locator('[data-trigger="nightly"] tbody').inner_text()


def test_workers_page_shows_the_live_worker(page: Any, stack: Stack) -> None:
    pid = stack.procs["worker"].pid
    page.goto(f"{stack.dashboard}/workers")
    row = page.locator("tr.alive", has_text=str(pid))
    poll(lambda: row.count() == 1, 15, "the worker's row")
    text = row.inner_text()
    assert "emails" in text and "reports" in text and "live" in text


def test_batches_page_links_to_its_jobs(page: Any, stack: Stack) -> None:
    # enqueue_many runs here, through an app on the same database.
    app = App(stack.database_url)
    app.job("report", queue="reports", max_attempts=1)(lambda payload: None)
    try:
        batch_id = app.enqueue_many_sync("report", [{"rows": n} for n in range(4)])
    finally:
        app.close_sync()
    page.goto(f"{stack.dashboard}/batches")
    link = page.get_by_role("link", name=batch_id)
    poll(lambda: "100.0%" in page.locator("tr", has_text=batch_id).inner_text(), 20, "progress")
    link.click()
    assert page.locator("table.rows tbody tr").count() == 4


def test_phone_layout_keyboard_and_dark_mode(browser: Any, stack: Stack) -> None:
    from .conftest import sign_in

    context = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme="dark")
    try:
        tab = context.new_page()
        sign_in(tab, stack)
        for path in ("/", "/jobs", "/queues/emails", "/cron", "/workers"):
            tab.goto(f"{stack.dashboard}{path}")
            width = tab.evaluate("document.documentElement.scrollWidth")
            assert width <= 392, f"{path} is {width}px wide on a 390px phone"
        background = tab.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(21, 23, 27)"  # the dark palette
        stack.enqueue({"rows": 1})
        tab.goto(f"{stack.dashboard}/")
        tab.keyboard.press("g")
        tab.keyboard.press("j")
        tab.wait_for_url(re.compile("/dashboard/jobs$"))
        tab.keyboard.press("j")
        focused = tab.evaluate("document.activeElement.closest('tr') !== null")
        assert focused
    finally:
        context.close()


def test_every_page_loads_only_its_own_assets_under_the_csp(page: Any, stack: Stack) -> None:
    # Every page answers 200 with the dashboard's CSP, and loads nothing from elsewhere.
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    for path in (
        "/",
        "/jobs",
        "/queues/emails",
        "/queues/emails/messages",
        "/cron",
        "/workers",
        "/batches",
    ):
        response = page.goto(f"{stack.dashboard}{path}")
        assert response.status == 200, path
        assert "script-src 'self'" in response.headers["content-security-policy"]
    assert all(url.startswith(stack.url) for url in requested)
    with httpx.Client(timeout=HTTP_TIMEOUT) as client:
        assert client.get(f"{stack.dashboard}/static/dashboard.css").status_code == 200
