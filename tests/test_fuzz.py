"""Property-based fuzzing of the three ways bad input enters the library (issue 11).

Each of :func:`samplemind_core._cli.parse_line`, :class:`ChatRequest` and
:meth:`Settings.from_env` must either give a valid object, one that the rest of
the layer can use (fingerprint it, build every provider's wire request, store
the response), or raise a :class:`SampleMindError` with a message; never any
other exception.
"""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from samplemind_core import PROVIDERS, ChatRequest, ConfigError, SampleMindError, Settings
from samplemind_core._cli import parse_line
from samplemind_core.cache import ResponseCache
from samplemind_core.fingerprint import fingerprint
from samplemind_core.providers import get_provider

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

any_text = st.text(max_size=12) | st.text(st.characters(blacklist_categories=()), max_size=6).map(
    lambda t: t + "\ud800"
)  # lone surrogates: what a mis-decoded input holds
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | any_text
    | st.sampled_from(["user", "system", "assistant", "tool", "ollama", "openai", "nan", ""])
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
roles = st.sampled_from(["system", "user", "assistant", "tool"])
good_message = st.fixed_dictionaries({"role": roles, "content": st.text(max_size=40)})
odd_message = st.fixed_dictionaries(
    {"role": roles | values, "content": st.text(max_size=40) | values},
    optional={"name": values, "tool_calls": values, "tool_call_id": values},
)
messages = st.lists(good_message | odd_message, min_size=1, max_size=3) | values

REQUEST_FIELDS = {
    "messages": messages,
    "provider": st.none() | st.sampled_from(PROVIDERS) | st.text(max_size=8),
    "model": st.none() | st.text(max_size=12),
    "temperature": st.none() | st.floats() | st.integers() | values,
    "max_tokens": st.none() | st.integers() | st.floats() | values,
    "top_p": st.none() | st.floats() | values,
    "top_k": st.none() | st.integers() | values,
    "stop": st.none() | st.lists(st.text(max_size=4), max_size=2) | values,
    "seed": st.none() | st.integers() | values,
    "tools": st.none() | values,
    "tool_choice": st.none() | values,
    "response_format": st.none() | values,
    "stream": st.booleans() | values,
    "timeout": st.none() | st.floats() | st.integers() | values,
    "request_id": st.none() | values,
    "metadata": st.dictionaries(st.text(max_size=4), values, max_size=2) | values,
}
request_kwargs = st.fixed_dictionaries(
    {"messages": messages}, optional={k: v for k, v in REQUEST_FIELDS.items() if k != "messages"}
)


def usable_request(req: ChatRequest) -> None:
    """What the layer does with a request: key it, estimate it, build each wire request."""
    assert fingerprint(req).startswith("v1.")
    req.prompt_chars()
    for name in PROVIDERS:
        cfg = Settings().provider(name)
        adapter = get_provider(name, cfg)
        try:
            _, url, headers, body = adapter.build_request(req, req.model or adapter.default_model)
        except SampleMindError as exc:  # e.g. a tool spec without a name: BadRequestError
            assert str(exc)
            continue
        orjson.dumps(body)  # the HTTP client encodes the body with orjson
        httpx.URL(url)
        httpx.Headers(headers)


@FUZZ
@given(kwargs=request_kwargs)
@example(kwargs={"messages": "hi"})
@example(kwargs={"messages": {}})
@example(kwargs={"messages": ["hi"]})
@example(kwargs={"messages": None})
@example(kwargs={"messages": [{"role": "user", "content": "x"}], "temperature": math.nan})
@example(kwargs={"messages": [{"role": "user", "content": "x"}], "timeout": -1})
@example(kwargs={"messages": [{"role": "user", "content": "x"}], "seed": 2**64})
@example(kwargs={"messages": [{"role": "user", "content": "\ud800"}]})
@example(kwargs={"messages": [{"role": [], "content": ""}]})  # found: TypeError (unhashable)
@example(kwargs={"messages": [{"role": "assistant", "content": "", "tool_calls": [None]}]})
@example(kwargs={"messages": [{"role": "assistant", "content": "", "tool_calls": True}]})
@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_chat_request_is_valid_or_a_config_error(kwargs: dict[str, Any]) -> None:
    try:
        req = ChatRequest(**kwargs)
    except ConfigError as exc:
        assert str(exc).startswith("ChatRequest.")
        return
    usable_request(req)


