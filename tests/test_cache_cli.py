"""The samplemind-cache console command (warm / stats / clear) against a real redis-server."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from fixtures.ports import free_port
from fixtures.redis import ExternalRedis, RedisServer
from samplemind_core._cli import LineError, main, parse_line
from tests._helpers import run_main

pytestmark = pytest.mark.redis


def entry(i: int, provider: str = "ollama") -> dict[str, Any]:
    return {
        "request": {
            "messages": [{"role": "user", "content": f"genre of loop {i}?"}],
            "provider": provider,
            "model": "m",
            "temperature": 0.2,
        },
        "response": {
            "text": f"house {i}",
            "provider": provider,
            "model": "m",
            "usage": {"input_tokens": 12, "output_tokens": 3},
            "tool_calls": [{"name": "tag", "arguments": {"g": "house"}}],
            "cost_usd": 0.001,
            "latency_ms": 420.0,
        },
    }


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def stats(url: str, ns: str) -> dict[str, Any]:
    code, out, err = run("stats", "--redis-url", url, "--namespace", ns)
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


@pytest.fixture
def ns() -> str:
    return f"cli{uuid.uuid4().hex[:10]}"


def test_warm_writes_every_line(
    tmp_path: Path, redis_server: RedisServer | ExternalRedis, ns: str
) -> None:
    f = tmp_path / "warm.jsonl"
    f.write_text("\n".join(json.dumps(entry(i)) for i in range(5)) + "\n\n")
    code, out, err = run("warm", str(f), "--redis-url", redis_server.url, "--namespace", ns)
    assert (code, err) == (0, "")
    assert "warmed 5 of 5 entries" in out and ", 0 rejected" in out
    assert stats(redis_server.url, ns)["entries"] == 5


def test_corrupt_lines_are_named_and_do_not_lose_the_good_ones(
    tmp_path: Path, redis_server: RedisServer | ExternalRedis, ns: str
) -> None:
    no_messages = entry(9)
    del no_messages["request"]["messages"]
    unknown = entry(8)
    unknown["response"]["colour"] = "red"
    lines = [
        json.dumps(entry(1)),
        '{"request": {"messages": [',  # truncated
        json.dumps(entry(2)),
        json.dumps(no_messages),
        json.dumps(unknown),
        json.dumps({"request": entry(3)["request"]}),
        json.dumps(entry(4)),
    ]
    f = tmp_path / "mixed.jsonl"
    f.write_text("\n".join(lines) + "\n")
    code, out, err = run("warm", str(f), "--redis-url", redis_server.url, "--namespace", ns)
    assert code == 2  # an input error; the good lines are still written
    assert "warmed 3 of 7 entries" in out and "4 rejected" in out
    assert f"{f}:2: not valid JSON" in err
    assert f"{f}:4: " in err and "messages" in err
    assert f"{f}:5: unknown response field(s): colour" in err
    assert f"{f}:6: " in err
    assert f"{f}:1:" not in err and f"{f}:7:" not in err
    assert stats(redis_server.url, ns)["entries"] == 3


def test_clear_one_provider_then_all(
    tmp_path: Path, redis_server: RedisServer | ExternalRedis, ns: str
) -> None:
    f = tmp_path / "two.jsonl"
    f.write_text(json.dumps(entry(1)) + "\n" + json.dumps(entry(2, provider="openai")) + "\n")
    assert run("warm", str(f), "--redis-url", redis_server.url, "--namespace", ns)[0] == 0
    code, out, _ = run(
        "clear", "--provider", "openai", "--redis-url", redis_server.url, "--namespace", ns
    )
    assert code == 0 and "cleared provider 'openai'" in out
    assert "generation 'openai' 0 -> 1; 1 entries invalidated, 0 still stale after the purge" in out
    assert "1 current entries left" in out
    after = stats(redis_server.url, ns)
    assert after["generations"] == {"openai": 1}
    assert (after["entries"], after["stale_entries"]) == (1, 0)  # purged, not just hidden
    assert after["providers"]["openai"] == {"generation": 1, "entries": 0, "stale_entries": 0}
    assert after["providers"]["ollama"] == {"generation": 0, "entries": 1, "stale_entries": 0}
    assert run("clear", "--redis-url", redis_server.url, "--namespace", ns)[0] == 0
    assert stats(redis_server.url, ns)["entries"] == 0


def test_usage_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    f = tmp_path / "ok.jsonl"
    f.write_text(json.dumps(entry(1)) + "\n")
    code, _, err = run("warm", str(f))
    assert code == 2 and "no Redis URL" in err
    code, _, err = run("warm", str(tmp_path / "missing.jsonl"), "--redis-url", "redis://x")
    assert code == 2 and "missing.jsonl" in err
    code, _, err = run("stats", "--redis-url", "redis://127.0.0.1:1", "--namespace", "bad:ns")
    assert code == 2 and "namespace" in err


def test_unreachable_redis_fails_clearly(tmp_path: Path) -> None:
    f = tmp_path / "ok.jsonl"
    f.write_text(json.dumps(entry(1)) + "\n")
    url = f"redis://127.0.0.1:{free_port()}"
    code, out, err = run("warm", str(f), "--redis-url", url)
    assert code == 1 and "warmed 0 of 1" in out and "Redis failed" in err
    code, _, err = run("clear", "--redis-url", url)
    assert code == 1 and "Redis failed" in err


def test_parse_line_rejects_bad_values() -> None:
    good = parse_line(json.dumps(entry(1)))
    assert good[1].usage.output_tokens == 3 and good[1].tool_calls[0].name == "tag"
    bad_usage = entry(1)
    bad_usage["response"]["usage"] = {"tokens": 3}
    for text in ("[]", json.dumps(bad_usage), json.dumps({"request": 1, "response": 2})):
        with pytest.raises(LineError):
            parse_line(text)


def test_console_script_entry_point(
    tmp_path: Path, redis_server: RedisServer | ExternalRedis, ns: str
) -> None:
    f = tmp_path / "warm.jsonl"
    f.write_text(json.dumps(entry(1)) + "\n")
    proc = subprocess.run(
        [sys.executable, "-m", "samplemind_core._cli", "warm", str(f), "--namespace", ns],
        capture_output=True,
        text=True,
        timeout=60,
        env={"REDIS_URL": redis_server.url, "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "warmed 1 of 1" in proc.stdout


# -- bad input through the console script's main() (issue 11) -------------------

CACHE_CLI = str(Path(sys.executable).with_name("samplemind-cache"))


def _env(env: dict[str, str] | None) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        # the checkout under test, not whichever one is installed editable
        **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"},
        **(env or {}),
    }


def cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``samplemind-cache ARGV`` through its ``main()`` in this process, with exactly the
    environment a subprocess of :func:`real_cli` would get; no traceback may reach stderr."""
    proc = run_main(main, argv, env=_env(env), prog=CACHE_CLI)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def real_cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``samplemind-cache ARGV`` in a subprocess (the installed console script); no traceback
    may reach stderr. For the smoke tests of the script itself, and callers inside an event
    loop (``main()`` runs its own)."""
    proc = subprocess.run(
        [CACHE_CLI, *argv], capture_output=True, text=True, timeout=120, env=_env(env)
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def with_changes(i: int, request: dict[str, Any] | None = None, **response: Any) -> str:
    e = entry(i)
    e["request"].update(request or {})
    e["response"].update(response)
    return json.dumps(e)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (with_changes(2, {"temperature": "hot"}), "temperature"),
        (with_changes(2, {"max_tokens": 1e30}), "max_tokens"),
        (with_changes(2, {"provider": "bogus"}), "request.provider"),
        (with_changes(2, usage={"input_tokens": "many", "output_tokens": 1}), "input_tokens"),
        (with_changes(2, cost_usd=-5), "cost_usd"),
        (with_changes(2, provider="bogus"), "response.provider"),
        (with_changes(2, text="x" * 10_000_000), "over max_value_bytes"),
    ],
    ids=["hot", "1e30", "req-provider", "many", "cost-5", "resp-provider", "10MB"],
)
def test_bad_line_is_named_and_the_rest_is_written(
    tmp_path: Path, redis_server: RedisServer | ExternalRedis, ns: str, bad: str, reason: str
) -> None:
    f = tmp_path / "warm.jsonl"
    f.write_text("\n".join([json.dumps(entry(1)), bad, json.dumps(entry(3))]) + "\n")
    proc = cli("warm", str(f), "--redis-url", redis_server.url, "--namespace", ns)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"{f}:2: ") and reason in proc.stderr
    assert proc.stderr.count("\n") == 1  # one line named, nothing else
    assert "warmed 2 of 3 entries" in proc.stdout and ", 1 rejected" in proc.stdout
    assert stats(redis_server.url, ns)["entries"] == 2


def test_non_utf8_line_is_rejected_alone(
    tmp_path: Path, redis_server: RedisServer | ExternalRedis, ns: str
) -> None:
    f = tmp_path / "latin1.jsonl"
    f.write_bytes(
        json.dumps(entry(1)).encode()
        + b"\n"
        + json.dumps(entry(2)).replace("loop", "l\xf6op").encode("latin-1")
        + b"\n"
        + json.dumps(entry(3)).encode()
        + b"\n"
    )
    proc = cli("warm", str(f), "--redis-url", redis_server.url, "--namespace", ns)
    assert proc.returncode == 2
    assert f"{f}:2: not UTF-8 (byte 0xf6" in proc.stderr
    assert "warmed 2 of 3 entries into" in proc.stdout
    assert stats(redis_server.url, ns)["entries"] == 2


async def test_warmed_values_are_served_sane(
    tmp_path: Path, redis_server: RedisServer | ExternalRedis, ns: str
) -> None:
    """What warm accepted reads back as a hit whose numbers add up."""
    from samplemind_core import CacheConfig, ResponseCache

    f = tmp_path / "ok.jsonl"
    f.write_text(json.dumps(entry(1)) + "\n")
    # the installed script, in a subprocess: main() runs its own event loop
    proc = real_cli("warm", str(f), "--redis-url", redis_server.url, "--namespace", ns)
    assert proc.returncode == 0, proc.stderr
    async with redis_server.client() as client:
        cache = ResponseCache(client, config=CacheConfig(namespace=ns, op_timeout_s=2.0))
        hit = await cache.get(parse_line(json.dumps(entry(1)))[0])
        assert hit is not None and hit.usage.total_tokens == 15
        assert cache.stats().cost_saved_usd == pytest.approx(0.001)


@pytest.mark.parametrize("ttl", ["0", "-1", "nan", "inf", "soon"])
def test_bad_ttl_is_a_usage_error(tmp_path: Path, ttl: str) -> None:
    f = tmp_path / "ok.jsonl"
    f.write_text(json.dumps(entry(1)) + "\n")
    proc = cli("warm", str(f), "--redis-url", "redis://127.0.0.1:1", "--ttl", ttl)
    assert proc.returncode == 2
    assert "argument --ttl: must be a finite number of seconds in (0, " in proc.stderr
    assert repr(ttl) in proc.stderr


def test_ttl_is_applied(tmp_path: Path, redis_server: RedisServer | ExternalRedis, ns: str) -> None:
    f = tmp_path / "ok.jsonl"
    f.write_text(json.dumps(entry(1)) + "\n")
    proc = cli("warm", str(f), "--redis-url", redis_server.url, "--namespace", ns, "--ttl", "90")
    assert proc.returncode == 0, proc.stderr
    r = redis_server.sync_client()
    try:
        keys = [k for k in r.scan_iter(match=f"*{ns}*") if r.type(k) == b"string"]
        assert keys and all(0 < r.ttl(k) <= 90 for k in keys)
    finally:
        r.close()


@pytest.mark.parametrize("url", ["garbage", "http://127.0.0.1:6379", "redis://h:notaport"])
def test_bad_redis_url_is_a_usage_error(url: str) -> None:
    proc = cli("stats", "--redis-url", url)
    assert proc.returncode == 2
    assert "argument --redis-url: --redis-url is not a valid Redis URL" in proc.stderr


def test_bad_redis_url_from_the_environment_is_a_usage_error() -> None:
    proc = cli("stats", env={"REDIS_URL": "garbage://:secret-pw@h"})
    assert proc.returncode == 2
    assert "REDIS_URL is not a valid Redis URL" in proc.stderr
    assert "secret-pw" not in proc.stderr


def test_clear_unknown_provider_is_a_usage_error() -> None:
    proc = cli("clear", "--provider", "bogus", "--redis-url", "redis://127.0.0.1:1")
    assert proc.returncode == 2
    assert "argument --provider: invalid choice: 'bogus'" in proc.stderr


def test_help_is_plain_text() -> None:
    for argv in (["warm"], ["stats"], ["clear"]):
        proc = cli(*argv, "--help")
        assert proc.returncode == 0
        assert "``" not in proc.stdout and ":meth:" not in proc.stdout
    top = real_cli("--help")  # the installed script itself, once
    assert top.returncode == 0
    assert "``" not in top.stdout and ":meth:" not in top.stdout
    assert "warm" in top.stdout and "stats" in top.stdout and "clear" in top.stdout
    assert "Exit status" in top.stdout


def test_warm_help_gives_the_line_format_and_its_example_parses(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["warm", "--help"])
    text = capsys.readouterr().out
    assert "line format" in text and "request_id" in text and "usage" in text
    lines = text[text.index('  {"request"') :].splitlines()
    example = " ".join(
        x.strip() for x in lines[: next(i for i, x in enumerate(lines) if "}}" in x) + 1]
    )
    request, response = parse_line(example)  # the example is a valid entry
    assert response.provider == "openai" and request.messages[0]["content"]


def test_all_rejected_says_zero_of_n(
    tmp_path: Path, redis_server: RedisServer | ExternalRedis, ns: str
) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text("\n".join(["{", "[]", '{"request": {}}', "42"]) + "\n")
    code, out, err = run("warm", str(f), "--redis-url", redis_server.url, "--namespace", ns)
    assert code == 2
    assert f"warmed 0 of 4 entries into namespace {ns!r}, 4 rejected" in out
    assert err.count(str(f)) == 4
