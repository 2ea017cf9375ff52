"""Request fingerprints: canonical, versioned, keyed, namespaced."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from samplemind_core import ChatRequest, ConfigError
from samplemind_core.fingerprint import (
    DEFAULT_FINGERPRINT_KEY,
    FINGERPRINT_VERSION,
    HASHERS,
    canonical_bytes,
    fingerprint,
    get_hasher,
)

FP = re.compile(r"v1\.[0-9a-f]{64}")

BASE: dict[str, Any] = {
    "provider": "ollama",
    "model": "llama3.2:3b-instruct-q8_0",
    "messages": [
        {"role": "system", "content": "You tag audio samples."},
        {"role": "user", "content": "Genre of a 124 bpm loop with a four-on-the-floor kick?"},
    ],
    "temperature": 0.2,
    "max_tokens": 256,
    "top_p": 0.9,
    "top_k": 40,
    "stop": ["\n\n"],
    "seed": 7,
    "tools": [{"type": "function", "function": {"name": "tag", "parameters": {"x": 1.5}}}],
    "tool_choice": "auto",
    "response_format": {"type": "json_object"},
}


def variant(**changes: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(BASE))
    out.update(changes)
    return out


def test_format_and_version() -> None:
    fp = fingerprint(BASE)
    assert FP.fullmatch(fp)
    assert FINGERPRINT_VERSION == 1
    assert json.loads(canonical_bytes(BASE))[0] == FINGERPRINT_VERSION


def test_chat_request_and_dict_agree() -> None:
    assert fingerprint(ChatRequest(**BASE)) == fingerprint(BASE)
    assert fingerprint(json.dumps(BASE)) == fingerprint(BASE)
    assert fingerprint(json.dumps(BASE).encode()) == fingerprint(BASE)


def test_key_order_does_not_matter() -> None:
    reordered = {k: BASE[k] for k in reversed(list(BASE))}
    reordered["messages"] = [{"content": m["content"], "role": m["role"]} for m in BASE["messages"]]
    reordered["tools"] = [{"function": BASE["tools"][0]["function"], "type": "function"}]
    assert fingerprint(reordered) == fingerprint(BASE)


def test_json_whitespace_does_not_matter() -> None:
    compact = json.dumps(BASE, separators=(",", ":"))
    spaced = json.dumps(BASE, indent=4)
    assert fingerprint(compact) == fingerprint(spaced) == fingerprint(BASE)


@pytest.mark.parametrize("spelling", ["1", "1.0", "1e0", "1.00", "10e-1"])
def test_float_spellings_in_json_text(spelling: str) -> None:
    text = json.dumps(variant(temperature=0.0)).replace(
        '"temperature": 0.0', f'"temperature": {spelling}'
    )
    assert fingerprint(text) == fingerprint(variant(temperature=1.0))


def test_float_spellings_as_values() -> None:
    ones = [variant(temperature=v) for v in (1, 1.0, "1e0")]
    assert len({fingerprint(r) for r in ones}) == 1
    assert fingerprint(ChatRequest(**variant(temperature=1))) == fingerprint(ones[0])
    assert fingerprint(variant(temperature=-0.0)) == fingerprint(variant(temperature=0.0))
    assert fingerprint(variant(temperature=0)) == fingerprint(variant(temperature=0.0))
    assert fingerprint(ChatRequest(**variant(top_p=-0.0))) == fingerprint(variant(top_p=0.0))
    assert fingerprint(variant(max_tokens=256.0)) == fingerprint(BASE)
    nested = variant(
        tools=[{"type": "function", "function": {"name": "tag", "parameters": {"x": 1.0}}}]
    )
    assert fingerprint(nested) == fingerprint(
        variant(tools=[{"type": "function", "function": {"name": "tag", "parameters": {"x": 1}}}])
    )


@pytest.mark.parametrize(
    "excluded",
    [
        {"request_id": "r-123"},
        {"timeout": 12.5},
        {"stream": True},
        {"metadata": {"user": "alice"}},
        {"api_key": "sk-secret"},
        {"headers": {"Authorization": "Bearer sk-secret"}},
    ],
)
def test_fields_that_cannot_change_the_answer_are_excluded(excluded: dict[str, Any]) -> None:
    assert fingerprint({**BASE, **excluded}) == fingerprint(BASE)
    known = {k: v for k, v in excluded.items() if k in ChatRequest.__dataclass_fields__}
    if known:
        assert fingerprint(ChatRequest(**BASE, **known)) == fingerprint(BASE)


def test_api_keys_never_reach_the_hashed_bytes() -> None:
    assert b"sk-secret" not in canonical_bytes({**BASE, "api_key": "sk-secret"})


@pytest.mark.parametrize(
    "change",
    [
        {"provider": "openai"},
        {"model": "other"},
        {"messages": [{"role": "user", "content": "something else"}]},
        {"messages": [*BASE["messages"][:1], {**BASE["messages"][1], "role": "assistant"}]},
        {"temperature": 0.3},
        {"max_tokens": 255},
        {"top_p": 0.8},
        {"top_k": 41},
        {"stop": ["END"]},
        {"seed": 8},
        {"tools": None},
        {"tool_choice": "none"},
        {"response_format": {"type": "text"}},
    ],
    ids=lambda c: next(iter(c)),
)
def test_fields_that_change_the_answer_change_the_key(change: dict[str, Any]) -> None:
    assert fingerprint(variant(**change)) != fingerprint(BASE)


def test_prompt_whitespace_is_part_of_the_prompt() -> None:
    spaced = variant(messages=[{"role": "user", "content": "hi  there"}])
    single = variant(messages=[{"role": "user", "content": "hi there"}])
    assert fingerprint(spaced) != fingerprint(single)


def test_namespaces_and_keys_separate() -> None:
    assert fingerprint(BASE, namespace="a") != fingerprint(BASE, namespace="b")
    assert fingerprint(BASE) == fingerprint(BASE, namespace="default")
    assert fingerprint(BASE, key=DEFAULT_FINGERPRINT_KEY) == fingerprint(BASE)
    assert fingerprint(BASE, key=b"\x01" * 32) != fingerprint(BASE)


@pytest.mark.parametrize("name", sorted(HASHERS))
def test_every_hasher(name: str) -> None:
    fp = fingerprint(BASE, hasher=name)
    assert fp.startswith("v1.") and re.fullmatch(r"[0-9a-f]+", fp[3:])
    assert fp == fingerprint(ChatRequest(**BASE), hasher=get_hasher(name))
    assert fp != fingerprint(BASE, hasher=name, key=b"\x02" * 32)
    assert HASHERS[name].secure is (name != "xxh3_128")


def test_hashers_differ() -> None:
    assert len({fingerprint(BASE, hasher=n) for n in HASHERS}) == len(HASHERS)


@pytest.mark.parametrize(
    "bad",
    [
        "not json {",
        b"\xff\xfe",
        [1, 2, 3],
        42,
        {"model": "m"},  # no messages
        variant(temperature=True),
        variant(temperature=[0.2]),
        variant(metadata=None, messages=[{"role": "user", "content": object()}]),
    ],
    ids=[
        "bad-json",
        "bad-bytes",
        "list",
        "int",
        "no-messages",
        "bool",
        "list-temp",
        "object",
    ],
)
def test_bad_input_raises_config_error(bad: Any) -> None:
    with pytest.raises(ConfigError):
        fingerprint(bad)


def test_unknown_hasher() -> None:
    with pytest.raises(ConfigError, match="unknown hasher"):
        fingerprint(BASE, hasher="md5")


def test_empty_tools_equal_no_tools_for_both_inputs() -> None:
    assert fingerprint(ChatRequest(**variant(tools=[]))) == fingerprint(variant(tools=None))
    assert fingerprint(ChatRequest(**variant(response_format={}))) == fingerprint(
        variant(response_format={})
    )


@pytest.mark.parametrize("field", ["max_tokens", "temperature"])
def test_non_numeric_string_is_a_config_error(field: str) -> None:
    with pytest.raises(ConfigError):
        fingerprint(variant(**{field: "many"}))


# ----------------------------------------------------------------- properties

json_scalars = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
messages = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["system", "user", "assistant"]),
            "content": st.text(max_size=200),
        },
        optional={"name": st.text(max_size=10)},
    ),
    min_size=1,
    max_size=5,
)
requests = st.fixed_dictionaries(
    {"messages": messages},
    optional={
        "provider": st.sampled_from(["ollama", "openai", "anthropic", "gemini"]),
        "model": st.text(max_size=30),
        "temperature": st.floats(0, 2, allow_nan=False),
        "top_p": st.floats(0, 1, allow_nan=False),
        "max_tokens": st.integers(1, 8192),
        "seed": st.integers(0, 2**31),
        "response_format": st.dictionaries(
            st.text(max_size=8), json_values, min_size=1, max_size=3
        ),
    },
)


def _shuffled(value: Any, data: st.DataObject) -> Any:
    if isinstance(value, dict):
        keys = data.draw(st.permutations(list(value)))
        return {k: _shuffled(value[k], data) for k in keys}
    if isinstance(value, list):
        return [_shuffled(v, data) for v in value]
    return value


@settings(max_examples=150, deadline=None)
@given(request=requests, data=st.data())
@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_property_key_order_and_whitespace_never_matter(
    request: dict[str, Any], data: st.DataObject
) -> None:
    shuffled = _shuffled(request, data)
    indent = data.draw(st.sampled_from([None, 1, 4]))
    assert fingerprint(json.dumps(shuffled, indent=indent)) == fingerprint(request)
    assert fingerprint(ChatRequest(**request)) == fingerprint(request)


@settings(max_examples=150, deadline=None)
@given(request=requests, t=st.integers(0, 2))
@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_property_integral_floats_equal_ints(request: dict[str, Any], t: int) -> None:
    assert fingerprint({**request, "temperature": t}) == fingerprint(
        {**request, "temperature": float(t)}
    )
    assert fingerprint({**request, "temperature": t}) == fingerprint(
        json.dumps({**request, "temperature": t}).replace(
            f'"temperature": {t}', f'"temperature": {t}e0'
        )
    )


@settings(max_examples=150, deadline=None)
@given(a=requests, b=requests)
@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_property_different_requests_different_keys(a: dict[str, Any], b: dict[str, Any]) -> None:
    if canonical_bytes(a) != canonical_bytes(b):
        assert fingerprint(a) != fingerprint(b)
    else:
        assert fingerprint(a) == fingerprint(b)


@settings(max_examples=100, deadline=None)
@given(
    request=requests, ns=st.text(min_size=1, max_size=12), other=st.text(min_size=1, max_size=12)
)
@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_property_namespaces_never_share(request: dict[str, Any], ns: str, other: str) -> None:
    if ns != other:
        assert fingerprint(request, namespace=ns) != fingerprint(request, namespace=other)


def test_threads_get_the_same_keys_as_one_thread() -> None:
    """The BLAKE3 hasher is reused per thread: threads must never mix their inputs."""
    from concurrent.futures import ThreadPoolExecutor

    requests = [
        variant(messages=[{"role": "user", "content": f"q{i}" * (i + 1)}]) for i in range(64)
    ]
    keys = [b"\x01" * 32, b"\x02" * 32]
    serial = [fingerprint(r, key=k) for r in requests for k in keys]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(5):
            threaded = list(
                pool.map(
                    lambda rk: fingerprint(rk[0], key=rk[1]),
                    [(r, k) for r in requests for k in keys],
                )
            )
            assert threaded == serial


@pytest.mark.parametrize("big", [2.0**64, -(2.0**63) * 2, 1e30])
def test_integral_float_beyond_64_bits_in_a_nested_field_keys_without_error(big: float) -> None:
    # Found by hypothesis (tests/test_fuzz.py): ChatRequest accepted it, fingerprint() raised.
    req = ChatRequest(
        messages=[{"role": "user", "content": "hi"}], response_format={"type": "json", "x": big}
    )
    assert fingerprint(req) != fingerprint(
        ChatRequest(messages=[{"role": "user", "content": "hi"}], response_format={"type": "json"})
    )


def test_xxh3_128_without_xxhash_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """xxhash is a dependency of the harness extra, not of the layer: without it the
    benchmark-only hasher says what to install, and every other hasher works."""
    import sys

    monkeypatch.setitem(sys.modules, "xxhash", None)  # `import xxhash` now fails
    monkeypatch.setattr(sys.modules["samplemind_core.fingerprint"], "_xxh3_hexdigest", None)
    with pytest.raises(ConfigError, match=r"xxhash.*samplemind-core\[harness\]"):
        fingerprint(BASE, hasher="xxh3_128")
    assert fingerprint(BASE, hasher="blake3").startswith("v1.")


def test_the_layer_imports_xxhash_only_inside_the_xxh3_hasher() -> None:
    import ast
    from pathlib import Path

    import samplemind_core

    root = Path(samplemind_core.__file__).parent
    where = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
            for node in ast.walk(fn):
                if isinstance(node, ast.Import) and any(a.name == "xxhash" for a in node.names):
                    where.append((path.name, fn.name))
        top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        assert not any(
            (isinstance(n, ast.Import) and any(a.name == "xxhash" for a in n.names))
            or (isinstance(n, ast.ImportFrom) and n.module == "xxhash")
            for n in top
        ), path
    assert where == [("fingerprint.py", "_xxh3_128")]
