"""The emulator over real sockets: every endpoint, stream format, error shape, HTTP/2, faults."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from fixtures.servers import EmulatorServer, start_emulator
from fixtures.wire_parse import answer, parse_json_array_stream, parse_ndjson, parse_sse
from tests._helpers import run_main

pytestmark = pytest.mark.live

# The emulator speaks plain HTTP: its clients here share one TLS context, made once, instead of
# each loading the CA bundle (40 ms of CPU per httpx client; decision 0563).
_tls = functools.cache(ssl.create_default_context)

PROMPT = [{"role": "user", "content": "Tag Dusty_Keys_92bpm.wav: genre, mood, BPM"}]
OPENAI_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "tag_file",
            "description": "Store tags for a sample file",
            "parameters": {
                "type": "object",
                "properties": {
                    "path": {"type": "string"},
                    "genre": {"type": "string"},
                    "bpm": {"type": "integer"},
                },
                "required": ["path", "genre"],
            },
        },
    }
]
KEYS = {
    "openai": {"authorization": "Bearer sk-test"},
    "anthropic": {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"},
    "gemini": {"x-goog-api-key": "AIza-test"},
    "ollama": {},
}


def call_spec(
    provider: str, *, stream: bool = False, tools: bool = False, sse: bool = False
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """(path with query, headers, JSON body) of a chat call in the provider's own format."""
    headers = dict(KEYS[provider])
    if provider == "openai":
        body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": PROMPT, "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
        if tools:
            body["tools"] = OPENAI_TOOLS
        return "/v1/chat/completions", headers, body
    if provider == "anthropic":
        body = {"model": "claude-3-5-haiku-latest", "max_tokens": 400, "messages": PROMPT}
        if stream:
            body["stream"] = True
        if tools:
            fn = OPENAI_TOOLS[0]["function"]
            body["tools"] = [
                {
                    "name": fn["name"],
                    "description": fn["description"],
                    "input_schema": fn["parameters"],
                }
            ]
        return "/v1/messages", headers, body
    if provider == "gemini":
        body = {"contents": [{"role": "user", "parts": [{"text": PROMPT[0]["content"]}]}]}
        if tools:
            fn = OPENAI_TOOLS[0]["function"]
            body["tools"] = [
                {"functionDeclarations": [{"name": fn["name"], "parameters": fn["parameters"]}]}
            ]
        method = "streamGenerateContent" if stream else "generateContent"
        query = "?alt=sse" if sse else ""
        return f"/v1beta/models/gemini-2.0-flash:{method}{query}", headers, body
    body = {"model": "llama3.2:3b-instruct-q8_0", "messages": PROMPT, "stream": stream}
    if tools:
        body["tools"] = OPENAI_TOOLS
    return "/api/chat", headers, body


@pytest.fixture
def client(emulator_server: EmulatorServer) -> Any:
    with httpx.Client(verify=_tls(), base_url=emulator_server.url, timeout=10.0) as c:
        yield c


def _answer(provider: str, r: httpx.Response, stream: bool) -> Any:
    return answer(provider, r.status_code, dict(r.headers), r.content, stream)


# --------------------------------------------------------------------------- endpoints


def test_ollama_metadata_endpoints(client: httpx.Client) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.text == "Ollama is running"
    assert client.head("/").status_code == 200
    tags = client.get("/api/tags").json()
    names = {m["name"] for m in tags["models"]}
    assert names == {"llama3.2:3b-instruct-q8_0", "qwen2.5:7b-instruct", "phi3.5:mini"}
    assert all(m["details"]["format"] == "gguf" for m in tags["models"])
    assert "version" in client.get("/api/version").json()


def test_openai_models(client: httpx.Client) -> None:
    r = client.get("/v1/models", headers=KEYS["openai"])
    assert r.json()["object"] == "list"
    assert all(m["object"] == "model" for m in r.json()["data"])
    assert client.get("/v1/models").status_code == 401


