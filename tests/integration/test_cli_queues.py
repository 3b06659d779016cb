"""`taskflare queues ...`, `send` and `dlq ...` as real processes, on both backends."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from taskflare import App
from taskflare.backends.base import ClaimParams, MessageListParams
from taskflare.ids import uuid7

from .cli_run import make_dead_letters, migrated, ok, one_line_error, tf, tf_json, tf_many


def _records(url: str, queue: str) -> dict[str, tuple[str, bytes, float, float]]:
    app = App(url)

    async def read() -> dict[str, tuple[str, bytes, float, float]]:
        records = await (await app.backend()).message_list(MessageListParams(queue, None, 1000))
        return {
            r.id: (r.content_type, bytes(r.body), r.created_at, r.available_at) for r in records
        }

    try:
        return app.run_sync(read())
    finally:
        app.close_sync()


def test_send_stores_json_text_and_bytes_and_delays_then_list_and_info_show_depth(
    database_url: str,
) -> None:
    migrated(database_url)  # as a worker's first start does
    # No app has declared "emails" here: sending to it needs --create (a typo must not
    # create a queue no one consumes).
    first = ok("send", "emails", '{"to": "a@b.c"}', "--create", url=database_url).strip()
    # --database-url works without the environment variable too.
    text = ok(
        "send",
        "emails",
        "hello",
        "--content-type",
        "text",
        "--database-url",
        database_url,
        url=None,
    ).strip()
    raw = ok(
        "send", "emails", "bin!", "--content-type", "bytes", "--delay", "30", url=database_url
    ).strip()
    stored = _records(database_url, "emails")
    assert stored[first][:2] == ("json", b'{"to":"a@b.c"}')
    assert stored[text][:2] == ("text", b"hello")
    assert stored[raw][:2] == ("bytes", b"bin!")
    created, available = stored[raw][2:]
    assert 29 <= available - created <= 31
    assert stored[first][3] - stored[first][2] < 1

    listed = tf_json("queues", "list", url=database_url)
    assert listed["count"] == 1
    (queue,) = listed["queues"]
    assert queue["name"] == "emails" and queue["paused"] is False
    assert queue["depth"]["ready"] == 3 and queue["depth"]["leased"] == 0
    assert isinstance(queue["oldestPendingAgeSeconds"], float)
    info = tf_json("queues", "info", "emails", url=database_url)
    assert info["name"] == "emails" and info["depth"] == queue["depth"]
    table = ok("queues", "list", url=database_url)
    assert "emails" in table and "oldest pending" in table


def test_send_without_delay_waits_the_stored_queues_delivery_delay(database_url: str) -> None:
    """`taskflare send` without `--delay` takes the queue's `delivery_delay` (as stored by
    the app that declared it); `--delay 0` sends at once."""
    app = App(database_url)
    app.queue("later", delivery_delay=45)
    try:
        app.run_sync(app.declare_queues())
    finally:
        app.close_sync()
    waits = ok("send", "later", "{}", url=database_url).strip()
    now = ok("send", "later", "{}", "--delay", "0", url=database_url).strip()
    stored = _records(database_url, "later")
    created, available = stored[waits][2:]
    assert 44 <= available - created <= 46
    assert stored[now][3] - stored[now][2] < 1


def test_send_with_a_bad_body_or_option_is_a_usage_error_and_stores_nothing(
    database_url: str,
) -> None:
    bad_json, bad_type, bad_delay, nan, huge = tf_many(
        [
            ["send", "emails", "{not json"],
            ["send", "emails", "x", "--content-type", "pickle"],
            ["send", "emails", "{}", "--delay", "-5"],
            ["send", "emails", '{"to": "a", "score": [1, NaN]}'],
            ["send", "emails", '{"to": "a", "score": -1e400}'],
        ],
        url=database_url,
    )
    assert "BODY is not valid JSON" in one_line_error(bad_json, 2)
    assert "body.score[1]: NaN is not a JSON number" in one_line_error(nan, 2)
    assert "body.score: -Infinity is not a JSON number" in one_line_error(huge, 2)
    assert "pickle" in one_line_error(bad_type, 2)
    assert "delay" in one_line_error(bad_delay, 2)
    # Nothing was stored, not even an empty database: reading it says so.
    assert "nothing was created" in one_line_error(tf("queues", "list", url=database_url), 1)


def test_send_of_a_body_the_queue_cannot_take_is_a_usage_error_and_stores_nothing(
    database_url: str,
) -> None:
    """A body the stored queue cannot take (nested too deep to encode) is bad input like a
    body that is not JSON (exit 2); it was reported as a failed operation (1)."""
    migrated(database_url)  # as a worker's first start does
    ok("send", "emails", "--create", "{}", url=database_url)
    deep = tf("send", "emails", "[" * 300 + "]" * 300, url=database_url)
    assert "body is not JSON" in one_line_error(deep, 2)
    assert tf_json("queues", "info", "emails", url=database_url)["depth"]["ready"] == 1


def test_pause_and_resume_show_in_info(database_url: str) -> None:
    migrated(database_url)  # as a worker's first start does
    ok("send", "emails", "--create", "{}", url=database_url)
    assert "paused" in ok("queues", "pause", "emails", url=database_url)
    assert tf_json("queues", "info", "emails", url=database_url)["paused"] is True
    assert "paused" in ok("queues", "info", "emails", url=database_url)
    assert "resumed" in ok("queues", "resume", "emails", url=database_url)
    assert tf_json("queues", "info", "emails", url=database_url)["paused"] is False


def test_wranglers_pause_delivery_resume_delivery_and_purge_force_spellings_work(
    database_url: str,
) -> None:
    """`wrangler queues pause-delivery|resume-delivery <q>` and `purge <q> --force`, as a
    Cloudflare user types them: the same as `pause`, `resume` and `purge --yes`."""
    migrated(database_url)  # as a worker's first start does
    ok("send", "emails", "--create", "{}", url=database_url)
    assert "paused" in ok("queues", "pause-delivery", "emails", url=database_url)
    assert tf_json("queues", "info", "emails", url=database_url)["paused"] is True
    assert "resumed" in ok("queues", "resume-delivery", "emails", url=database_url)
    assert tf_json("queues", "info", "emails", url=database_url)["paused"] is False
    assert "purged 1 messages" in ok("queues", "purge", "emails", "--force", url=database_url)


def test_purge_asks_first_and_no_keeps_every_message(database_url: str) -> None:
    migrated(database_url)  # as a worker's first start does
    for body in ('{"a": 1}', '{"a": 2}'):
        ok("send", "emails", "--create", body, url=database_url)
    ok("send", "emails", '{"a": 3}', "--delay", "600", url=database_url)
    refused = tf("queues", "purge", "emails", url=database_url, input="n\n")
    assert "Delete 3 messages of queue 'emails'?" in refused.stdout
    # A "no", or no answer at all (a script's closed stdin), is one error line, exit 1,
    # saying what happened and how a script skips the question.
    for result in (refused, tf("queues", "purge", "emails", url=database_url, input="")):
        line = one_line_error(result)
        assert "purge of queue 'emails' not confirmed: nothing was deleted" in line
        assert "--yes" in line
    assert tf_json("queues", "info", "emails", url=database_url)["depth"]["ready"] == 3

    accepted = tf("queues", "purge", "emails", url=database_url, input="y\n")
    assert accepted.returncode == 0, accepted.stderr
    assert "purged 3 messages" in accepted.stdout
    assert _records(database_url, "emails") == {}

    ok("send", "emails", "--create", "{}", url=database_url)
    assert "purged 1 messages" in ok("queues", "purge", "emails", "--yes", url=database_url)


def test_purge_of_a_queue_with_nothing_waiting_asks_nothing_and_succeeds(
    database_url: str,
) -> None:
    migrated(database_url)  # as a worker's first start does
    ok("send", "emails", "--create", "{}", url=database_url)
    leased = _lease_one(database_url, "emails")
    # No terminal and no --yes: there is nothing to confirm, so nothing is asked.
    done = tf("queues", "purge", "emails", url=database_url, input="")
    assert done.returncode == 0, done.stderr
    assert "Delete" not in done.stdout
    assert (
        "nothing to purge: no message of queue 'emails' waits for delivery (1 in flight are kept)"
        in done.stdout
    )
    assert list(_records(database_url, "emails")) == [leased]


def _lease_one(url: str, queue: str) -> str:
    """Lease one message of `queue` as a consumer would; its id."""
    app = App(url)

    async def claim() -> str:
        claimed = await (await app.backend()).message_claim_many(
            ClaimParams(queue, 1, uuid7(), "test", 300.0)
        )
        return claimed.messages[0].id

    try:
        return app.run_sync(claim())
    finally:
        app.close_sync()


def test_purge_counts_and_deletes_what_waits_and_keeps_what_is_in_flight(
    database_url: str,
) -> None:
    migrated(database_url)  # as a worker's first start does
    for body in ('{"a": 1}', '{"a": 2}'):
        ok("send", "emails", "--create", body, url=database_url)
    leased = _lease_one(database_url, "emails")
    refused = tf("queues", "purge", "emails", url=database_url, input="n\n")
    assert "Delete 1 messages of queue 'emails' (1 in flight are kept)?" in refused.stdout
    assert "purged 1 messages" in ok("queues", "purge", "emails", "--yes", url=database_url)
    assert list(_records(database_url, "emails")) == [leased]


def test_dlq_list_shows_dead_letters_and_reprocess_by_id_sends_one_back(
    database_url: str,
) -> None:
    dead = make_dead_letters(database_url, 3)
    listed = tf_json("dlq", "list", "work", url=database_url)
    assert (listed["queue"], listed["deadLetterQueue"], listed["count"]) == ("work", "work-dlq", 3)
    assert sorted(m["id"] for m in listed["messages"]) == sorted(dead)
    assert {m["originQueue"] for m in listed["messages"]} == {"work"}
    assert sorted(m["body"]["i"] for m in listed["messages"]) == [0, 1, 2]
    # As over HTTP, a queue without a dead-letter queue (a DLQ itself, here) has none.
    itself = one_line_error(tf("dlq", "list", "work-dlq", url=database_url))
    assert "'work-dlq' has no dead_letter_queue (it is the dead-letter queue of 'work')" in itself
    table = ok("dlq", "list", "work", url=database_url)
    assert "dead letters of work (in work-dlq)" in table and dead[0] in table

    out = ok("dlq", "reprocess", "work", "--id", dead[0], url=database_url)
    # Off a terminal, stdout is the summary alone (no progress bar's blank line).
    assert out == "reprocessed 1 messages from 'work'\n"
    assert tf_json("dlq", "list", "work", url=database_url)["count"] == 2
    assert tf_json("queues", "info", "work", url=database_url)["depth"]["ready"] == 1


def test_dlq_reprocess_of_2000_dead_letters_shows_progress_and_sends_all_back(
    database_url: str,
) -> None:
    make_dead_letters(database_url, 2000)
    started = time.monotonic()
    # Rich draws progress only on a terminal: make it believe it has one.
    result = tf("dlq", "reprocess", "work", url=database_url, FORCE_COLOR="1", TTY_INTERACTIVE="1")
    assert result.returncode == 0, result.stderr
    # The bar goes to stderr; stdout keeps the summary alone, for scripts and pipes.
    assert "reprocessing work-dlq" in result.stderr
    assert result.stdout == "reprocessed 2000 messages from 'work'\n"
    assert time.monotonic() - started < 30
    assert tf_json("dlq", "list", "work", url=database_url)["count"] == 0
    assert tf_json("queues", "info", "work", url=database_url)["depth"]["ready"] == 2000


def test_dlq_commands_on_a_queue_without_a_dlq_fail_as_http_does(database_url: str) -> None:
    migrated(database_url)  # as a worker's first start does
    ok("send", "emails", "--create", '{"live": true}', url=database_url)
    for command in (["dlq", "list", "emails"], ["dlq", "reprocess", "emails"]):
        line = one_line_error(tf(*command, url=database_url))
        assert "queue 'emails' has no dead_letter_queue" in line
    assert tf_json("queues", "info", "emails", url=database_url)["depth"]["ready"] == 1


def test_dlq_reprocess_of_ids_that_are_not_dead_letters_fails_and_changes_nothing(
    database_url: str,
) -> None:
    dead = make_dead_letters(database_url, 2)
    for ids in (["bogus"], [dead[0], "bogus"]):
        args = [arg for i in ids for arg in ("--id", i)]
        line = one_line_error(tf("dlq", "reprocess", "work", *args, url=database_url))
        assert "not dead letters of 'work' (nothing was reprocessed): bogus" in line
    assert tf_json("dlq", "list", "work", url=database_url)["count"] == 2
    assert "reprocessed 2 messages" in ok(
        "dlq", "reprocess", "work", "--id", dead[0], "--id", dead[1], url=database_url
    )


def test_queues_failed_lists_failed_messages_with_their_last_error(database_url: str) -> None:
    make_dead_letters(database_url, 3)
    failed = tf_json("queues", "failed", "work", url=database_url)
    assert (failed["queue"], failed["count"]) == ("work", 3)
    assert {(m["state"], m["lastError"]) for m in failed["messages"]} == {("failed", "boom")}
    table = ok("queues", "failed", "work", url=database_url)
    assert all(m["id"] in table for m in failed["messages"]) and "boom" in table
    assert "no queue named 'nope'" in one_line_error(
        tf("queues", "failed", "nope", url=database_url)
    )


def test_wrangler_check_prints_declarations_and_unsupported_keys(tmp_path: Path) -> None:
    files = Path(__file__).resolve().parents[1] / "fixtures" / "wrangler"
    out = ok("wrangler", "check", str(files / "chat.jsonc"), "--env", "preview", url=None)
    assert "queue title-generation-queue-preview: consumer, binding TITLE_GENERATION_QUEUE" in out
    assert "dead_letter_queue='title-generation-dlq-preview'" in out
    assert "not used: env.preview.queues.consumers[0].max_wait_time_ms" in out
    checked = tf_json("wrangler", "check", str(files / "cleanup.jsonc"), url=None)
    assert checked["crons"] == ["0 0 * * *", "0 */6 * * *", "0 9 * * 1"]
    unknown = tf("wrangler", "check", str(files / "chat.jsonc"), "--env", "staging", url=None)
    assert "no environment 'staging'" in one_line_error(unknown)
    missing = tf("wrangler", "check", str(tmp_path / "wrangler.toml"), url=None)
    assert "cannot read" in one_line_error(missing)


BAD_WRANGLER = """
[[queues.consumers]]
queue = "emails"
max_batch_size = 500
max_retries = "three"
max_batch_timeout = -1
retry_delay = "soon"
visibility_timeout_ms = "later"

