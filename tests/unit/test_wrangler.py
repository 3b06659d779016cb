"""wrangler.toml / wrangler.jsonc files shaped like real Cloudflare projects' configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskflare import App
from taskflare.errors import InvalidConfig
from taskflare.wrangler import WranglerConfigError, load_wrangler

FILES = Path(__file__).resolve().parents[1] / "fixtures" / "wrangler"


def by_name(path: Path, env: str | None = None) -> dict[str, object]:
    return {q.name: q for q in load_wrangler(path, env).queues}


def test_jsonc_with_comments_and_trailing_commas() -> None:
    config = load_wrangler(FILES / "chat.jsonc")
    [queue] = config.queues
    assert queue.name == "title-generation-queue" and queue.consumer == "worker"
    assert queue.binding == "TITLE_GENERATION_QUEUE"
    assert queue.settings == {
        "max_batch_size": 10,
        "max_batch_timeout": 5,
        "max_retries": 3,
        "retry_delay": 60,
    }
    assert "d1_databases: not about queues or cron triggers: ignored" in config.unsupported
    assert any(
        line.startswith("env: environments preview, production") for line in config.unsupported
    )


def test_env_selects_its_own_queues_and_says_what_it_cannot_take() -> None:
    preview = load_wrangler(FILES / "chat.jsonc", "preview")
    names = [q.name for q in preview.queues]
    assert names == ["title-generation-queue-preview", "title-generation-dlq-preview"]
    assert preview.queues[0].settings["dead_letter_queue"] == "title-generation-dlq-preview"
    assert preview.unsupported[-1].startswith(
        "env.preview.queues.consumers[0].max_wait_time_ms: use max_batch_timeout"
    )
    production = load_wrangler(FILES / "chat.jsonc", "production")
    assert production.queues[0].settings == {
        "max_batch_size": 20,
        "max_concurrency": 4,
        "delivery_delay": 10,  # the producer's: the queue's default delay
    }
    assert not any("delivery_delay" in u for u in production.unsupported)
    with pytest.raises(WranglerConfigError, match=r"no environment 'staging'.*preview, production"):
        load_wrangler(FILES / "chat.jsonc", "staging")


def test_toml_with_a_dead_letter_queue_and_a_pull_consumer() -> None:
    queues = by_name(FILES / "external-api.toml")
    main = queues["external-api-queue"]
    assert main.settings["dead_letter_queue"] == "external-api-dlq"  # type: ignore[attr-defined]
    assert queues["external-api-dlq"].binding == "EXTERNAL_API_DLQ"  # type: ignore[attr-defined]
    pull = queues["pull-queue"]
    assert pull.consumer == "http_pull"  # type: ignore[attr-defined]
    assert pull.settings == {"visibility_timeout": 5.0, "max_retries": 2}  # type: ignore[attr-defined]


def test_cron_triggers_with_comments() -> None:
    config = load_wrangler(FILES / "cleanup.jsonc")
    assert config.crons == ["0 0 * * *", "0 */6 * * *", "0 9 * * 1"]
    assert config.queues == [] and config.unsupported == []


def test_a_broken_file_is_one_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "wrangler.toml"
    broken.write_text("[[queues.consumers]\nqueue = 1\n")
    with pytest.raises(WranglerConfigError, match="not valid TOML"):
        load_wrangler(broken)
    with pytest.raises(WranglerConfigError, match="cannot read"):
        load_wrangler(tmp_path / "missing.jsonc")


# A badly shaped wrangler file, and the key path (with what is wrong) its error names.
# Shapes are refused when the file is read (`WranglerConfigError`), values when it is
# declared (`InvalidQueueConfig`); both are `InvalidConfig`, never a KeyError/TypeError.
MALFORMED = [
    (
        "wrangler.jsonc",
        '{"queues": {"consumers": [{"max_retries": 1}]}}',
        "queues.consumers[0].queue: required",
    ),
    (
        "wrangler.jsonc",
        '{"queues": {"consumers": {"queue": "a"}}}',
        "queues.consumers: must be a list/array, got a table/object",
    ),
    ("wrangler.jsonc", '{"queues": [1]}', "queues: must be a table/object, got a list/array"),
    ("wrangler.jsonc", '{"queues": null}', "queues: must be a table/object, got null"),
    (
        "wrangler.jsonc",
        '{"triggers": {"crons": "0 0 * * *"}}',
        "triggers.crons: must be a list/array, got '0 0 * * *'",
    ),
    (
        "wrangler.jsonc",
        '{"triggers": {"crons": ["0 0 * * *", 5]}}',
        "triggers.crons[1]: must be a string, got 5",
    ),
    ("wrangler.jsonc", '{"triggers": ["0 0 * * *"]}', "triggers: must be a table/object"),
    (
        "wrangler.jsonc",
        '{"queues": {"producers": ["emails"]}}',
        "queues.producers[0]: must be a table/object, got 'emails'",
    ),
    (
        "wrangler.jsonc",
        '{"queues": {"producers": [{"binding": "EMAILS"}]}}',
        "queues.producers[0].queue: required",
    ),
    (
        "wrangler.jsonc",
        '{"queues": {"producers": [{"queue": "a", "binding": true}]}}',
        "queues.producers[0].binding: must be a string, got true",
    ),
    (
        "wrangler.jsonc",
        '{"queues": {"consumers": [{"queue": 1}]}}',
        "queues.consumers[0].queue: must be a string, got 1",
    ),
    (
        "wrangler.jsonc",
        '{"queues": {"consumers": [{"queue": "a", "type": "http-pull"}]}}',
        "queues.consumers[0].type: must be 'worker' or 'http_pull', got 'http-pull'",
    ),
    (
        "wrangler.jsonc",
        '{"queues": {"consumers": [{"queue": "a", "dead_letter_queue": ["b"]}]}}',
        "queues.consumers[0].dead_letter_queue: must be a string, got a list/array",
    ),
    ("wrangler.jsonc", '{"env": "preview"}', "env: must be a table/object, got 'preview'"),
    ("wrangler.jsonc", '{"env": {"preview": []}}', "env.preview: must be a table/object"),
    (
        "wrangler.jsonc",
        '{"env": {"preview": {"queues": {"consumers": [{}]}}}}',
        "env.preview.queues.consumers[0].queue: required",
    ),
    (
        "wrangler.jsonc",
        '{"queues": {"consumers": [{"queue": "a", "max_retries": 1, "max_retries": 2}]}}',
        "queues.consumers[0].max_retries: given more than once",
    ),
    ("wrangler.jsonc", "[]", "the top level must be a table/object"),
    (
        "wrangler.jsonc",
        '{"queues": {"consumers": [{"queue": "a", "max_retries": true}]}}',
        "queues.consumers[0].max_retries: max_retries must be an integer, got True",
    ),
    (
        "wrangler.jsonc",
        '{"queues": {"consumers": [{"queue": "a", "retry_delay": "5s"}]}}',
        "queues.consumers[0].retry_delay: retry_delay must be a number, got '5s'",
    ),
    (
        "wrangler.jsonc",
        '{"queues": {"consumers": [{"queue": "a", "visibility_timeout_ms": "5000"}]}}',
        "queues.consumers[0].visibility_timeout_ms: ",
    ),
    (
        "wrangler.jsonc",
        '{"queues": {"consumers": [{"queue": "a", "visibility_timeout_ms": 50}]}}',
        "queues.consumers[0].visibility_timeout_ms: visibility_timeout must be between 0.1 "
        "and 43200, got 0.05 (in seconds: visibility_timeout_ms / 1000)",
    ),
    (
        "wrangler.jsonc",
        '{"queues": {"consumers": [{"queue": "a", "max_batch_timeout": NaN}]}}',
        "queues.consumers[0].max_batch_timeout: ",
    ),
    (
        "wrangler.jsonc",
        '{"queues": {"producers": [{"queue": "a", "delivery_delay": [1]}]}}',
        "queues.producers[0].delivery_delay: delivery_delay must be a number",
    ),
    ("wrangler.toml", "queues = 1", "queues: must be a table/object, got 1"),
    ("wrangler.toml", '[queues]\nconsumers = "a"', "queues.consumers: must be a list/array"),
    ("wrangler.toml", '[triggers]\ncrons = "0 0 * * *"', "triggers.crons: must be a list/array"),
    (
        "wrangler.toml",
        "[[queues.consumers]]\nmax_retries = 1",
        "queues.consumers[0].queue: required",
    ),
    (
        "wrangler.toml",
        '[[queues.consumers]]\nqueue = "a"\nmax_retries = 1979-05-27',
        "queues.consumers[0].max_retries: max_retries must be an integer",
    ),
    (
        "wrangler.toml",
        '[[env.preview.queues.producers]]\nqueue = ["a"]',
        "env.preview.queues.producers[0].queue: must be a string, got a list/array",
    ),
]


@pytest.mark.parametrize(("name", "body", "expected"), MALFORMED)
def test_a_badly_shaped_file_is_refused_naming_the_key_path(
    tmp_path: Path, name: str, body: str, expected: str
) -> None:
    path = tmp_path / name
    path.write_text(body)
    with pytest.raises(InvalidConfig) as refused:
        App(f"sqlite:///{tmp_path / 'w.db'}").use_wrangler(str(path))
    assert expected in str(refused.value)
    assert str(refused.value).startswith(f"{path}: ")
    assert "\n" not in str(refused.value)


def test_every_shape_problem_of_a_file_is_named_at_once(tmp_path: Path) -> None:
    path = tmp_path / "wrangler.jsonc"
    path.write_text(
        '{"queues": {"consumers": [{"queue": "a"}, {"type": "worker"}], "producers": {}},'
        ' "triggers": {"crons": "@daily"}}'
    )
    with pytest.raises(WranglerConfigError) as refused:
        load_wrangler(path)
    assert str(refused.value) == (
        f"{path}: queues.consumers[1].queue: required; "
        f"{path}: queues.producers: must be a list/array, got a table/object; "
        f"{path}: triggers.crons: must be a list/array, got '@daily'"
    )


def test_two_consumers_of_one_queue_are_refused_naming_both(tmp_path: Path) -> None:
    """Cloudflare allows one consumer a queue; the second entry used to replace the first,
    an `http_pull` one and its out-of-range `max_batch_timeout` with it."""
    toml = tmp_path / "wrangler.toml"
    toml.write_text(
        '[[queues.consumers]]\nqueue = "emails"\ntype = "http_pull"\nmax_batch_timeout = 61\n\n'
        '[[queues.consumers]]\nqueue = "other"\n\n'
        '[[queues.consumers]]\nqueue = "emails"\nmax_batch_size = 5\n'
    )
    with pytest.raises(WranglerConfigError) as refused:
        load_wrangler(toml)
    assert str(refused.value) == (
        f"{toml}: queues.consumers[2]: a second consumer of queue 'emails' (the first is "
        "queues.consumers[0]); Cloudflare allows one consumer per queue"
    )
    jsonc = tmp_path / "wrangler.jsonc"
    jsonc.write_text(
        '{"env": {"preview": {"queues": {"consumers": [{"queue": "a"}, {"queue": "a"}]}}}}'
    )
    load_wrangler(jsonc)  # the environment is not read: its entries do not clash
    with pytest.raises(WranglerConfigError, match=r"env\.preview\.queues\.consumers\[1\]: a "):
        load_wrangler(jsonc, "preview")


def test_producers_of_one_queue_with_different_delivery_delays_are_refused(
    tmp_path: Path,
) -> None:
    path = tmp_path / "wrangler.jsonc"
    producers = '{"queue": "a", "binding": "A", "delivery_delay": 10}'
    path.write_text(f'{{"queues": {{"producers": [{producers}, {producers}]}}}}')
    assert load_wrangler(path).queues[0].settings == {"delivery_delay": 10}  # the same: fine
    path.write_text(
        f'{{"queues": {{"producers": [{producers}, {{"queue": "a", "delivery_delay": 0}}]}}}}'
    )
    with pytest.raises(WranglerConfigError) as refused:
        load_wrangler(path)
    assert "queues.producers[1].delivery_delay: 0 differs from " in str(refused.value)
    assert "queues.producers[0].delivery_delay (10)" in str(refused.value)


def test_keys_of_triggers_and_of_the_environment_are_listed_when_not_used(
    tmp_path: Path,
) -> None:
    path = tmp_path / "wrangler.jsonc"
    path.write_text(
        '{"triggers": {"crons": ["@daily"], "other": 1},'
        ' "env": {"preview": {"vars": {"A": "1"}, "name": "x"}}}'
    )
    config = load_wrangler(path, "preview")
    assert config.crons == ["@daily"]
    assert config.unsupported == [
        "env.preview.vars: not about queues or cron triggers: ignored",
        "triggers.other: not supported by taskflare",
    ]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        (
            "wrangler.toml",
            b"[[queues.consumers]\nqueue = 1\n",
            ":1:19: not valid TOML: Expected ']]' at the end of an array declaration",
        ),
        ("wrangler.toml", b'a = 1\na = "2"\n', ":2:"),
        ("wrangler.jsonc", b'{\n  "queues": {\n', ":3:1: not valid JSONC: Unexpected end of input"),
        ("wrangler.json", b'{"queues": {} "triggers": {}}', ":1:15: not valid JSON: Unexpected"),
        ("wrangler.jsonc", b"", ": not valid JSONC: the file is empty"),
        # json5 quotes the character it stopped at, a newline too: still one line
        ("wrangler.jsonc", b'{\n  "queues": {,\n}', ':2:15: not valid JSONC: Unexpected "\\n"'),
        ("wrangler.jsonc", b'{\n "name": "caf\xe9"}', ":2:14: not UTF-8 text (byte 0xe9)"),
        ("wrangler.jsonc", b"[" * 100_000, ": not valid JSONC: nested too deeply"),
    ],
)
def test_a_file_that_does_not_parse_is_one_line_naming_the_file_and_position(
    tmp_path: Path, name: str, content: bytes, expected: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(WranglerConfigError) as refused:
        load_wrangler(path)
    assert str(refused.value).startswith(f"{path}{expected}"), str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_utf8_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "wrangler.toml"
    path.write_bytes(b'\xef\xbb\xbf[triggers]\ncrons = ["@daily"]\n')
    assert load_wrangler(path).crons == ["@daily"]