def test_gemini_models(client: httpx.Client) -> None:
    r = client.get("/v1beta/models", params={"key": "AIza-test"})
    assert r.json()["models"][0]["name"].startswith("models/")


@pytest.mark.parametrize("provider", ["ollama", "openai", "anthropic", "gemini"])
@pytest.mark.parametrize("tools", [False, True], ids=["text", "tools"])
def test_stream_and_non_stream_give_the_same_answer(
    client: httpx.Client, provider: str, tools: bool
) -> None:
    path, headers, body = call_spec(provider, tools=tools)
    plain = client.post(path, headers=headers, json=body)
    assert plain.status_code == 200, plain.text
    text, calls, out_tokens = _answer(provider, plain, stream=False)
    if tools:
        assert calls and calls[0][0] == "tag_file" and "path" in calls[0][1]
    else:
        assert "BPM" in text and not calls
    assert out_tokens > 0
    variants = [{"stream": True}] + (
        [{"stream": True, "sse": True}] if provider == "gemini" else []
    )
    for variant in variants:
        spath, sheaders, sbody = call_spec(provider, tools=tools, **variant)
        streamed = client.post(spath, headers=sheaders, json=sbody)
        assert streamed.status_code == 200
        assert _answer(provider, streamed, stream=True) == (text, calls, out_tokens)


def test_gemini_v1_alias(client: httpx.Client) -> None:
    path, headers, body = call_spec("gemini")
    a = client.post(path, headers=headers, json=body).json()
    b = client.post(path.replace("/v1beta/", "/v1/"), headers=headers, json=body).json()
    assert a["candidates"] == b["candidates"]
    c = client.post(path + "?key=AIza-query", json=body)
    assert c.status_code == 200


def test_stream_wire_details(client: httpx.Client) -> None:
    path, headers, body = call_spec("openai", stream=True)
    r = client.post(path, headers=headers, json=body)
    assert r.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(r.content)
    assert events[-1] == (None, "[DONE]")
    assert json.loads(events[0][1])["choices"][0]["delta"]["role"] == "assistant"

    path, headers, body = call_spec("anthropic", stream=True)
    names = [e for e, _ in parse_sse(client.post(path, headers=headers, json=body).content)]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert set(names[3:-3]) == {"content_block_delta"}
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]

    path, headers, body = call_spec("gemini", stream=True)
    r = client.post(path, headers=headers, json=body)
    assert r.headers["content-type"].startswith("application/json")
    chunks = parse_json_array_stream(r.content)
    assert len(chunks) > 1 and chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    path, headers, body = call_spec("gemini", stream=True, sse=True)
    r = client.post(path, headers=headers, json=body)
    assert r.headers["content-type"].startswith("text/event-stream")
    assert b"\r\n\r\n" in r.content

    path, headers, body = call_spec("ollama", stream=True)
    r = client.post(path, json=body)
    assert r.headers["content-type"] == "application/x-ndjson"
    lines = parse_ndjson(r.content)
    assert [x["done"] for x in lines] == [False] * (len(lines) - 1) + [True]
    assert lines[-1]["done_reason"] == "stop"
    del body["stream"]  # Ollama streams by default
    assert len(parse_ndjson(client.post(path, json=body).content)) == len(lines)


