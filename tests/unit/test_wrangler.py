"""wrangler.toml / wrangler.jsonc files shaped like real Cloudflare projects' configs."""

from __future__ import annotations

from pathlib import Path

import pytest

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
    with pytest.raises(WranglerConfigError, match="is not valid toml"):
        load_wrangler(broken)
    with pytest.raises(WranglerConfigError, match="cannot read"):
        load_wrangler(tmp_path / "missing.jsonc")
