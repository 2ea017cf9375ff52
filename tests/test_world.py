"""The world model: determinism, latency medians and ratios (simulated seconds), fault rates."""

from __future__ import annotations

import math
import statistics

import pytest

from fixtures.world import (
    DEFAULT_PROFILES,
    REFERENCE_OUTPUT_TOKENS,
    Fault,
    WorldModel,
    count_tokens,
    make_reply,
)

PROVIDERS = ("ollama", "gemini", "openai", "anthropic")
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "tag_file",
            "parameters": {
                "type": "object",
                "properties": {
                    "path": {"type": "string"},
                    "genre": {"type": "string"},
                    "mood": {"type": "string", "enum": ["dark", "bright"]},
                    "bpm": {"type": "integer"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    }
]


def _content(i: int) -> bytes:
    return f'{{"messages":[{{"role":"user","content":"Tag loop_{i}.wav"}}]}}'.encode()


def _sequence(world: WorldModel, n: int = 300) -> list[object]:
    return [world.draw(PROVIDERS[i % 4], _content(i % 37)) for i in range(n)]


def test_same_seed_same_sequence_gives_identical_outcomes() -> None:
    kwargs = {"seed": 11, "latency_scale": 0.01, "fault_rate": 0.3}
    assert _sequence(WorldModel(**kwargs)) == _sequence(WorldModel(**kwargs))  # type: ignore[arg-type]


def test_other_seed_gives_other_answers() -> None:
    a = WorldModel(seed=1).draw("openai", _content(1))
    b = WorldModel(seed=2).draw("openai", _content(1))
    assert a.reply.text != b.reply.text
    assert a.ttft_s != b.ttft_s


def test_reply_depends_on_content_not_on_call_order() -> None:
    world = WorldModel(seed=5)
    first = world.draw("gemini", _content(1))
    for i in range(10):
        world.draw("gemini", _content(100 + i))
    again = world.draw("gemini", _content(1))
    assert first.reply == again.reply
    assert first.ttft_s != again.ttft_s  # the RNG advanced
    assert world.draw("gemini", _content(2)).reply != first.reply


def test_providers_draw_from_independent_streams() -> None:
    """Interleaving calls of other providers does not change a provider's draws."""
    alone = WorldModel(seed=3, fault_rate=0.5)
    mixed = WorldModel(seed=3, fault_rate=0.5)
    solo = [alone.draw("openai", _content(i)) for i in range(50)]
    together = []
    for i in range(50):
        mixed.draw("ollama", _content(i))
        together.append(mixed.draw("openai", _content(i)))
    assert solo == together


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_latency_medians_and_ratios_in_simulated_seconds() -> None:
    world = WorldModel(seed=0, latency_scale=1.0)
    ratios: dict[str, list[float]] = {p: [] for p in PROVIDERS}
    at_reference: dict[str, list[float]] = {p: [] for p in PROVIDERS}
    for i in range(3000):
        for provider in PROVIDERS:
            outcome = world.draw(provider, _content(i))
            profile = DEFAULT_PROFILES[provider]
            expected = profile.median_s(outcome.reply.output_tokens)
            ratios[provider].append(outcome.latency_s / expected)
            scale = profile.median_s(REFERENCE_OUTPUT_TOKENS) / expected
            at_reference[provider].append(outcome.latency_s * scale)
    for provider in PROVIDERS:
        # lognormal noise has median 1
        assert statistics.median(ratios[provider]) == pytest.approx(1.0, abs=0.03)
    medians = {p: statistics.median(v) for p, v in at_reference.items()}
    assert medians["gemini"] == pytest.approx(3.0, rel=0.03)
    assert medians["openai"] == pytest.approx(4.0, rel=0.03)
    assert medians["anthropic"] == pytest.approx(5.0, rel=0.03)
    assert medians["ollama"] < 1.0
    assert medians["ollama"] < medians["gemini"] < medians["openai"] < medians["anthropic"]
    assert DEFAULT_PROFILES["ollama"].overhead_s == pytest.approx(0.04)


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_ttft_and_token_rate_are_separate_distributions_with_the_profiles_medians() -> None:
    world = WorldModel(seed=9)
    for provider in PROVIDERS:
        profile = DEFAULT_PROFILES[provider]
        ttft, rate = [], []
        for i in range(2000):
            outcome = world.draw(provider, _content(i))
            ttft.append(outcome.ttft_s / profile.overhead_s)
            rate.append(outcome.reply.output_tokens / outcome.generation_s / profile.tokens_per_s)
        # median TTFT = overhead_s, median speed = tokens_per_s (lognormal noise, median 1)
        assert statistics.median(ttft) == pytest.approx(1.0, abs=0.05)
        assert statistics.median(rate) == pytest.approx(1.0, abs=0.05)
        # drawn apart: a slow first token says nothing about the speed after it
        logs = [math.log(v) for v in ttft], [math.log(v) for v in rate]
        assert abs(statistics.correlation(*logs)) < 0.1
    # the published figures the profiles follow (fixtures/world.py names the sources)
    assert DEFAULT_PROFILES["openai"].overhead_s == pytest.approx(0.45)
    assert DEFAULT_PROFILES["anthropic"].overhead_s == pytest.approx(0.75)
    assert DEFAULT_PROFILES["gemini"].overhead_s == pytest.approx(0.5)


def test_latency_scale_scales_every_delay_and_keeps_ratios() -> None:
    full = _sequence(WorldModel(seed=4, latency_scale=1.0, fault_rate=0.3))
    scaled = _sequence(WorldModel(seed=4, latency_scale=0.01, fault_rate=0.3))
    for a, b in zip(full, scaled, strict=True):
        assert b.reply == a.reply and b.fault == a.fault  # type: ignore[attr-defined]
        assert b.ttft_s == pytest.approx(a.ttft_s * 0.01)  # type: ignore[attr-defined]
        assert b.generation_s == pytest.approx(a.generation_s * 0.01)  # type: ignore[attr-defined]
    zero = WorldModel(seed=4, latency_scale=0.0).draw("anthropic", _content(1))
    assert zero.latency_s == 0.0


@pytest.mark.parametrize("rate", [0.05, 0.3])
def test_fault_rates_within_tolerance(rate: float) -> None:
    n = 12_000
    world = WorldModel(seed=21, fault_rate=rate)
    counts: dict[Fault | None, int] = {}
    for i in range(n):
        outcome = world.draw(PROVIDERS[i % 4], _content(i % 50))
        counts[outcome.fault] = counts.get(outcome.fault, 0) + 1
    failed = n - counts.get(None, 0)
    tol = 4 * math.sqrt(n * rate * (1 - rate))
    assert abs(failed - n * rate) < tol
    per_kind = rate / len(Fault)
    kind_tol = 4 * math.sqrt(n * per_kind * (1 - per_kind))
    for kind in Fault:
        assert abs(counts.get(kind, 0) - n * per_kind) < kind_tol, kind


def test_fault_weights_choose_only_listed_faults() -> None:
    world = WorldModel(seed=2, fault_rate=1.0, faults={"429": 3, Fault.TIMEOUT: 1})
    kinds = [world.draw("openai", _content(i)).fault for i in range(4000)]
    assert set(kinds) == {Fault.RATE_LIMIT, Fault.TIMEOUT}
    share = kinds.count(Fault.RATE_LIMIT) / len(kinds)
    assert share == pytest.approx(0.75, abs=0.04)
    assert {WorldModel(fault_rate=1.0, faults=["500"]).draw("gemini", b"x").fault} == {
        Fault.SERVER_ERROR
    }


def test_no_faults_at_rate_zero() -> None:
    world = WorldModel(seed=2, fault_rate=0.0)
    assert all(world.draw("ollama", _content(i)).fault is None for i in range(2000))


def test_fault_details_are_scaled() -> None:
    world = WorldModel(seed=8, latency_scale=0.01, fault_rate=1.0, faults=["429"])
    lo, hi = DEFAULT_PROFILES["openai"].retry_after_s
    for i in range(200):
        outcome = world.draw("openai", _content(i))
        assert lo * 0.01 - 1e-9 <= outcome.retry_after_s <= hi * 0.01 + 1e-9
    assert WorldModel(latency_scale=0.5).stall_s == pytest.approx(60.0)
    assert WorldModel(latency_scale=0.001).stall_s == 1.0  # floor: still beats a short timeout
    assert WorldModel(latency_scale=0.001, stall_s=0.2).stall_s == 0.2
    timeout = WorldModel(fault_rate=1.0, faults=["timeout"], stall_s=3.0).draw("gemini", b"x")
    assert timeout.fault is Fault.TIMEOUT and timeout.stall_s == 3.0


def test_forced_faults_keep_the_random_stream_aligned() -> None:
    plain = WorldModel(seed=6, fault_rate=0.2)
    scripted = WorldModel(seed=6, fault_rate=0.2)
    scripted.force("openai", "503", None)
    a = [plain.draw("openai", _content(i)) for i in range(20)]
    b = [scripted.draw("openai", _content(i)) for i in range(20)]
    assert b[0].fault is Fault.UNAVAILABLE
    assert b[1].fault is None
    assert a[2:] == b[2:]
    assert scripted.calls("openai") == 20


def test_reply_looks_like_samplemind_and_reports_tokens() -> None:
    reply = make_reply(1, "openai", b'{"content": "Tag Dark_Trap_140.wav please"}')
    assert reply.text.startswith("**Dark_Trap_140.wav**")
    assert "BPM" in reply.text
    assert reply.output_tokens == count_tokens(reply.text)
    assert reply.input_tokens > 0
    assert not reply.tool_calls


def test_max_tokens_truncates() -> None:
    reply = make_reply(1, "anthropic", b"some prompt", max_tokens=10)
    assert reply.truncated
    assert reply.output_tokens <= 10


def test_tool_call_reply_follows_the_schema() -> None:
    reply = make_reply(3, "openai", b"Tag Kick_01.wav", tools=TOOLS)  # type: ignore[arg-type]
    assert reply.text == ""
    assert reply.tool_calls
    call = reply.tool_calls[0]
    assert call.name == "tag_file"
    assert call.arguments["path"] == "Kick_01.wav"
    assert call.arguments["mood"] in ("dark", "bright")
    assert 70 <= call.arguments["bpm"] <= 180
    assert isinstance(call.arguments["tags"], list)
    anthropic_tools = [{"name": "tag_file", "input_schema": TOOLS[0]["function"]["parameters"]}]  # type: ignore[index]
    assert make_reply(3, "anthropic", b"x", tools=anthropic_tools).tool_calls[0].name == "tag_file"  # type: ignore[arg-type]


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="fault_rate"):
        WorldModel(fault_rate=1.5)
    with pytest.raises(ValueError, match="latency_scale"):
        WorldModel(latency_scale=-1)
    with pytest.raises(ValueError):
        WorldModel(faults=["418"])
    with pytest.raises(KeyError, match="unknown provider"):
        WorldModel().draw("mistral", b"x")
