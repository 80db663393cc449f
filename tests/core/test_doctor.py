"""`guardian doctor` and the persistence warning of `guardian status`, judged from what Redis says."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
import redis
from typer.testing import CliRunner

from guardian.cli import app
from guardian.doctor import NOTHING_PERSISTS, RedisSettings, judge, persistence_warning, read_settings

runner = CliRunner()


def _actual(redis_url: str) -> tuple[str, str, str]:
    """(save, appendonly, maxmemory-policy) as CONFIG GET reports them on the test Redis."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return (
            str(client.config_get("save")["save"]),
            str(client.config_get("appendonly")["appendonly"]),
            str(client.config_get("maxmemory-policy")["maxmemory-policy"]),
        )
    finally:
        client.close()


@pytest.mark.redis
def test_doctor_reports_what_the_real_redis_says(redis_url: str, key_prefix: str) -> None:
    """On the test Redis (CI runs it with --save "" and appendonly no; a local one may persist), doctor says
    it is reachable, warns that budgets reset on restart exactly when CONFIG GET shows no save points and no
    AOF, names the eviction policy, and exits 1 exactly when something is at risk."""
    save, appendonly, policy = _actual(redis_url)
    nothing_persists = not save.strip() and appendonly == "no"
    result = runner.invoke(app, ["doctor", "--store", redis_url, "--prefix", key_prefix])
    assert "is reachable" in result.stdout
    assert (NOTHING_PERSISTS in result.stdout) == nothing_persists, result.stdout
    assert f"maxmemory-policy {policy}" in result.stdout
    assert result.exit_code == (1 if nothing_persists or policy != "noeviction" else 0), result.stdout
    assert ("healthy" in result.stdout) == (result.exit_code == 0)


@pytest.mark.redis
def test_status_warns_on_stderr_when_the_redis_persists_nothing(redis_url: str, key_prefix: str) -> None:
    """status prints one warning line to stderr (stdout stays clean for --json) exactly when the store's Redis
    keeps nothing across a restart, as CONFIG GET reports."""
    save, appendonly, _policy = _actual(redis_url)
    nothing_persists = not save.strip() and appendonly == "no"
    result = runner.invoke(app, ["status", "--store", redis_url, "--prefix", key_prefix, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["buckets"] == []  # stdout holds the JSON document and nothing else
    warned = [line for line in result.stderr.splitlines() if NOTHING_PERSISTS in line]
    assert len(warned) == (1 if nothing_persists else 0), result.stderr


def test_doctor_says_when_redis_is_unreachable() -> None:
    """An unreachable Redis is reported in one line with exit 1, not a traceback."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = runner.invoke(app, ["doctor", "--store", f"redis://:s3cret@127.0.0.1:{port}/0"])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert "is not reachable" in result.stdout
    assert "s3cret" not in result.output


def test_doctor_refuses_the_embedded_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """doctor with no fleet store configured exits 2: the embedded store is not something it can check."""
    monkeypatch.delenv("GUARDIAN_STORE_URL", raising=False)
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 2
    assert "embedded store" in result.output


@pytest.mark.parametrize(
    ("settings", "levels", "phrases"),
    [
        (RedisSettings("", False, "noeviction", 0), ("warning", "ok"), [NOTHING_PERSISTS, "noeviction"]),
        (RedisSettings("3600 1", False, "noeviction", 0), ("ok", "ok"), ["RDB snapshots", "forgotten"]),
        (RedisSettings("", True, "noeviction", 0), ("ok", "ok"), ["appendonly yes"]),
        (RedisSettings("", False, "allkeys-lru", 1 << 30), ("warning", "warning"), ["may evict any key"]),
        (RedisSettings("3600 1", True, "volatile-lru", 1 << 30), ("ok", "warning"), ["every Guardian key has a TTL"]),
        (RedisSettings("", True, "volatile-ttl", 0), ("ok", "warning"), ["once a maxmemory is set"]),
        (RedisSettings(None, False, "noeviction", 0, "INFO"), ("warning", "ok"), ["save points are unknown"]),
        (RedisSettings(None, True, "noeviction", 0, "INFO"), ("ok", "ok"), []),
        (RedisSettings(None, None, None, None, "INFO"), ("warning", "warning"), ["could not read"]),
    ],
)
def test_judge(settings: RedisSettings, levels: tuple[str, str], phrases: list[str]) -> None:
    """Nothing persisting and any evicting policy are warnings (volatile-* too: all our keys have TTLs);
    RDB-only or AOF persistence and noeviction are fine; what Redis will not tell is not assumed safe."""
    findings = judge(settings)
    assert tuple(f.level for f in findings) == levels
    text = " ".join(f.message for f in findings)
    for phrase in phrases:
        assert phrase in text


class _NoConfigRedis(redis.Redis):
    """A managed Redis with CONFIG disabled: only INFO answers."""

    def config_get(self, *args: Any, **kwargs: Any) -> Any:
        raise redis.ResponseError("unknown command 'CONFIG'")

    def info(self, section: Any = None, *args: Any, **kwargs: Any) -> Any:
        return {"persistence": {"aof_enabled": 0}, "memory": {"maxmemory_policy": "volatile-lru", "maxmemory": 1}}[
            section
        ]


def test_settings_come_from_info_when_config_is_disabled() -> None:
    """Without CONFIG, AOF and the eviction policy come from INFO, the save points stay unknown, and status
    does not claim nothing persists when it cannot know."""
    client = _NoConfigRedis()
    settings = read_settings(client)
    assert settings == RedisSettings(None, False, "volatile-lru", 1, "INFO")
    assert persistence_warning(client) is None