def test_usage_is_reported(client: httpx.Client) -> None:
    path, headers, body = call_spec("openai")
    usage = client.post(path, headers=headers, json=body).json()["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    path, headers, body = call_spec("anthropic")
    body["max_tokens"] = 5
    reply = client.post(path, headers=headers, json=body).json()
    assert reply["stop_reason"] == "max_tokens" and reply["usage"]["output_tokens"] <= 5


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("fault", ["429", "500", "503"])
@pytest.mark.parametrize("provider", ["ollama", "openai", "anthropic", "gemini"])
def test_error_shapes(client: httpx.Client, provider: str, fault: str) -> None:
    path, headers, body = call_spec(provider)
    r = client.post(path, headers={**headers, "x-emulator-fault": fault}, json=body)
    assert r.status_code == int(fault)
    err = r.json()
    if provider == "openai":
        assert set(err["error"]) == {"message", "type", "param", "code"}
    elif provider == "anthropic":
        assert err["type"] == "error" and set(err["error"]) == {"type", "message"}
        expected = {"429": "rate_limit_error", "500": "api_error", "503": "overloaded_error"}
        assert err["error"]["type"] == expected[fault]
    elif provider == "gemini":
        assert err["error"]["code"] == int(fault)
        expected = {"429": "RESOURCE_EXHAUSTED", "500": "INTERNAL", "503": "UNAVAILABLE"}
        assert err["error"]["status"] == expected[fault]
    else:
        assert isinstance(err["error"], str) and set(err) == {"error"}
    if fault == "429":
        assert float(r.headers["retry-after"]) >= 0
        assert int(r.headers["retry-after-ms"]) >= 0


def test_auth_like_the_real_apis(client: httpx.Client) -> None:
    path, _, body = call_spec("openai")
    r = client.post(path, json=body)
    assert r.status_code == 401 and r.json()["error"]["type"] == "invalid_request_error"
    assert client.post(path, json=body, headers={"authorization": "Basic abc"}).status_code == 401
    path, _, body = call_spec("anthropic")
    r = client.post(path, json=body, headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 401
    assert r.json()["error"] == {
        "type": "authentication_error",
        "message": "x-api-key header is required",
    }
    r = client.post(path, json=body, headers={"x-api-key": "k"})
    assert r.status_code == 400 and "anthropic-version" in r.json()["error"]["message"]
    path, _, body = call_spec("gemini")
    r = client.post(path, json=body)
    assert r.status_code == 403 and r.json()["error"]["status"] == "PERMISSION_DENIED"


@pytest.mark.parametrize("provider", ["ollama", "openai", "anthropic", "gemini"])
def test_bad_requests(client: httpx.Client, provider: str) -> None:
    path, headers, _ = call_spec(provider)
    r = client.post(
        path, headers={**headers, "content-type": "application/json"}, content=b"{not json"
    )
    assert r.status_code == 400
    assert "error" in r.json()
    assert client.post("/v1/nothing-here", headers=KEYS["openai"], json={}).status_code == 404
    assert client.get("/api/nothing").status_code == 404


def test_anthropic_requires_max_tokens(client: httpx.Client) -> None:
    path, headers, body = call_spec("anthropic")
    del body["max_tokens"]
    r = client.post(path, headers=headers, json=body)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "h2c"])
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_disconnect_mid_body_is_a_client_side_error(
    emulator_server: EmulatorServer, http2: bool, stream: bool
) -> None:
    path, headers, body = call_spec("openai", stream=stream)
    with httpx.Client(
        verify=_tls(), base_url=emulator_server.url, http1=not http2, http2=http2, timeout=5
    ) as c:
        with pytest.raises(httpx.RemoteProtocolError):
            c.post(path, headers={**headers, "x-emulator-fault": "disconnect"}, json=body)
        # the server is still fine afterwards
        assert c.get("/").text == "Ollama is running"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_malformed_body(client: httpx.Client, stream: bool) -> None:
    path, headers, body = call_spec("openai", stream=stream)
    r = client.post(path, headers={**headers, "x-emulator-fault": "malformed"}, json=body)
    assert r.status_code == 200
    with pytest.raises(ValueError):
        _answer("openai", r, stream)


def test_timeout_fault_stalls_past_the_client_timeout(emulator_server: EmulatorServer) -> None:
    path, headers, body = call_spec("gemini")
    with (
        httpx.Client(verify=_tls(), base_url=emulator_server.url, timeout=0.3) as c,
        pytest.raises(httpx.ReadTimeout),
    ):
        c.post(path, headers={**headers, "x-emulator-fault": "timeout"}, json=body)


def test_unknown_fault_header_is_refused(client: httpx.Client) -> None:
    r = client.post("/api/chat", headers={"x-emulator-fault": "418"}, json={})
    assert r.status_code == 400


