"""The samplemind-cache console command (warm / stats / clear) against a real redis-server."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from fixtures.redis import ExternalRedis, RedisServer, free_port
from samplemind_core._cli import LineError, main, parse_line

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
    assert "warmed 5 of 5 entries" in out and "0 line(s) rejected" in out
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
    assert "warmed 3 of 3 entries" in out and "4 line(s) rejected" in out
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
    after = stats(redis_server.url, ns)
    assert after["generations"] == {"openai": 1}
    assert (after["entries"], after["stale_entries"]) == (1, 0)  # purged, not just hidden
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
