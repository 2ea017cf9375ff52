"""Request and response types shared by every part of the layer.

Plain slotted dataclasses: cheap to build, cheap to import, no validation
framework on the hot path. :class:`ChatRequest` checks its fields when it is
built (a few type and range tests, no copies) and raises
:class:`~samplemind_core.ConfigError` naming the first bad field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import isfinite
from typing import Any, Final

import orjson

from ._exceptions import ConfigError

__all__ = ["ChatRequest", "ChatResponse", "Message", "ToolCall", "Usage"]

Message = dict[str, Any]
"""One chat message: ``{"role": "user" | "system" | "assistant" | "tool", "content": str, ...}``."""

ROLES: Final = frozenset(("system", "user", "assistant", "tool"))
_INT64_MIN: Final = -(1 << 63)
_INT64_MAX: Final = (1 << 63) - 1
_INF: Final = float("inf")


def _bad(name: str, value: object, expected: str) -> ConfigError:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return ConfigError(f"ChatRequest.{name} must be {expected}, got {shown}")


def _encodable(name: str, value: object) -> None:
    """Refuse what cannot be sent or keyed: non-JSON values, lone surrogates, huge integers."""
    try:
        orjson.dumps(value)
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        raise ConfigError(f"ChatRequest.{name} cannot be encoded as JSON ({exc})") from None


def _check_message(i: int, m: object) -> None:
    if not isinstance(m, dict):
        raise _bad(f"messages[{i}]", m, 'an object {"role", "content"}')
    role = m.get("role")
    if role.__class__ is not str or role not in ROLES:
        raise _bad(f"messages[{i}].role", role, f"one of {sorted(ROLES)}")
    if "content" not in m:
        raise ConfigError(f"ChatRequest.messages[{i}] has no 'content'")
    content = m["content"]
    if not isinstance(content, str) and not (
        content is None and role == "assistant" and m.get("tool_calls")
    ):  # None only for an assistant turn that only calls tools
        raise _bad(f"messages[{i}].content", content, "a string")
    calls = m.get("tool_calls")
    if calls is not None and (
        not isinstance(calls, list) or not all(_tool_call_ok(c) for c in calls)
    ):
        raise _bad(
            f"messages[{i}].tool_calls",
            calls,
            'a list of {"id", "function": {"name", "arguments"}} objects',
        )
    _encodable(f"messages[{i}]", m)


def _tool_call_ok(call: object) -> bool:
    """An OpenAI-style ``{"id", "function": {"name", "arguments"}}`` (or the neutral form)."""
    if not isinstance(call, dict) or not isinstance(call.get("id"), str | None):
        return False
    fn = call.get("function", call)
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        return False
    args = fn.get("arguments")
    if args is None or isinstance(args, dict):
        return True
    if not isinstance(args, str):
        return False
    if not args:
        return True
    try:
        return isinstance(orjson.loads(args), dict)
    except orjson.JSONDecodeError:
        return False


def _check_number(name: str, value: object, lo: float, hi: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(name, value, f"a number in [{lo:g}, {hi:g}]")
    if not lo <= value <= hi:  # also false for NaN
        raise _bad(name, value, f"a finite number in [{lo:g}, {hi:g}]")


def _check_int(name: str, value: object, lo: int, what: str) -> None:
    if value.__class__ is not int and (isinstance(value, bool) or not isinstance(value, int)):
        raise _bad(name, value, f"an integer {what}")
    if value < lo:
        raise _bad(name, value, f"an integer {what}")
    if value > _INT64_MAX:
        raise _bad(name, value, "an integer that fits in 64 bits")


def _check_optional_str(name: str, value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise _bad(name, value, "a string or None")


@dataclass(slots=True)
class ChatRequest:
    """A chat completion request, provider-neutral.

    ``provider`` and ``model`` are optional: when absent the router picks the
    chain and each provider's default model; when given they pin the first choice.

    Fields that change the answer (provider, model, messages, sampling
    parameters, tools) are part of the cache key; ``request_id``, ``timeout``,
    ``stream`` and ``metadata`` are not.
    """

    messages: list[Message]
    provider: str | None = None
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] | None = None
    seed: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    # Not part of the fingerprint:
    stream: bool = False
    timeout: float | None = None
    request_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse a malformed request (run at construction, and by ``AIManager.complete``).

        ``messages``: a non-empty list of ``{"role", "content"}`` objects, role one of
        ``system``, ``user``, ``assistant``, ``tool``, content a string (``None`` only
        for an assistant turn with ``tool_calls``); ``temperature`` in [0, 2],
        ``top_p`` in [0, 1] (finite); ``max_tokens`` and ``top_k`` integers >= 1;
        ``seed`` a 64-bit integer; ``timeout`` a finite number of seconds > 0.
        Raises :class:`~samplemind_core.ConfigError` naming the field.
        """
        messages = self.messages
        if messages.__class__ is not list and not isinstance(messages, list):
            raise _bad("messages", messages, 'a list of {"role", "content"} objects')
        if not messages:
            raise ConfigError("ChatRequest.messages must not be empty")
        for i, m in enumerate(messages):
            # The common case, {"role": known, "content": ASCII text}, without a copy.
            if m.__class__ is dict and len(m) == 2:
                content, role = m.get("content"), m.get("role")
                if (
                    content.__class__ is str
                    and role.__class__ is str
                    and role in ROLES
                    and content.isascii()
                ):
                    continue
            _check_message(i, m)
        t = self.temperature
        if t is not None and not (t.__class__ is float and 0.0 <= t <= 2.0):
            _check_number("temperature", t, 0.0, 2.0)
        p = self.top_p
        if p is not None and not (p.__class__ is float and 0.0 <= p <= 1.0):
            _check_number("top_p", p, 0.0, 1.0)
        n = self.max_tokens
        if n is not None and not (n.__class__ is int and 0 < n <= _INT64_MAX):
            _check_int("max_tokens", n, 1, ">= 1")
        if self.top_k is not None:
            _check_int("top_k", self.top_k, 1, ">= 1")
        if self.seed is not None:
            _check_int("seed", self.seed, _INT64_MIN, "")
        timeout = self.timeout
        if timeout is not None and not (timeout.__class__ is float and 0.0 < timeout < _INF):
            if isinstance(timeout, bool) or not isinstance(timeout, int | float):
                raise _bad("timeout", timeout, "a number of seconds > 0")
            if not (timeout > 0 and isfinite(timeout)):
                raise _bad("timeout", timeout, "a finite number of seconds > 0")
        for name, value in (("provider", self.provider), ("model", self.model)):
            if value is not None and (value.__class__ is not str or not value.isascii()):
                _check_optional_str(name, value)
                _encodable(name, value)
        stop, tools, tc, rf = self.stop, self.tools, self.tool_choice, self.response_format
        if stop is not None or tools is not None or tc is not None or rf is not None:
            if stop is not None and (
                not isinstance(stop, list) or not all(isinstance(x, str) for x in stop)
            ):
                raise _bad("stop", stop, "a list of strings or None")
            if tools is not None and (
                not isinstance(tools, list) or not all(isinstance(x, dict) for x in tools)
            ):
                raise _bad("tools", tools, "a list of objects or None")
            if tc is not None and not isinstance(tc, str | dict):
                raise _bad("tool_choice", tc, "a string, an object or None")
            if rf is not None and not isinstance(rf, dict):
                raise _bad("response_format", rf, "an object or None")
            _encodable("stop/tools/tool_choice/response_format", [stop, tools, tc, rf])
        if self.stream.__class__ is not bool:
            raise _bad("stream", self.stream, "a bool")
        if self.request_id is not None:
            _check_optional_str("request_id", self.request_id)
        if self.metadata.__class__ is not dict and not isinstance(self.metadata, dict):
            raise _bad("metadata", self.metadata, "an object")

    @property
    def system(self) -> str:
        """The concatenated text of the system messages ('' when none)."""
        return "\n".join(
            str(m.get("content", "")) for m in self.messages if m.get("role") == "system"
        )

    def prompt_chars(self) -> int:
        """Characters of text in the prompt (used for token estimates)."""
        return sum(len(str(m.get("content") or "")) for m in self.messages)


@dataclass(slots=True)
class Usage:
    """Token usage as reported by the provider (0 when it did not say)."""

    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(slots=True)
class ToolCall:
    """A tool (function) call requested by the model; ``arguments`` is parsed JSON."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass(slots=True)
class ChatResponse:
    """A provider's reply plus the layer's metadata.

    ``cached`` says whether it came from the cache, ``attempts`` how many HTTP
    attempts the reply took (retries included), ``latency_ms`` the time the
    layer spent, ``cost_usd`` the actual cost from the reply's usage and the
    price table, ``estimated_cost_usd`` the router's estimate before the call.
    """

    text: str
    provider: str
    model: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    estimated_cost_usd: float | None = None
    latency_ms: float = 0.0
    cached: bool = False
    attempts: int = 1
    metadata: dict[str, Any] = field(default_factory=dict)
