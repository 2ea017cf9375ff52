"""Tests of the provider adapters: wire requests, replies, every fault, costs, key hygiene.

Each provider's API is mocked with respx (routes on a ``respx.MockRouter``
used as the transport of an :class:`HttpClient` with a no-op sleep), so the
requests run through the real client: retries, error mapping and parsing.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest
import respx

from samplemind_core import (
    AuthenticationError,
    BadRequestError,
    ChatRequest,
    ConnectError,
    HttpConfig,
    MalformedResponseError,
    ProviderConfig,
    ProviderServerError,
    RateLimitError,
    RemoteProtocolError,
    RequestTimeout,
    RetryConfig,
    SampleMindError,
    Secret,
    Usage,
)
from samplemind_core.http import HttpClient
from samplemind_core.providers import (
    PROVIDER_CLASSES,
    Provider,
    anthropic,
    gemini,
    get_provider,
    ollama,
    openai,
)

CANARY = "sk-CANARY-0123456789abcdef"
BASES = {
    "ollama": "http://ollama.test:11434",
    "openai": "https://openai.test/v1",
    "anthropic": "https://anthropic.test",
    "gemini": "https://gemini.test",
}
ENDPOINTS = {
    "ollama": "http://ollama.test:11434/api/chat",
    "openai": "https://openai.test/v1/chat/completions",
    "anthropic": "https://anthropic.test/v1/messages",
    "gemini": "https://gemini.test/v1beta/models/{model}:generateContent",
}
NAMES = sorted(PROVIDER_CLASSES)

TOOL = {
    "name": "get_bpm",
    "description": "Tempo of a sample",
    "parameters": {"type": "object", "properties": {"id": {"type": "string"}}},
}

FULL = ChatRequest(
    messages=[
        {"role": "system", "content": "You are a music tagger."},
        {"role": "user", "content": "Genre of sample 42?"},
    ],
    temperature=0.2,
    max_tokens=64,
    top_p=0.9,
    top_k=40,
    stop=["END"],
    seed=7,
    tools=[TOOL],
)
SIMPLE = ChatRequest(messages=[{"role": "user", "content": "hi"}])


def provider(name: str, **config: Any) -> Provider:
    key = None if name == "ollama" else Secret(CANARY)
    return get_provider(
        name, ProviderConfig(name=name, base_url=BASES[name], api_key=key, **config)
    )


def endpoint(name: str, model: str | None = None) -> str:
    return ENDPOINTS[name].format(model=model or PROVIDER_CLASSES[name].DEFAULT_MODEL)


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
async def mocked() -> AsyncIterator[tuple[respx.MockRouter, HttpClient, Sleeps]]:
    router = respx.MockRouter(assert_all_called=False)
    sleeps = Sleeps()
    http = HttpClient(
        HttpConfig(retry=RetryConfig()),
        transport=httpx.MockTransport(router.async_handler),
        sleep=sleeps,
    )
    async with http:
        yield router, http, sleeps


# -- golden wire requests ------------------------------------------------------

GOLDEN: dict[str, tuple[str, dict[str, str], dict[str, Any]]] = {
    "openai": (
        "https://openai.test/v1/chat/completions",
        {"authorization": f"Bearer {CANARY}"},
        {
            "model": "gpt-4o-mini",
            "messages": FULL.messages,
            "temperature": 0.2,
            "max_tokens": 64,
            "top_p": 0.9,
            "stop": ["END"],
            "seed": 7,
            "tools": [{"type": "function", "function": TOOL}],
        },
    ),
    "anthropic": (
        "https://anthropic.test/v1/messages",
        {"x-api-key": CANARY, "anthropic-version": "2023-06-01"},
        {
            "model": "claude-3-5-haiku-latest",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": "Genre of sample 42?"}],
            "system": "You are a music tagger.",
            "temperature": 0.2,
            "top_p": 0.9,
            "top_k": 40,
            "stop_sequences": ["END"],
            "tools": [
                {
                    "name": "get_bpm",
                    "description": "Tempo of a sample",
                    "input_schema": TOOL["parameters"],
                }
            ],
        },
    ),
    "gemini": (
        "https://gemini.test/v1beta/models/gemini-2.5-flash:generateContent",
        {"x-goog-api-key": CANARY},
        {
            "contents": [{"role": "user", "parts": [{"text": "Genre of sample 42?"}]}],
            "systemInstruction": {"parts": [{"text": "You are a music tagger."}]},
            "generationConfig": {
                "temperature": 0.2,
                "maxOutputTokens": 64,
                "topP": 0.9,
                "topK": 40,
                "stopSequences": ["END"],
                "seed": 7,
            },
            "tools": [{"functionDeclarations": [TOOL]}],
        },
    ),
    "ollama": (
        "http://ollama.test:11434/api/chat",
        {},
        {
            "model": "llama3.2",
            "messages": FULL.messages,
            "stream": False,
            "options": {
                "temperature": 0.2,
                "num_predict": 64,
                "top_p": 0.9,
                "top_k": 40,
                "seed": 7,
                "stop": ["END"],
            },
            "tools": [{"type": "function", "function": TOOL}],
        },
    ),
}


@pytest.mark.parametrize("name", NAMES)
def test_build_request_golden(name: str) -> None:
    p = provider(name)
    method, url, headers, body = p.build_request(FULL, p.default_model)
    assert (method, url, headers, body) == ("POST", *GOLDEN[name])
    assert CANARY not in url


def test_anthropic_defaults_max_tokens_and_converts_tool_turns() -> None:
    req = ChatRequest(
        messages=[
            {"role": "user", "content": "bpm?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "t1", "function": {"name": "get_bpm", "arguments": '{"id": "42"}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "t1", "content": "128"},
        ],
        tools=[{"type": "function", "function": TOOL}],
        tool_choice={"name": "get_bpm"},
    )
    _, _, _, body = provider("anthropic").build_request(req, "claude-sonnet-4-0")
    assert body["max_tokens"] == 1024
    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "t1", "name": "get_bpm", "input": {"id": "42"}}
    ]
    assert body["messages"][2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "128"}],
    }
    assert body["tool_choice"] == {"type": "tool", "name": "get_bpm"}


def test_openai_reasoning_models_use_max_completion_tokens() -> None:
    _, _, _, body = provider("openai").build_request(
        ChatRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=5), "o4-mini"
    )
    assert body["max_completion_tokens"] == 5 and "max_tokens" not in body


def test_gemini_roles_and_tool_choice() -> None:
    req = ChatRequest(
        messages=[
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "tool", "name": "get_bpm", "content": "128"},
        ],
        tools=[TOOL],
        tool_choice="required",
        response_format={"type": "json_object"},
    )
    _, _, _, body = provider("gemini").build_request(req, "gemini-2.5-pro")
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["contents"][2]["parts"][0]["functionResponse"]["name"] == "get_bpm"
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    assert body["generationConfig"] == {"responseMimeType": "application/json"}


# -- replies ---------------------------------------------------------------------

TEXT_REPLY: dict[str, dict[str, Any]] = {
    "openai": {
        "id": "c1",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Lo-fi"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500},
    },
    "anthropic": {
        "id": "m1",
        "type": "message",
        "role": "assistant",
        "model": "claude-3-5-haiku-20241022",
        "content": [{"type": "text", "text": "Lo-fi"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 1000, "output_tokens": 500},
    },
    "gemini": {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": "Lo-fi"}]}, "finishReason": "STOP"}
        ],
        "usageMetadata": {"promptTokenCount": 1000, "candidatesTokenCount": 500},
        "modelVersion": "gemini-2.5-flash",
    },
    "ollama": {
        "model": "llama3.2",
        "message": {"role": "assistant", "content": "Lo-fi"},
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 1000,
        "eval_count": 500,
    },
}
FINISH = {"openai": "stop", "anthropic": "end_turn", "gemini": "STOP", "ollama": "stop"}
EXPECTED_COST = {  # 1000 input + 500 output tokens at the list price
    "openai": (1000 * 0.15 + 500 * 0.60) / 1e6,
    "anthropic": (1000 * 0.80 + 500 * 4.00) / 1e6,
    "gemini": (1000 * 0.30 + 500 * 2.50) / 1e6,
    "ollama": 0.0,
}

TOOL_REPLY: dict[str, dict[str, Any]] = {
    "openai": {
        "model": "gpt-4o-mini",
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_bpm", "arguments": '{"id": "42"}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5},
    },
    "anthropic": {
        "model": "claude-3-5-haiku-latest",
        "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "call_1", "name": "get_bpm", "input": {"id": "42"}},
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 10, "output_tokens": 5},
    },
    "gemini": {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"functionCall": {"id": "call_1", "name": "get_bpm", "args": {"id": "42"}}}
                    ],
                },
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5},
    },
    "ollama": {
        "model": "llama3.2",
        "message": {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "call_1", "function": {"name": "get_bpm", "arguments": {"id": "42"}}}
            ],
        },
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 10,
        "eval_count": 5,
    },
}


@pytest.mark.parametrize("name", NAMES)
async def test_text_reply_round_trip(name: str, mocked: Any) -> None:
    router, http, _ = mocked
    route = router.post(endpoint(name)).respond(200, json=TEXT_REPLY[name])
    reply = await provider(name).complete(http, FULL)
    assert reply.text == "Lo-fi"
    assert reply.provider == name
    assert reply.finish_reason == FINISH[name]
    assert reply.usage == Usage(1000, 500)
    assert reply.cost_usd == pytest.approx(EXPECTED_COST[name])
    assert reply.attempts == 1 and reply.tool_calls == []
    sent = route.calls.last.request
    assert orjson.loads(sent.content) == GOLDEN[name][2]
    for key, value in GOLDEN[name][1].items():
        assert sent.headers[key] == value


@pytest.mark.parametrize("name", NAMES)
async def test_tool_call_reply(name: str, mocked: Any) -> None:
    router, http, _ = mocked
    router.post(endpoint(name)).respond(200, json=TOOL_REPLY[name])
    reply = await provider(name).complete(http, FULL)
    assert len(reply.tool_calls) == 1
    call = reply.tool_calls[0]
    assert (call.name, call.arguments, call.id) == ("get_bpm", {"id": "42"}, "call_1")
    assert reply.usage == Usage(10, 5)


async def test_openai_bad_tool_arguments_are_malformed(mocked: Any) -> None:
    router, http, _ = mocked
    reply = orjson.loads(orjson.dumps(TOOL_REPLY["openai"]))
    reply["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = "{not json"
    router.post(endpoint("openai")).respond(200, json=reply)
    with pytest.raises(MalformedResponseError, match="arguments"):
        await provider("openai").complete(http, SIMPLE)


async def test_gemini_thinking_tokens_bill_as_output_and_blocked_prompt(mocked: Any) -> None:
    router, http, _ = mocked
    reply = orjson.loads(orjson.dumps(TEXT_REPLY["gemini"]))
    reply["usageMetadata"]["thoughtsTokenCount"] = 100
    router.post(endpoint("gemini")).mock(
        side_effect=[
            httpx.Response(200, json=reply),
            httpx.Response(200, json={"promptFeedback": {"blockReason": "SAFETY"}}),
        ]
    )
    assert (await provider("gemini").complete(http, SIMPLE)).usage == Usage(1000, 600)
    with pytest.raises(BadRequestError, match="blocked"):
        await provider("gemini").complete(http, SIMPLE)


async def test_ollama_list_models(mocked: Any) -> None:
    router, http, _ = mocked
    router.get("http://ollama.test:11434/api/tags").respond(
        200, json={"models": [{"name": "llama3.2:latest"}, {"name": "qwen2.5:7b"}]}
    )
    p = provider("ollama")
    assert isinstance(p, ollama.OllamaProvider)
    assert await p.list_models(http) == ["llama3.2:latest", "qwen2.5:7b"]


# -- faults ----------------------------------------------------------------------

ERROR_BODIES: dict[str, Callable[[str, str], dict[str, Any]]] = {
    "openai": lambda kind, msg: {"error": {"message": msg, "type": kind, "code": None}},
    "anthropic": lambda kind, msg: {"type": "error", "error": {"type": kind, "message": msg}},
    "gemini": lambda kind, msg: {"error": {"code": 400, "message": msg, "status": kind}},
    "ollama": lambda kind, msg: {"error": msg},
}
EMPTY: dict[str, dict[str, Any]] = {
    "openai": {"model": "gpt-4o-mini", "choices": []},
    "anthropic": {"model": "x", "content": [], "stop_reason": None},
    "gemini": {"candidates": []},
    "ollama": {"model": "llama3.2", "done": True},
}


def mid_body_reset() -> httpx.Response:
    """A 200 whose body stream breaks after the first bytes (connection reset)."""

    class Broken(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b'{"choices": [{"mess'
            raise httpx.ReadError("[Errno 104] Connection reset by peer")

    return httpx.Response(200, headers={"content-type": "application/json"}, stream=Broken())


def check_no_canary(exc: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    texts = [str(exc), repr(exc), *getattr(exc, "__notes__", [])]
    assert all(CANARY not in t and "sk-CANARY" not in t for t in texts), texts
    assert all("sk-CANARY" not in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("name", NAMES)
async def test_429_with_retry_after_is_retried_then_rate_limit_error(
    name: str, mocked: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    router, http, sleeps = mocked
    route = router.post(endpoint(name)).respond(
        429, json=ERROR_BODIES[name]("rate_limit_error", "slow down"), headers={"Retry-After": "7"}
    )
    with pytest.raises(RateLimitError) as info:
        await provider(name).complete(http, SIMPLE)
    assert info.value.retry_after == 7.0 and info.value.status == 429
    assert info.value.provider == name and "slow down" in str(info.value)
    assert route.call_count == 3 and sleeps.waits == [7.0, 7.0]
    check_no_canary(info.value, caplog)


@pytest.mark.parametrize("name", NAMES)
async def test_429_then_success(name: str, mocked: Any) -> None:
    router, http, _ = mocked
    router.post(endpoint(name)).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "1"}),
            httpx.Response(200, json=TEXT_REPLY[name]),
        ]
    )
    reply = await provider(name).complete(http, SIMPLE)
    assert reply.text == "Lo-fi" and reply.attempts == 2
    assert reply.metadata["retry_wait_s"] == 1.0


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("status", "calls"), [(500, 1), (502, 3), (503, 3), (504, 3)])
async def test_server_errors(name: str, status: int, calls: int, mocked: Any) -> None:
    router, http, _ = mocked
    route = router.post(endpoint(name)).respond(
        status, json=ERROR_BODIES[name]("api_error", "boom")
    )
    with pytest.raises(ProviderServerError) as info:
        await provider(name).complete(http, SIMPLE)
    assert info.value.status == status and info.value.retryable
    assert route.call_count == calls  # 500 is left to the router's fallback


async def test_anthropic_529_overloaded_is_a_retried_server_error(mocked: Any) -> None:
    router, http, _ = mocked
    body = ERROR_BODIES["anthropic"]("overloaded_error", "Overloaded")
    route = router.post(endpoint("anthropic")).respond(529, json=body)
    with pytest.raises(ProviderServerError, match="overloaded_error: Overloaded"):
        await provider("anthropic").complete(http, SIMPLE)
    assert route.call_count == 3


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("error", "ours"),
    [
        (httpx.ConnectTimeout("connect timed out"), RequestTimeout),
        (httpx.ReadTimeout("read timed out"), RequestTimeout),
        (httpx.ConnectError("connection refused"), ConnectError),
    ],
)
async def test_transport_faults(
    name: str,
    error: Exception,
    ours: type[Exception],
    mocked: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    router, http, _ = mocked
    route = router.post(endpoint(name)).mock(side_effect=error)
    with pytest.raises(ours) as info:
        await provider(name).complete(http, SIMPLE)
    assert route.call_count == 3
    check_no_canary(info.value, caplog)


@pytest.mark.parametrize("name", NAMES)
async def test_connection_reset_mid_body(name: str, mocked: Any) -> None:
    router, http, _ = mocked
    route = router.post(endpoint(name)).mock(
        side_effect=[mid_body_reset(), httpx.Response(200, json=TEXT_REPLY[name])]
    )
    reply = await provider(name).complete(http, SIMPLE)
    assert reply.text == "Lo-fi" and reply.attempts == 2
    route.side_effect = lambda request: mid_body_reset()
    with pytest.raises(RemoteProtocolError):
        await provider(name).complete(http, SIMPLE)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("fault", "match"),
    [
        ("bad_json", "not valid JSON"),
        ("empty", "no (choices|content|candidates|message)"),
        ("html", "content type 'text/html'"),
        ("not_object", "not an object"),
        ("wrong_shape", "wire format|no message|no content|no choices|no candidates"),
    ],
)
async def test_malformed_replies(name: str, fault: str, match: str, mocked: Any) -> None:
    router, http, _ = mocked
    responses = {
        "bad_json": httpx.Response(
            200, content=b'{"choices": [', headers={"content-type": "application/json"}
        ),
        "empty": httpx.Response(200, json=EMPTY[name]),
        "html": httpx.Response(
            200, text="<html>captive portal</html>", headers={"content-type": "text/html"}
        ),
        "not_object": httpx.Response(200, json=["nope"]),
        "wrong_shape": httpx.Response(
            200, json={"choices": [{"oops": 1}], "content": "x", "candidates": [1], "message": 3}
        ),
    }
    route = router.post(endpoint(name)).mock(return_value=responses[fault])
    with pytest.raises(MalformedResponseError, match=match) as info:
        await provider(name).complete(http, SIMPLE)
    assert info.value.provider == name
    assert route.call_count == 1


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("status", "kind", "cls"),
    [
        (400, "invalid_request_error", BadRequestError),
        (401, "authentication_error", AuthenticationError),
        (403, "permission_error", AuthenticationError),
        (404, "not_found_error", BadRequestError),
        (422, "invalid_request_error", BadRequestError),
    ],
)
async def test_error_bodies_are_mapped_and_redacted(
    name: str,
    status: int,
    kind: str,
    cls: type[Exception],
    mocked: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    router, http, _ = mocked
    message = f"Incorrect API key provided: {CANARY}. Also sk-CANA*****cdef. Bearer {CANARY}"
    route = router.post(endpoint(name)).respond(status, json=ERROR_BODIES[name](kind, message))
    with pytest.raises(cls) as info:
        await provider(name).complete(http, SIMPLE)
    assert route.call_count == 1
    assert "Incorrect API key provided: [REDACTED]" in str(info.value)
    assert f"HTTP {status}" in str(info.value)
    assert not getattr(info.value, "retryable", False)
    check_no_canary(info.value, caplog)


async def test_gemini_invalid_key_400_is_authentication_error(mocked: Any) -> None:
    router, http, _ = mocked
    router.post(endpoint("gemini")).respond(
        400,
        json=ERROR_BODIES["gemini"](
            "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key."
        ),
    )
    with pytest.raises(AuthenticationError):
        await provider("gemini").complete(http, SIMPLE)


async def test_non_json_error_body_is_mapped_by_status(mocked: Any) -> None:
    router, http, _ = mocked
    router.post(endpoint("openai")).respond(502, text="<html>Bad gateway</html>")
    with pytest.raises(ProviderServerError, match="Bad gateway"):
        await provider("openai").complete(http, SIMPLE)


@pytest.mark.parametrize("name", NAMES)
def test_every_error_is_in_our_tree(name: str) -> None:
    p = provider(name)
    for status in (400, 401, 403, 404, 409, 429, 500, 503, 529):
        assert isinstance(p.error_for(httpx.Response(status, text="x")), SampleMindError)


# -- prices, estimates, windows ----------------------------------------------------


def test_cost_arithmetic_against_price_table() -> None:
    p = provider("openai")
    assert p.price("gpt-4o") == openai.PRICES["gpt-4o"] == (2.50, 10.00)
    assert p.cost("gpt-4o", Usage(2_000_000, 1_000_000)) == pytest.approx(2 * 2.50 + 10.00)
    assert p.price("gpt-4o-mini-2024-07-18") == (0.15, 0.60)  # longest prefix, not gpt-4o
    assert provider("anthropic").price("claude-3-5-sonnet-20241022") == (3.00, 15.00)
    assert provider("gemini").price("gemini-2.5-pro") == (1.25, 10.00)
    assert provider("ollama").cost("llama3.2:3b", Usage(10**6, 10**6)) == 0.0
    custom = provider("openai", prices={"gpt-4o": (1.0, 2.0)})
    assert custom.cost("gpt-4o", Usage(1_000_000, 1_000_000)) == pytest.approx(3.0)


def test_unknown_cloud_model_costs_zero_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    p = provider("anthropic")
    caplog.set_level(logging.WARNING)
    assert p.cost("mystery-model", Usage(100, 100)) == 0.0
    assert p.cost("mystery-model", Usage(100, 100)) == 0.0
    assert sum("mystery-model" in r.getMessage() for r in caplog.records) == 1


def test_estimate_cost_uses_chars_over_4_and_max_tokens() -> None:
    p = provider("openai")
    req = ChatRequest(messages=[{"role": "user", "content": "x" * 4000}], max_tokens=200)
    assert p.estimate_cost(req, "gpt-4o") == pytest.approx((1000 * 2.50 + 200 * 10.00) / 1e6)
    req.max_tokens = None  # falls back to 1024 output tokens
    assert p.estimate_cost(req, "gpt-4o") == pytest.approx((1000 * 2.50 + 1024 * 10.00) / 1e6)


def test_context_windows_and_module_tables() -> None:
    for module in (openai, anthropic, gemini, ollama):
        assert module.DEFAULT_MODEL in module.PRICES or any(
            module.DEFAULT_MODEL.startswith(k) for k in module.PRICES
        )
        assert set(module.CONTEXT_WINDOWS) == set(module.PRICES)
        assert all(i >= 0 and o >= i for i, o in module.PRICES.values())
    assert provider("openai").context_window("gpt-4o-2024-08-06") == 128_000
    assert provider("gemini").context_window("gemini-2.5-flash") == 1_048_576
    assert provider("ollama").context_window("llama3.2") == 4096


def test_get_provider_and_key_never_in_repr() -> None:
    from samplemind_core import ConfigError

    p = provider("anthropic")
    assert isinstance(p, anthropic.AnthropicProvider)
    assert CANARY not in repr(p) and CANARY not in repr(p.config)
    with pytest.raises(ConfigError, match="unknown provider"):
        get_provider("nope", ProviderConfig(name="nope", base_url="http://x"))