def _has(container: Any, step: str | int) -> bool:
    if isinstance(container, dict):
        return step in container
    return isinstance(container, list) and isinstance(step, int) and step < len(container)


def _entry_lines() -> st.SearchStrategy[str]:
    base = {
        "request": {"messages": [{"role": "user", "content": "q"}], "provider": "ollama"},
        "response": {
            "text": "a",
            "provider": "ollama",
            "model": "m",
            "usage": {"input_tokens": 1, "output_tokens": 2},
            "tool_calls": [{"name": "t", "arguments": {}}],
            "cost_usd": 0.1,
        },
    }
    paths = (
        [("request", k) for k in REQUEST_FIELDS]
        + [
            ("response", k)
            for k in (
                "text",
                "provider",
                "model",
                "usage",
                "tool_calls",
                "cost_usd",
                "estimated_cost_usd",
                "latency_ms",
                "attempts",
                "finish_reason",
                "metadata",
            )
        ]
        + [("response", "usage", "input_tokens"), ("response", "tool_calls", 0, "name")]
    )

    @st.composite
    def mutated(draw: st.DrawFn) -> str:
        entry = json.loads(json.dumps(base))
        for _ in range(draw(st.integers(1, 3))):
            path = draw(st.sampled_from(paths))
            target: Any = entry
            for step in path[:-1]:  # an earlier mutation may have replaced a parent
                target = target[step] if _has(target, step) else None
            if isinstance(target, dict) or _has(target, path[-1]):
                target[path[-1]] = draw(values)
        return json.dumps(entry, allow_nan=True)

    return mutated() | st.text(max_size=60) | values.map(lambda v: json.dumps(v, allow_nan=True))


@FUZZ
@given(line=_entry_lines())
@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_parse_line_is_valid_or_a_line_error(line: str) -> None:
    try:
        request, response = parse_line(line)
    except SampleMindError as exc:
        assert str(exc)
        return
    usable_request(request)
    cache = ResponseCache(None)
    cache._encode(response)  # storable (size aside)
    assert response.usage.total_tokens >= 0 and response.cost_usd >= 0


ENV_VARS = (
    "REDIS_URL",
    "REDIS_CLUSTER",
    "SAMPLEMIND_FINGERPRINT_KEY",
    "SAMPLEMIND_CACHE_NAMESPACE",
    "SAMPLEMIND_CACHE_TTL",
    "SAMPLEMIND_HTTP2",
    "SAMPLEMIND_TRANSPORT",
    "OLLAMA_HOST",
    "OPENAI_BASE_URL",
    "ANTHROPIC_BASE_URL",
    "GEMINI_BASE_URL",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
)
env_values = st.text(max_size=30) | st.sampled_from(
    [
        "1",
        "0",
        "nan",
        "inf",
        "-0",
        "1e400",
        "redis://h:6379",
        "unix:///s",
        "http://[::1]:80",
        "localhost:11434",
        "http://h:99999",
        "ab" * 32,
        "a:b",
        "\udcff",
        " ",
        "https://x/y/",
    ]
)


@FUZZ
@given(env=st.dictionaries(st.sampled_from(ENV_VARS), env_values, max_size=6))
@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_settings_from_env_is_valid_or_a_config_error(env: dict[str, str]) -> None:
    try:
        s = Settings.from_env(env)
    except ConfigError as exc:
        assert str(exc)
        return
    req = ChatRequest(messages=[{"role": "user", "content": "hi"}])
    assert fingerprint(req, namespace=s.cache.namespace, key=s.cache.key_bytes())
    assert 0 < s.cache.ttl_s < math.inf
    for name in PROVIDERS:
        cfg = s.provider(name)
        httpx.URL(cfg.base_url)
        if cfg.api_key is not None:
            httpx.Headers({"authorization": f"Bearer {cfg.api_key.get_secret_value()}"})
            cfg.api_key.get_secret_value().encode("ascii")
    if s.redis_url is not None:
        import redis.asyncio

        redis.asyncio.Redis.from_url(s.redis_url)