# --------------------------------------------------------------------------- HTTP/2, faults, control


async def test_http2_prior_knowledge_many_concurrent_streams(
    emulator_server: EmulatorServer,
) -> None:
    path, headers, body = call_spec("openai")
    async with httpx.AsyncClient(
        verify=_tls(), base_url=emulator_server.url, http1=False, http2=True
    ) as c:
        replies = await asyncio.gather(
            *(c.post(path, headers=headers, json=body) for _ in range(60))
        )
        spath, sheaders, sbody = call_spec("anthropic", stream=True)
        streamed = await c.post(spath, headers=sheaders, json=sbody)
    assert {r.http_version for r in replies} == {"HTTP/2"}
    assert {r.status_code for r in replies} == {200}
    assert len({r.json()["choices"][0]["message"]["content"] for r in replies}) == 1
    assert streamed.http_version == "HTTP/2"
    assert _answer("anthropic", streamed, stream=True)[2] > 0


def test_h2c_upgrade_from_http1(emulator_server: EmulatorServer) -> None:
    """RFC 7540 3.2: an HTTP/1.1 request with ``Upgrade: h2c`` is answered 101, then over HTTP/2."""
    import socket

    import h2.config
    import h2.connection
    import h2.events

    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    settings = conn.initiate_upgrade_connection()
    assert settings is not None  # the client side gets the HTTP2-Settings header value
    with socket.create_connection(("127.0.0.1", emulator_server.port), timeout=10) as sock:
        sock.sendall(
            b"GET /api/tags HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: " + settings + b"\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65535)
            assert chunk, f"connection closed before the upgrade answer: {head!r}"
            head += chunk
        status_line, _, rest = head.partition(b"\r\n\r\n")
        assert status_line.startswith(b"HTTP/1.1 101"), status_line
        assert b"upgrade: h2c" in status_line.lower()
        sock.sendall(conn.data_to_send())
        headers: dict[bytes, bytes] = {}
        body, ended, data = b"", False, rest
        while not ended:
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived) and event.stream_id == 1:
                    headers = dict(event.headers)
                elif isinstance(event, h2.events.DataReceived) and event.stream_id == 1:
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, 1)
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == 1:
                    ended = True
            sock.sendall(conn.data_to_send())
            if not ended:
                data = sock.recv(65535)
                assert data, "connection closed before the HTTP/2 answer ended"
    assert headers[b":status"] == b"200"
    assert [m["name"] for m in json.loads(body)["models"]]


def test_fault_rate_and_stats(emulator_factory: Callable[..., EmulatorServer]) -> None:
    server = emulator_factory(fault_rate=1.0, faults=["500"], seed=3)
    path, _, body = call_spec("ollama")
    with httpx.Client(verify=_tls(), base_url=server.url) as c:
        statuses = [c.post(path, json=body).status_code for _ in range(5)]
    assert statuses == [500] * 5
    stats = server.stats()
    assert stats["calls"] == {"ollama": 5}
    assert stats["world"]["fault_rate"] == 1.0
    server.configure(fault_rate=0.0)
    with httpx.Client(verify=_tls(), base_url=server.url) as c:
        assert c.post(path, json=body).status_code == 200
    assert server.stats()["calls"] == {"ollama": 1}


