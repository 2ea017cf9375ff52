"""Same seed, same request sequence: the respx mock, world_transport and the emulator agree."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from fixtures.mock import MockProviders, world_transport
from fixtures.servers import EmulatorServer
from fixtures.wire_parse import answer
from fixtures.world import WorldModel
from samplemind_core import Settings
from tests.test_emulator import call_spec

SEED = 42
FAULTS = ["429", "500", "503", "malformed", "disconnect"]
RATE = 0.3


def sequence() -> list[tuple[str, bool, bool, bool]]:
    """(provider, stream, tools, sse) for 48 calls over the four providers."""
    out = []
    for i in range(48):
        provider = ("ollama", "openai", "anthropic", "gemini")[i % 4]
        out.append((provider, i % 3 == 1, i % 5 == 2, provider == "gemini" and i % 2 == 0))
    return out


def _classify(provider: str, r: httpx.Response, stream: bool) -> tuple[str, Any]:
    try:
        return (provider, answer(provider, r.status_code, dict(r.headers), r.content, stream))
    except ValueError:
        return (provider, "malformed")


def run(client: httpx.Client, base: Callable[[str, str], str]) -> list[Any]:
    results: list[Any] = []
    for provider, stream, tools, sse in sequence():
        path, headers, body = call_spec(provider, stream=stream, tools=tools, sse=sse)
        try:
            r = client.post(base(provider, path), headers=headers, json=body)
        except httpx.RemoteProtocolError:
            results.append((provider, "disconnect"))
            continue
        results.append(_classify(provider, r, stream))
    return results


async def arun(client: httpx.AsyncClient, base: Callable[[str, str], str]) -> list[Any]:
    results: list[Any] = []
    for provider, stream, tools, sse in sequence():
        path, headers, body = call_spec(provider, stream=stream, tools=tools, sse=sse)
        try:
            r = await client.post(base(provider, path), headers=headers, json=body)
        except httpx.RemoteProtocolError:
            results.append((provider, "disconnect"))
            continue
        results.append(_classify(provider, r, stream))
    return results


@pytest.fixture
def emulator_results(emulator_factory: Callable[..., EmulatorServer]) -> list[Any]:
    server = emulator_factory(seed=SEED, fault_rate=RATE, faults=FAULTS)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        return run(client, lambda _p, path: path)


@pytest.mark.live
@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
async def test_world_transport_matches_emulator(emulator_results: list[Any]) -> None:
    world = WorldModel(seed=SEED, latency_scale=0.0, fault_rate=RATE, faults=FAULTS)
    async with httpx.AsyncClient(transport=world_transport(world), base_url="http://mock") as c:
        mocked = await arun(c, lambda _p, path: path)
    assert mocked == emulator_results
    kinds = {r[1] if isinstance(r[1], str) else type(r[1]).__name__ for r in mocked}
    assert {"disconnect", "malformed", "dict", "tuple"} <= kinds  # faults and answers both seen


@pytest.mark.live
@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
async def test_respx_mock_matches_emulator(
    emulator_results: list[Any], mock_providers: MockProviders
) -> None:
    mock_providers.configure(seed=SEED, latency_scale=0.0, fault_rate=RATE, faults=FAULTS)
    settings = Settings()

    def base(provider: str, path: str) -> str:
        root = settings.provider(provider).base_url
        if provider == "openai":  # default base already ends with /v1
            return root + path.removeprefix("/v1")
        return root + path

    async with httpx.AsyncClient(timeout=10) as c:
        mocked = await arun(c, base)
    assert mocked == emulator_results
    assert sum(mock_providers.calls.values()) == len(sequence())


@pytest.mark.live
@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
async def test_different_seed_differs(emulator_results: list[Any]) -> None:
    world = WorldModel(seed=SEED + 1, latency_scale=0.0, fault_rate=RATE, faults=FAULTS)
    async with httpx.AsyncClient(transport=world_transport(world), base_url="http://m") as c:
        assert await arun(c, lambda _p, path: path) != emulator_results
