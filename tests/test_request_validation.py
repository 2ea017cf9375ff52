"""ChatRequest refuses bad fields at construction (issue 11): ConfigError naming the field."""

from __future__ import annotations

import math
from typing import Any

import pytest

from samplemind_core import ChatRequest, ConfigError, SampleMindError
from samplemind_core.fingerprint import fingerprint

USER = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"messages": "hi"}, "ChatRequest.messages must be a list"),
        ({"messages": {}}, "ChatRequest.messages must be a list"),
        ({"messages": None}, "ChatRequest.messages must be a list"),
        ({"messages": []}, "ChatRequest.messages must not be empty"),
        ({"messages": ["hi"]}, "ChatRequest.messages[0] must be an object"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role must be one of"),
        ({"messages": [{"role": ["user"], "content": "x"}]}, "messages[0].role must be one of"),
        ({"messages": [*USER, {"role": "user"}]}, "messages[1] has no 'content'"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content must be a string"),
        ({"messages": [{"role": "user", "content": None}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": "\ud800"}]}, "cannot be encoded as JSON"),
        (
            {"messages": [{"role": "assistant", "content": "", "tool_calls": [None]}]},
            "messages[0].tool_calls must be a list of",
        ),
        (
            {"messages": [{"role": "assistant", "content": "", "tool_calls": True}]},
            "messages[0].tool_calls",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [{"function": {"name": "f", "arguments": "{not json"}}],
                    }
                ]
            },
            "messages[0].tool_calls",
        ),
        ({"max_tokens": 0}, "ChatRequest.max_tokens must be an integer >= 1"),
        ({"max_tokens": -3}, "ChatRequest.max_tokens"),
        ({"max_tokens": 1e30}, "ChatRequest.max_tokens"),
        ({"max_tokens": True}, "ChatRequest.max_tokens"),
        ({"max_tokens": 2**70}, "fits in 64 bits"),
        ({"temperature": math.nan}, "ChatRequest.temperature must be a finite number"),
        ({"temperature": math.inf}, "ChatRequest.temperature"),
        ({"temperature": -0.1}, "ChatRequest.temperature"),
        ({"temperature": 2.5}, "ChatRequest.temperature"),
        ({"temperature": "hot"}, "ChatRequest.temperature must be a number"),
        ({"top_p": math.nan}, "ChatRequest.top_p"),
        ({"top_p": 1.5}, "ChatRequest.top_p"),
        ({"top_k": 0}, "ChatRequest.top_k"),
        ({"seed": None, "top_k": 1.5}, "ChatRequest.top_k"),
        ({"seed": "7"}, "ChatRequest.seed"),
        ({"timeout": -1}, "ChatRequest.timeout must be a finite number of seconds > 0"),
        ({"timeout": 0}, "ChatRequest.timeout"),
        ({"timeout": math.nan}, "ChatRequest.timeout"),
        ({"timeout": math.inf}, "ChatRequest.timeout"),
        ({"timeout": "30"}, "ChatRequest.timeout"),
        ({"provider": 3}, "ChatRequest.provider"),
        ({"stop": "END"}, "ChatRequest.stop"),
        ({"tools": {"name": "t"}}, "ChatRequest.tools"),
        ({"tools": [{"name": "t", "x": object()}]}, "cannot be encoded as JSON"),
        ({"stream": "yes"}, "ChatRequest.stream"),
        ({"metadata": None}, "ChatRequest.metadata"),
    ],
)
def test_bad_field_is_a_config_error_naming_it(kwargs: dict[str, Any], fragment: str) -> None:
    kwargs = {"messages": USER, **kwargs}
    with pytest.raises(ConfigError) as info:
        ChatRequest(**kwargs)
    assert fragment in str(info.value)
    assert isinstance(info.value, SampleMindError)


def test_nan_temperature_no_longer_shares_the_key_of_none() -> None:
    with pytest.raises(ConfigError):
        ChatRequest(messages=USER, temperature=math.nan)
    assert fingerprint(ChatRequest(messages=USER, temperature=0.0)) != fingerprint(
        ChatRequest(messages=USER)
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"temperature": 0, "top_p": 1, "max_tokens": 1, "top_k": 40, "seed": -(2**63)},
        {"temperature": 2.0, "top_p": 0.0, "timeout": 0.001},
        {"messages": [{"role": "system", "content": "Größe in µs"}, *USER]},
        {
            "messages": [
                *USER,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "1", "function": {"name": "bpm", "arguments": '{"x": 1}'}}
                    ],
                },
                {"role": "tool", "content": "42", "tool_call_id": "1", "name": "bpm"},
            ]
        },
        {"stop": ["END"], "tools": [{"name": "t"}], "tool_choice": "auto"},
        {"response_format": {"type": "json_object"}, "stream": True, "request_id": "r1"},
    ],
)
def test_valid_requests_still_build(kwargs: dict[str, Any]) -> None:
    req = ChatRequest(**{"messages": USER, **kwargs})
    assert fingerprint(req).startswith("v1.")


def test_validate_catches_a_field_changed_after_construction() -> None:
    req = ChatRequest(messages=USER)
    req.max_tokens = 0
    with pytest.raises(ConfigError, match="max_tokens"):
        req.validate()