def test_keyed_latency_flag_and_configure_round_trip(
    emulator_factory: Callable[..., EmulatorServer],
) -> None:
    """``--keyed-latency``: the same body gets the same TTFT and generation time (the Ollama
    reply reports both: ``prompt_eval_duration``, ``eval_duration``), whatever came between;
    ``configure`` turns it off and on, and a setting left out keeps its value."""
    server = emulator_factory(latency_scale=0.001, seed=1, keyed_latency=True)
    assert server.stats()["world"]["keyed_latency"] is True
    path, _, body = call_spec("ollama")
    other = {**body, "messages": [{"role": "user", "content": "Tag Kick_Hard_01.wav"}]}

    def delays(b: dict[str, Any]) -> tuple[int, int]:
        with httpx.Client(verify=_tls(), base_url=server.url) as c:
            reply = c.post(path, json=b).json()
        return reply["prompt_eval_duration"], reply["eval_duration"]

    first, between, again = delays(body), delays(other), delays(body)
    assert first == again and first != between
    assert server.configure(keyed_latency=False)["world"]["keyed_latency"] is False
    assert delays(body) != delays(body)  # call order: two calls, two draws
    assert server.configure(seed=1)["world"]["keyed_latency"] is False  # kept when not named
    assert server.configure(keyed_latency=True)["world"]["keyed_latency"] is True
    assert delays(body) == first  # the key is (seed, provider, body): the same draw as before


def test_http1_only_mode_refuses_h2(emulator_factory: Callable[..., EmulatorServer]) -> None:
    server = emulator_factory(http1=True)
    with httpx.Client(verify=_tls(), base_url=server.url, http1=False, http2=True) as c:
        assert c.get("/").status_code == 505
    with httpx.Client(verify=_tls(), base_url=server.url) as c:
        assert c.get("/").status_code == 200


def test_latency_scale_delays_answers(emulator_factory: Callable[..., EmulatorServer]) -> None:
    """The emulator applies the world's latency (checked via the reported durations, no clock)."""
    server = emulator_factory(latency_scale=0.001, seed=1)
    path, _, body = call_spec("ollama")
    with httpx.Client(verify=_tls(), base_url=server.url) as c:
        reply = c.post(path, json=body).json()
    assert reply["total_duration"] > 0
    assert reply["eval_duration"] > 0


# --------------------------------------------------------------------------- processes


def test_stop_leaves_no_process_behind() -> None:
    server = start_emulator()
    pid = server.pid
    assert server.alive()
    assert server.stop() == 0  # clean exit on SIGTERM
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert "samplemind-emulator stopped" in server.output()


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_sigint_stops_cleanly() -> None:
    server = start_emulator()
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(10) == 0
    server.stop()


def test_cli_refuses_bad_settings() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "fixtures.emulator", "--port", "0", "--fault-rate", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "fault_rate" in proc.stderr


