"""The in-process mock: world_transport and the respx ``mock_providers`` fixture."""

from __future__ import annotations

import json

import httpx
import pytest

from fixtures.mock import MockProviders, world_transport
from fixtures.world import WorldModel
from samplemind_core import Settings

OPENAI_BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Tag a.wav"}]}
AUTH = {"authorization": "Bearer sk-test"}


class FakeSleep:
    def __init__(self) -> None:
        self.slept: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)


async def test_transport_sleeps_the_scaled_latency() -> None:
    sleep = FakeSleep()
    world = WorldModel(seed=1, latency_scale=0.01)
    expected = WorldModel(seed=1, latency_scale=0.01)
    async with httpx.AsyncClient(transport=world_transport(world, sleep=sleep)) as client:
        r = await client.post("http://emu/v1/chat/completions", json=OPENAI_BODY, headers=AUTH)
    assert r.status_code == 200
    content = json.dumps(OPENAI_BODY, sort_keys=True, separators=(",", ":")).encode()
    outcome = expected.draw("openai", content, prompt_chars=9)
    assert sleep.slept == [pytest.approx(outcome.latency_s)]
    assert r.json()["choices"][0]["message"]["content"] == outcome.reply.text


async def test_transport_timeout_fault_raises_read_timeout_after_the_read_timeout() -> None:
    sleep = FakeSleep()
    world = WorldModel(fault_rate=1.0, faults=["timeout"], stall_s=10.0, latency_scale=0.0)
    async with httpx.AsyncClient(
        transport=world_transport(world, sleep=sleep), timeout=2.0
    ) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post("http://emu/v1/chat/completions", json=OPENAI_BODY, headers=AUTH)
    assert sleep.slept == [2.0]


async def test_transport_stall_shorter_than_timeout_is_a_slow_success() -> None:
    sleep = FakeSleep()
    world = WorldModel(fault_rate=1.0, faults=["timeout"], stall_s=1.0, latency_scale=0.0)
    async with httpx.AsyncClient(
        transport=world_transport(world, sleep=sleep), timeout=5.0
    ) as client:
        r = await client.post("http://emu/v1/chat/completions", json=OPENAI_BODY, headers=AUTH)
    assert r.status_code == 200 and sleep.slept == [1.0]


@pytest.mark.parametrize("stream", [False, True])
async def test_transport_disconnect_fault_raises_while_reading(stream: bool) -> None:
    world = WorldModel(fault_rate=1.0, faults=["disconnect"], latency_scale=0.0)
    async with httpx.AsyncClient(transport=world_transport(world)) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(
                "http://emu/v1/chat/completions",
                json={**OPENAI_BODY, "stream": stream},
                headers=AUTH,
            )


async def test_transport_malformed_fault_gives_invalid_json() -> None:
    world = WorldModel(fault_rate=1.0, faults=["malformed"], latency_scale=0.0)
    async with httpx.AsyncClient(transport=world_transport(world)) as client:
        r = await client.post("http://emu/v1/chat/completions", json=OPENAI_BODY, headers=AUTH)
    assert r.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.content)


async def test_mock_providers_serves_default_base_urls(mock_providers: MockProviders) -> None:
    settings = Settings()
    async with httpx.AsyncClient() as client:
        r = await client.post(
            settings.provider("openai").base_url + "/chat/completions",
            json=OPENAI_BODY,
            headers=AUTH,
        )
        assert r.json()["object"] == "chat.completion"
        r = await client.post(
            settings.provider("ollama").base_url + "/api/chat",
            json={**OPENAI_BODY, "stream": False},
        )
        assert r.json()["done"] is True
        r = await client.post(
            settings.provider("anthropic").base_url + "/v1/messages",
            json={**OPENAI_BODY, "max_tokens": 100},
            headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
        )
        assert r.json()["type"] == "message"
        r = await client.post(
            settings.provider("gemini").base_url
            + "/v1beta/models/gemini-2.0-flash:generateContent",
            json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
            headers={"x-goog-api-key": "k"},
        )
        assert r.json()["candidates"][0]["content"]["role"] == "model"
        r = await client.get(settings.provider("ollama").base_url + "/")
        assert r.text == "Ollama is running"
    assert dict(mock_providers.calls) == {"openai": 1, "ollama": 1, "anthropic": 1, "gemini": 1}


async def test_mock_providers_configure_faults(mock_providers: MockProviders) -> None:
    mock_providers.configure(fault_rate=1.0, faults=["429"], latency_scale=0.01, seed=4)
    async with httpx.AsyncClient() as client:
        r = await client.post(
            "https://api.openai.com/v1/chat/completions", json=OPENAI_BODY, headers=AUTH
        )
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "rate_limit_exceeded"
    assert float(r.headers["retry-after"]) > 0
    assert mock_providers.calls["openai"] == 1
    assert mock_providers.history[-1].status == 429


async def test_mock_providers_keyed_latency_sleeps_the_same_for_the_same_body(
    mock_providers: MockProviders,
) -> None:
    sleep = FakeSleep()
    world = mock_providers.configure(latency_scale=0.01, seed=2, keyed_latency=True, sleep=sleep)
    assert world.keyed_latency
    other = {**OPENAI_BODY, "messages": [{"role": "user", "content": "Tag b.wav"}]}
    async with httpx.AsyncClient() as client:
        for body in (OPENAI_BODY, other, OPENAI_BODY):
            r = await client.post(
                "https://api.openai.com/v1/chat/completions", json=body, headers=AUTH
            )
            assert r.status_code == 200
    first, second, third = sleep.slept
    assert first == third != second
    assert mock_providers.configure(seed=3).keyed_latency  # kept when not named
    assert not mock_providers.configure(keyed_latency=False).keyed_latency


async def test_mock_providers_force_script(mock_providers: MockProviders) -> None:
    mock_providers.force("anthropic", "503", None)
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    body = {**OPENAI_BODY, "max_tokens": 50}
    async with httpx.AsyncClient() as client:
        first = await client.post(
            "https://api.anthropic.com/v1/messages", json=body, headers=headers
        )
        second = await client.post(
            "https://api.anthropic.com/v1/messages", json=body, headers=headers
        )
    assert first.status_code == 503
    assert first.json()["error"]["type"] == "overloaded_error"
    assert second.status_code == 200


async def test_mock_providers_refuses_unmocked_hosts(mock_providers: MockProviders) -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(Exception, match="not mocked"):
            await client.get("https://example.com/")