[triggers]
crons = ["*/5 * * * *", "61 * * * *"]
"""


def test_wrangler_check_refuses_what_use_wrangler_refuses_with_key_paths(tmp_path: Path) -> None:
    from taskflare import InvalidQueueConfig

    path = tmp_path / "wrangler.toml"
    path.write_text(BAD_WRANGLER)
    result = tf("wrangler", "check", str(path), url=None)
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    expected = [
        "queues.consumers[0].max_batch_size: ",
        "queues.consumers[0].max_retries: ",
        "queues.consumers[0].max_batch_timeout: ",
        "queues.consumers[0].retry_delay: ",
        "queues.consumers[0].visibility_timeout_ms: ",
        "triggers.crons[1]: ",
    ]
    assert len(errors) == len(expected), result.stderr
    for line, where in zip(errors, expected, strict=True):
        assert line.startswith(f"error: {path}: {where}"), line
    assert "500" in errors[0] and "'three'" in errors[1]
    with pytest.raises(InvalidQueueConfig) as refused:
        App(f"sqlite:///{tmp_path / 'w.db'}").use_wrangler(str(path))
    text = str(refused.value)
    assert str(path) in text and "queues.consumers[0].max_batch_size" in text


# Malformed wrangler files: one of each level, and what the one error line must say.
MALFORMED_WRANGLER = {
    "consumer-without-queue.jsonc": (
        '{"queues": {"consumers": [{"max_retries": 1}]}}',
        "queues.consumers[0].queue: required",
    ),
    "consumers-as-table.jsonc": (
        '{"queues": {"consumers": {"queue": "a"}}}',
        "queues.consumers: must be a list/array, got a table/object",
    ),
    "queues-as-list.jsonc": ('{"queues": [1]}', "queues: must be a table/object"),
    "crons-as-string.jsonc": (
        '{"triggers": {"crons": "0 0 * * *"}}',
        "triggers.crons: must be a list/array, got '0 0 * * *'",
    ),
    "producer-binding.toml": (
        '[[queues.producers]]\nqueue = "a"\nbinding = 1\n',
        "queues.producers[0].binding: must be a string, got 1",
    ),
    "env-consumer.jsonc": (
        '{"env": {"preview": {"queues": {"consumers": [{"queue": "a", "type": "pull"}]}}}}',
        "env.preview.queues.consumers[0].type: must be 'worker' or 'http_pull', got 'pull'",
    ),
    "two-consumers.toml": (
        '[[queues.consumers]]\nqueue = "a"\ntype = "http_pull"\nmax_batch_timeout = 61\n'
        '[[queues.consumers]]\nqueue = "a"\n',
        "queues.consumers[1]: a second consumer of queue 'a' (the first is queues.consumers[0])",
    ),
    "repeated-key.jsonc": (
        '{"triggers": {"crons": []}, "triggers": {"crons": ["@daily"]}}',
        "triggers: given more than once",
    ),
    "broken.jsonc": ('{\n  "queues": {,\n}', ':2:15: not valid JSONC: Unexpected "\\n"'),
    "broken.toml": ("[queues\n", ":1:8: not valid TOML: "),
}


def test_wrangler_check_of_a_malformed_file_is_one_error_line_with_the_key_path(
    tmp_path: Path,
) -> None:
    paths = []
    for name, (body, _) in MALFORMED_WRANGLER.items():
        paths.append(tmp_path / name)
        paths[-1].write_text(body)
    results = tf_many([["wrangler", "check", str(path)] for path in paths], url=None)
    for path, result, (_, expected) in zip(
        paths, results, MALFORMED_WRANGLER.values(), strict=True
    ):
        line = one_line_error(result)  # exit 1, one `error:` line, no traceback
        assert line.startswith(f"error: {path}"), line
        assert expected in line, line
    as_json = tf("wrangler", "check", str(paths[0]), "--json", url=None)
    assert MALFORMED_WRANGLER[paths[0].name][1] in one_line_error(as_json)
    assert as_json.stdout == ""