EMULATOR_CLI = str(Path(sys.executable).with_name("samplemind-emulator"))


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--port", "99999"], "argument --port: must be an integer in 0..65535, got '99999'"),
        (["--port", "-1"], "argument --port: must be an integer in 0..65535, got '-1'"),
        (["--log-level", "LOUD"], "argument --log-level: invalid choice: 'LOUD'"),
        (["--latency-scale", "nan"], "argument --latency-scale: must be a finite number"),
        (["--latency-scale", "inf"], "argument --latency-scale: must be a finite number"),
        (["--latency-scale", "1e308"], "latency_scale must be a number in [0, 100]"),
        (["--latency-scale", "-1"], "latency_scale must be a number in [0, 100]"),
        (["--stall", "nan"], "argument --stall: must be a finite number"),
        (["--faults", "429,teapot"], "faults must be a list of"),
        (["--keep-alive-max-requests", "0"], "argument --keep-alive-max-requests"),
    ],
)
def test_console_script_refuses_bad_options_before_listening(
    argv: list[str], fragment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the script's ``main()`` in this process (the installed script runs for real in
    ``test_help_shows_every_option_with_its_default``); ``serve`` must never be reached."""
    from fixtures import emulator

    served: list[object] = []

    async def serve(*args: object, **kwargs: object) -> None:
        served.append(args)

    monkeypatch.setattr(emulator, "serve", serve)
    proc = run_main(emulator.main, ["--port", "0", *argv], prog=EMULATOR_CLI)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert fragment in proc.stderr and "Traceback" not in proc.stderr
    assert "listening" not in proc.stdout and not served


def test_log_level_is_case_insensitive() -> None:
    from fixtures.emulator import _parser

    assert _parser().parse_args(["--log-level", "debug"]).log_level == "DEBUG"


def test_help_shows_every_option_with_its_default() -> None:
    proc = subprocess.run([EMULATOR_CLI, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for option in (
        "--host",
        "--port",
        "--latency-scale",
        "--seed",
        "--fault-rate",
        "--faults",
        "--stall",
        "--keyed-latency",
        "--keep-alive-max-requests",
        "--access-log",
        "--log-level",
    ):
        assert option in text
    for default in (
        "(default: 127.0.0.1)",
        "(default: 8900)",
        "(default: 0.01)",
        "(default: WARNING)",
        "(default: 10000)",
        "(default: all)",
    ):
        assert default in text
    assert "(default: None)" not in text and "(default: True)" not in text
    assert "(default: False)" not in text
    for chunk in text.split(" --")[1:]:  # each option states its default at most once
        assert chunk.count("(default") <= 1, chunk


@pytest.mark.parametrize(
    "changes",
    [
        {"seed": None},
        {"seed": 1.5},
        {"seed": 2**64},
        {"latency_scale": "slow"},
        {"latency_scale": 1e308},
        {"fault_rate": -0.1},
        {"faults": 5},
        {"faults": {"500": "lots"}},
        {"stall_s": -1},
        {"keyed_latency": "yes"},
        {"keyed_latency": 1},
        {"colour": "red"},
    ],
)
def test_configure_refuses_bad_values_with_400(
    emulator_server: EmulatorServer, changes: dict[str, Any]
) -> None:
    before = emulator_server.stats()["world"]
    with httpx.Client(verify=_tls(), base_url=emulator_server.url) as c:
        reply = c.post("/__emulator__/configure", json=changes)
        assert reply.status_code == 400 and reply.json()["error"]
        path, _, body = call_spec("ollama")
        assert c.post(path, json=body).status_code == 200  # still serving, world unchanged
    assert emulator_server.stats()["world"] == before


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_ready_line_and_port_zero() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "fixtures.emulator", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("samplemind-emulator listening on http://127.0.0.1:")
        url = line.split()[3]
        assert httpx.get(url + "/").text == "Ollama is running"
        lines = [proc.stdout.readline() for _ in range(5)]
        assert "base URLs" in lines[0]
        bases = {parts[0]: parts[1] for parts in (x.split() for x in lines[1:])}
        assert bases == {
            "ollama": url,
            "openai": f"{url}/v1",
            "anthropic": url,
            "gemini": url,
        }
        assert f"OPENAI_BASE_URL={url}/v1" in lines[2]
        path, _, body = call_spec("openai")  # the OpenAI SDK appends /chat/completions
        reply = httpx.post(
            f"{bases['openai']}/chat/completions",
            json=body,
            headers={"authorization": "Bearer sk-test"},
        )
        assert reply.status_code == 200 and path == "/v1/chat/completions"
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


# --------------------------------------------------------------------------- official SDKs


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_openai_sdk_unchanged(emulator_server: EmulatorServer) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=emulator_server.url + "/v1", api_key="sk-test", max_retries=0)
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT)
    assert "BPM" in reply.choices[0].message.content and reply.usage.completion_tokens > 0
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=PROMPT, stream=True))
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        == reply.choices[0].message.content
    )
    tool_reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=PROMPT, tools=OPENAI_TOOLS
    )
    assert tool_reply.choices[0].message.tool_calls[0].function.name == "tag_file"
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=PROMPT, extra_headers={"x-emulator-fault": "429"}
        )


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_anthropic_sdk_unchanged(emulator_server: EmulatorServer) -> None:
    anthropic = pytest.importorskip("anthropic")
    client = anthropic.Anthropic(base_url=emulator_server.url, api_key="sk-ant-test", max_retries=0)
    reply = client.messages.create(model="claude-3-5-haiku-latest", max_tokens=400, messages=PROMPT)
    assert reply.content[0].text and reply.usage.output_tokens > 0
    with client.messages.stream(
        model="claude-3-5-haiku-latest", max_tokens=400, messages=PROMPT
    ) as stream:
        assert "".join(stream.text_stream) == reply.content[0].text
        assert stream.get_final_message().usage.output_tokens == reply.usage.output_tokens
    with pytest.raises(anthropic.InternalServerError):
        client.messages.create(
            model="claude-3-5-haiku-latest",
            max_tokens=10,
            messages=PROMPT,
            extra_headers={"x-emulator-fault": "503"},
        )


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_google_genai_sdk_unchanged(emulator_server: EmulatorServer) -> None:
    genai = pytest.importorskip("google.genai")
    types = pytest.importorskip("google.genai.types")
    client = genai.Client(
        api_key="AIza-test", http_options=types.HttpOptions(base_url=emulator_server.url)
    )
    text = PROMPT[0]["content"]
    reply = client.models.generate_content(model="gemini-2.0-flash", contents=text)
    assert reply.text and reply.usage_metadata.candidates_token_count > 0
    streamed = "".join(
        c.text or ""
        for c in client.models.generate_content_stream(model="gemini-2.0-flash", contents=text)
    )
    assert streamed == reply.text


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_ollama_sdk_unchanged(emulator_server: EmulatorServer) -> None:
    ollama = pytest.importorskip("ollama")
    client = ollama.Client(host=emulator_server.url)
    model = "llama3.2:3b-instruct-q8_0"
    reply = client.chat(model=model, messages=PROMPT)
    assert reply.message.content and reply.eval_count > 0
    streamed = "".join(
        c.message.content for c in client.chat(model=model, messages=PROMPT, stream=True)
    )
    assert streamed == reply.message.content
    assert model in [m.model for m in client.list().models]


# --------------------------------------------------------------------------- live settings


def test_env_provided_providers_are_detected() -> None:
    from fixtures.servers import env_provided_providers
    from samplemind_core import Settings

    env = Settings.from_env(
        {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OLLAMA_HOST": "127.0.0.1:1"}
    )
    assert env_provided_providers(env) == {"openai", "ollama"}
    assert env_provided_providers(Settings.from_env({})) == set()


def test_live_settings_never_point_at_the_internet(
    live_settings: Any, emulator_server: EmulatorServer
) -> None:
    from fixtures.servers import env_provided_providers
    from samplemind_core import Settings

    provided = env_provided_providers(Settings.from_env())
    for name, config in live_settings.providers.items():
        if name not in provided:
            assert config.base_url.startswith(emulator_server.url)
        assert config.base_url.startswith("http://"), config.base_url
        if name != "ollama":
            assert config.api_key


@pytest.mark.parametrize("fault", ["timeout", "stream-stall:600@1"])
async def test_a_stall_ends_when_its_client_leaves(fault: str) -> None:
    """A stalled reply (600 s) is abandoned as soon as the client disconnects: the handler
    returns (within the liveness bound) without finishing the body, so a stopping server
    does not wait for it (hypercorn waits up to 2 s for running handlers)."""
    from fixtures.emulator import EmulatorApp
    from fixtures.world import WorldModel

    app = EmulatorApp(WorldModel(seed=0, latency_scale=0.0, stall_s=600.0))
    body = json.dumps({"model": "llama3.2", "messages": PROMPT, "stream": True}).encode()
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/chat",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"x-emulator-fault", fault.encode())],
    }
    left = asyncio.Event()
    sent: list[dict[str, Any]] = []
    requests = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if requests:
            return requests.pop()
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message.get("body"):  # the first text chunk came: the client leaves during the stall
            left.set()

    if fault == "timeout":
        left.set()  # the client gives up before the headers
    await asyncio.wait_for(app(scope, receive, send), 30)
    kinds = [m["type"] for m in sent]
    if fault == "timeout":
        assert kinds == []  # no response was started for a client that left
    else:
        assert kinds == ["http.response.start", "http.response.body"]  # one chunk, then left
        assert sent[-1]["more_body"] is True  # the body was never finished
