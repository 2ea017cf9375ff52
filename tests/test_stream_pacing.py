"""The emulator's stream pacing: the first text leaves at the model's TTFT, then one token gap
per content frame; metadata frames (OpenAI's role chunk, Anthropic's ``message_start`` /
``content_block_start`` / ``ping``, the usage and end frames) wait for nothing.

The in-process mock and the real emulator both pace with ``WireReply.delay_before``; the
sleeps are checked through the mock's injected sleep (no wall clock).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import httpx
import orjson
import pytest

from fixtures.mock import world_transport
from fixtures.servers import EMULATOR_API_KEY
from fixtures.wire import WireReply, handle
from fixtures.world import WorldModel
from samplemind_core import ChatRequest, ProviderConfig, Secret
from samplemind_core.providers import PROVIDER_CLASSES, get_provider

NAMES = sorted(PROVIDER_CLASSES)
BASE = "http://emulated.test"


def _wire(name: str, world: WorldModel, text: str = "describe kick_01.wav") -> WireReply:
    url = f"{BASE}/v1" if name == "openai" else BASE
    key = None if name == "ollama" else Secret(EMULATOR_API_KEY)
    provider = get_provider(name, ProviderConfig(name=name, base_url=url, api_key=key))
    req = ChatRequest(messages=[{"role": "user", "content": text}], max_tokens=300)
    method, full, headers, body = provider.build_stream_request(req, provider.default_model)
    parts = urlsplit(full)
    raw = orjson.dumps(body)
    lower = {k.lower(): v for k, v in headers.items()}
    return handle(world, method, parts.path, dict(parse_qsl(parts.query)), lower, raw)


@pytest.mark.parametrize("name", NAMES)
def test_metadata_frames_are_immediate_and_text_is_paced_by_the_token_rate(name: str) -> None:
    reply = _wire(name, WorldModel(seed=2, latency_scale=1.0))
    outcome = reply.outcome
    assert outcome is not None and reply.stream and reply.chunk_delays is not None
    frames = reply.content_frames
    first = frames[0]
    delays = [reply.delay_before(i) for i in range(len(reply.chunks))]
    # Nothing waits before the first text: it leaves with the headers, at the model's TTFT.
    assert reply.delay_s == pytest.approx(outcome.ttft_s)
    assert delays[: first + 1] == [0.0] * (first + 1)
    # One equal gap before each later content frame; metadata frames never wait.
    gap = outcome.generation_s / (len(frames) - 1)
    for i, d in enumerate(delays):
        assert d == pytest.approx(gap if i in frames[1:] else 0.0)
    assert sum(delays) == pytest.approx(outcome.generation_s)
    assert reply.delay_s + sum(delays) == pytest.approx(outcome.latency_s)


def test_openai_role_chunk_and_anthropic_preamble_are_metadata() -> None:
    world = WorldModel(seed=2, latency_scale=1.0)
    openai = _wire("openai", world)
    assert b'"role":"assistant"' in openai.chunks[0] and openai.content_frames[0] == 1
    assert openai.delay_before(1) == 0.0  # the first text follows the role chunk at once
    anthropic = _wire("anthropic", world)
    first = anthropic.content_frames[0]
    preamble = b"".join(anthropic.chunks[:first])
    assert b"message_start" in preamble and b"ping" in preamble
    assert [anthropic.delay_before(i) for i in range(first + 1)] == [0.0] * (first + 1)


def test_latency_scale_scales_ttft_and_token_gaps_alike() -> None:
    full = _wire("anthropic", WorldModel(seed=4, latency_scale=1.0))
    small = _wire("anthropic", WorldModel(seed=4, latency_scale=0.01))
    assert small.delay_s == pytest.approx(full.delay_s * 0.01)
    n = len(full.chunks)
    assert [small.delay_before(i) for i in range(n)] == pytest.approx(
        [full.delay_before(i) * 0.01 for i in range(n)]
    )


async def test_the_mock_sleeps_ttft_then_one_gap_per_later_token() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    world = WorldModel(seed=5, latency_scale=0.01)
    body = {
        "model": "gpt-4o-mini",
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 300,
        "messages": [{"role": "user", "content": "describe kick_01.wav"}],
    }
    auth = {"authorization": f"Bearer {EMULATOR_API_KEY}"}
    client = httpx.AsyncClient(transport=world_transport(world, sleep=sleep))
    async with (
        client,
        client.stream("POST", f"{BASE}/v1/chat/completions", json=body, headers=auth) as r,
    ):
        raw = b"".join([c async for c in r.aiter_raw()])
    events = [e for e in raw.split(b"\n\n") if e.startswith(b"data: {")]
    texts = [
        e
        for e in events
        if orjson.loads(e[6:])["choices"][:1]
        and orjson.loads(e[6:])["choices"][0]["delta"].get("content")
    ]
    assert len(events) > len(texts) > 3  # role, finish and usage frames besides the text
    # one sleep for the TTFT, then one equal gap per later text frame; none for metadata
    assert len(slept) == len(texts)
    assert slept[0] > 0 and slept[0] != pytest.approx(slept[1])
    assert slept[1:] == pytest.approx([slept[1]] * (len(texts) - 1))


# --------------------------------------------------------------------------- keyed latency


def test_default_latency_draws_keep_the_call_order_sequence() -> None:
    """Without ``keyed_latency`` the draws are the provider's RNG in call order, as before the
    option existed (figures computed with the world of 5403b91)."""
    world = WorldModel(seed=0, latency_scale=1.0, fault_rate=0.3)
    outcomes = [world.draw("openai", b'{"n": %d}' % i) for i in range(4)]
    assert [(o.ttft_s, o.generation_s, o.fault) for o in outcomes] == [
        (0.5751671676042016, 2.180561218192237, "disconnect"),
        (0.47632093040370993, 3.4400803720395143, None),
        (0.477982812013266, 1.5031451250022851, "malformed"),
        (0.6318161364899416, 2.521334434586218, "malformed"),
    ]
    assert not world.keyed_latency and world.config()["keyed_latency"] is False


def _delays(reply: WireReply) -> tuple[float, list[float]]:
    return reply.delay_s, [reply.delay_before(i) for i in range(len(reply.chunks))]


def test_keyed_latency_gives_the_same_body_the_same_ttft_and_gaps_in_any_order() -> None:
    keyed = WorldModel(seed=3, latency_scale=1.0, keyed_latency=True)
    a1 = _wire("openai", keyed, "describe kick_01.wav")
    b = _wire("openai", keyed, "describe snare_02.wav")
    a2 = _wire("openai", keyed, "describe kick_01.wav")
    assert _delays(a1) == _delays(a2)  # the same body: the same TTFT and every token gap
    assert a1.delay_s != b.delay_s  # another body: another draw
    assert a1.delay_before(a1.content_frames[1]) != b.delay_before(b.content_frames[1])
    # Order-free: a fresh world asked B first, then A, gives A the same delays.
    fresh = WorldModel(seed=3, latency_scale=1.0, keyed_latency=True)
    _wire("openai", fresh, "describe snare_02.wav")
    assert _delays(_wire("openai", fresh, "describe kick_01.wav")) == _delays(a1)
    # The default world draws in call order: the same body twice gets two draws.
    plain = WorldModel(seed=3, latency_scale=1.0)
    assert _wire("openai", plain, "describe kick_01.wav").delay_s != pytest.approx(
        _wire("openai", plain, "describe kick_01.wav").delay_s
    )
    # The seed and the provider are part of the key.
    other_seed = WorldModel(seed=4, latency_scale=1.0, keyed_latency=True)
    assert _wire("openai", other_seed, "describe kick_01.wav").delay_s != a1.delay_s
    assert _wire("anthropic", keyed, "describe kick_01.wav").outcome != a1.outcome


def test_keyed_latency_leaves_the_fault_sequence_in_call_order() -> None:
    bodies = [b'{"n": %d}' % (i % 3) for i in range(40)]
    plain = WorldModel(seed=9, latency_scale=1.0, fault_rate=0.4)
    keyed = WorldModel(seed=9, latency_scale=1.0, fault_rate=0.4, keyed_latency=True)
    faults = [plain.draw("gemini", body).fault for body in bodies]
    assert [keyed.draw("gemini", body).fault for body in bodies] == faults
    assert len(set(faults)) > 2  # faults vary, also for a repeated body (a retry can succeed)
    assert keyed.calls("gemini") == 40


def test_keyed_latency_setting_is_checked_kept_and_reported() -> None:
    with pytest.raises(ValueError, match="keyed_latency must be true or false"):
        WorldModel(keyed_latency="yes")  # type: ignore[arg-type]
    world = WorldModel(keyed_latency=True)
    assert "keyed_latency=True" in repr(world)
    assert world.with_changes(latency_scale=0.5).keyed_latency is True  # kept when not named
    assert world.with_changes(keyed_latency=False).config()["keyed_latency"] is False
