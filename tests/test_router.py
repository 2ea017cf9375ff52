"""Router: route table, health tracking, circuit breaker, plan (pinning, context filter, cost)."""

from __future__ import annotations

import doctest
import itertools

import pytest

import samplemind_core.router as router_module
from samplemind_core import PROVIDERS, ChatRequest, ConfigError
from samplemind_core.router import (
    BreakerConfig,
    BreakerState,
    ModelCatalog,
    Priority,
    RouteChoice,
    Router,
    RouteRule,
    Task,
    estimate_tokens,
)


class Clock:
    """A manual clock for breaker tests."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


CATALOG = ModelCatalog.from_tables(
    {
        "ollama": ("llama-small", {"llama-small": (0.0, 0.0), "llama-big": (0.0, 0.0)},
                   {"llama-small": 8_000, "llama-big": 128_000}),
        "gemini": ("gem-flash", {"gem-flash": (0.10, 0.40), "gem-pro": (1.25, 10.0)},
                   {"gem-flash": 1_000_000, "gem-pro": 2_000_000}),
        "anthropic": ("claude-haiku", {"claude-haiku": (0.80, 4.0)}, {"claude-haiku": 200_000}),
        "openai": ("gpt-mini", {"gpt-mini": (0.15, 0.60), "gpt-big": (2.50, 10.0)},
                   {"gpt-mini": 128_000, "gpt-big": 128_000}),
    }
)  # fmt: skip


def req(text: str = "hello", **kw: object) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], **kw)  # type: ignore[arg-type]


def make(clock: Clock | None = None, **breaker: object) -> Router:
    return Router(
        breaker=BreakerConfig(**breaker),  # type: ignore[arg-type]
        clock=clock or Clock(),
        catalog=CATALOG,
    )


# -- the table --------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "priority", "first"),
    [
        ("factual", "speed", "ollama"),
        ("creative", "quality", "anthropic"),
        ("audio", "cost", "ollama"),
        ("tools", "quality", "openai"),
    ],
)
def test_required_routes(task: str, priority: str, first: str) -> None:
    r = Router()
    assert r.route(task, priority)[0] == first
    assert r.route(Task(task), Priority(priority))[0] == first


def test_every_chain_holds_every_provider_once() -> None:
    r = Router()
    for task, priority in itertools.product(Task, Priority):
        chain = r.route(task, priority)
        assert sorted(chain) == sorted(PROVIDERS), (task, priority, chain)
        assert len(chain) == len(set(chain)) == 4


def test_route_returns_a_copy() -> None:
    r = Router()
    r.route("chat", "speed").append("bogus")
    r.route("chat", "speed").clear()
    assert len(r.route("chat", "speed")) == 4


def test_enum_values_are_lowercase_strings() -> None:
    assert [t.value for t in Task] == [
        "factual", "genre", "creative", "tools", "audio", "summarize", "chat"
    ]  # fmt: skip
    assert [p.value for p in Priority] == ["speed", "quality", "cost"]
    assert Task.GENRE == "genre"


def test_unknown_task_or_priority_raises_config_error() -> None:
    r = Router()
    with pytest.raises(ConfigError, match="unknown task 'poetry'"):
        r.route("poetry", "speed")
    with pytest.raises(ConfigError, match="unknown priority 'cheap'"):
        r.route("chat", "cheap")


def test_custom_table_specificity_and_completion() -> None:
    r = Router(
        [
            RouteRule("*", "*", ("gemini",)),
            RouteRule("*", "cost", ("ollama", "gemini")),
            RouteRule("genre", "*", ("anthropic",)),
            RouteRule("genre", "cost", ("openai", "ollama")),
        ]
    )
    # Omitted providers follow in PROVIDERS order (ollama, gemini, anthropic, openai).
    assert r.route("chat", "speed") == ["gemini", "ollama", "anthropic", "openai"]
    assert r.route("chat", "cost") == ["ollama", "gemini", "anthropic", "openai"]
    # Exact task beats exact priority; exact task + priority beats both.
    assert r.route("genre", "speed") == ["anthropic", "ollama", "gemini", "openai"]
    assert r.route("genre", "cost") == ["openai", "ollama", "gemini", "anthropic"]


def test_later_rule_wins_among_equally_specific() -> None:
    r = Router([RouteRule("chat", "speed", ("openai",)), RouteRule("chat", "speed", ("gemini",))])
    assert r.route("chat", "speed")[0] == "gemini"


def test_empty_table_uses_provider_order() -> None:
    assert Router([]).route("chat", "speed") == list(PROVIDERS)


@pytest.mark.parametrize(
    ("rule", "match"),
    [
        (RouteRule("chat", "speed", ("mistral",)), "unknown provider"),
        (RouteRule("poetry", "speed", ("openai",)), "unknown task"),
        (RouteRule("chat", "cheap", ("openai",)), "unknown priority"),
        (RouteRule("chat", "speed", ("openai", "openai")), "twice"),
    ],
)
def test_bad_table_raises_config_error(rule: RouteRule, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Router([rule])


def test_bad_model_table_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown provider"):
        Router(models={("mistral", "chat"): "m"})
    with pytest.raises(ConfigError, match="unknown task"):
        Router(models={("openai", "poetry"): "m"})
    with pytest.raises(ConfigError, match="must be RouteRule"):
        Router([("chat", "speed", ("openai",))])  # type: ignore[list-item]


def test_bad_breaker_config_raises_config_error() -> None:
    with pytest.raises(ConfigError):
        BreakerConfig(failure_threshold=0)
    with pytest.raises(ConfigError):
        BreakerConfig(min_calls=50, window=20)
    with pytest.raises(ConfigError):
        BreakerConfig(ewma_alpha=0.0)


def test_docstring_examples() -> None:
    result = doctest.testmod(router_module)
    assert result.attempted >= 10
    assert result.failed == 0


# -- breaker ----------------------------------------------------------------


def test_closed_to_open_after_n_consecutive_failures() -> None:
    r = make(failure_threshold=3)
    for _ in range(2):
        r.record_failure("openai", "boom")
    assert r.health("openai").state is BreakerState.CLOSED
    assert r.allow("openai")
    r.record_failure("openai", RuntimeError("boom"))
    h = r.health("openai")
    assert h.state is BreakerState.OPEN
    assert h.consecutive_failures == 3
    assert h.opened_count == 1
    assert h.last_error == "RuntimeError: boom"
    assert not r.allow("openai")


def test_success_resets_consecutive_count() -> None:
    r = make(failure_threshold=3, min_calls=20, failure_rate_threshold=0.9)
    for _ in range(10):
        r.record_failure("openai", "x")
        r.record_failure("openai", "x")
        r.record_success("openai", 10.0)
    assert r.health("openai").state is BreakerState.CLOSED
    assert r.health("openai").consecutive_failures == 0


def test_open_to_half_open_after_cooldown_with_exactly_one_trial() -> None:
    clock = Clock()
    r = make(clock, failure_threshold=1, cooldown_s=30.0)
    r.record_failure("gemini", "x")
    clock.advance(29.9)
    assert r.health("gemini").state is BreakerState.OPEN
    assert r.health("gemini").retry_in_s == pytest.approx(0.1)
    assert not r.allow("gemini")
    clock.advance(0.1)
    assert r.health("gemini").state is BreakerState.HALF_OPEN
    assert r.allow("gemini") is True
    assert r.allow("gemini") is False
    assert r.allow("gemini") is False


def test_half_open_to_closed_on_success() -> None:
    clock = Clock()
    r = make(clock, failure_threshold=1, cooldown_s=5.0)
    r.record_failure("gemini", "x")
    clock.advance(5.0)
    assert r.allow("gemini")
    r.record_success("gemini", 50.0)
    h = r.health("gemini")
    assert h.state is BreakerState.CLOSED
    assert h.window_calls == 0  # the window is cleared on closing
    assert r.allow("gemini") and r.allow("gemini")
    assert r.route("chat", "speed")[1] == "gemini"


def test_half_open_to_open_on_failure() -> None:
    clock = Clock()
    r = make(clock, failure_threshold=1, cooldown_s=5.0)
    r.record_failure("gemini", "x")
    clock.advance(5.0)
    assert r.allow("gemini")
    r.record_failure("gemini", "again")
    h = r.health("gemini")
    assert h.state is BreakerState.OPEN
    assert h.opened_count == 2
    assert h.retry_in_s == pytest.approx(5.0)  # a fresh cooldown from the trial's failure
    assert not r.allow("gemini")
    clock.advance(5.0)
    assert r.allow("gemini")


def test_lost_trial_frees_its_slot_after_cooldown_or_release() -> None:
    clock = Clock()
    r = make(clock, failure_threshold=1, cooldown_s=10.0)
    r.record_failure("ollama", "x")
    clock.advance(10.0)
    assert r.allow("ollama")
    r.release("ollama")
    assert r.allow("ollama")
    clock.advance(9.0)
    assert not r.allow("ollama")
    clock.advance(1.0)
    assert r.allow("ollama")


def test_failure_rate_rule_opens_without_consecutive_failures() -> None:
    r = make(failure_threshold=5, window=10, min_calls=10, failure_rate_threshold=0.5)
    # Alternate: never 2 failures in a row, but 6/10 failures in the window.
    pattern = [False, True, False, True, False, True, False, True, False]
    for ok in pattern:
        if ok:
            r.record_success("anthropic", 1.0)
        else:
            r.record_failure("anthropic", "x")
    h = r.health("anthropic")
    assert h.window_calls == 9 and h.state is BreakerState.CLOSED  # below min_calls
    r.record_failure("anthropic", "x")  # 6 failures / 10 calls > 0.5, consecutive = 2
    h = r.health("anthropic")
    assert h.consecutive_failures == 2  # below failure_threshold: the rate rule opened it
    assert h.state is BreakerState.OPEN


def test_failure_rate_at_threshold_does_not_open() -> None:
    r = make(failure_threshold=5, window=10, min_calls=10, failure_rate_threshold=0.5)
    for i in range(10):
        if i % 2:
            r.record_failure("anthropic", "x")
        else:
            r.record_success("anthropic", 1.0)
    h = r.health("anthropic")
    assert h.success_rate == 0.5
    assert h.state is BreakerState.CLOSED  # 0.5 is not above 0.5


def test_rolling_window_forgets_old_outcomes() -> None:
    r = make(window=4, min_calls=4, failure_threshold=10, failure_rate_threshold=0.9)
    for _ in range(3):
        r.record_failure("openai", "x")
    for _ in range(4):
        r.record_success("openai", 1.0)
    h = r.health("openai")
    assert h.success_rate == 1.0
    assert h.window_calls == 4
    assert (h.successes, h.failures) == (4, 3)
    r.record_failure("openai", "x")
    assert r.health("openai").success_rate == 0.75


def test_open_provider_moves_to_end_keeping_order() -> None:
    clock = Clock()
    r = make(clock, failure_threshold=1, cooldown_s=30.0)
    base = r.route("creative", "quality")
    assert base == ["anthropic", "openai", "gemini", "ollama"]
    r.record_failure("anthropic", "x")
    assert r.route("creative", "quality") == ["openai", "gemini", "ollama", "anthropic"]
    r.record_failure("gemini", "x")
    assert r.route("creative", "quality") == ["openai", "ollama", "anthropic", "gemini"]
    # Half-open providers get their place back (so the trial can happen).
    clock.advance(30.0)
    assert r.route("creative", "quality") == base
    r.record_success("anthropic", 1.0)
    r.record_success("gemini", 1.0)
    assert r.route("creative", "quality") == base


def test_ewma_arithmetic() -> None:
    r = make(ewma_alpha=0.2)
    assert r.health("ollama").latency_ewma_ms is None
    r.record_success("ollama", 100.0)
    assert r.health("ollama").latency_ewma_ms == pytest.approx(100.0)
    r.record_success("ollama", 200.0)
    assert r.health("ollama").latency_ewma_ms == pytest.approx(0.2 * 200 + 0.8 * 100)  # 120
    r.record_success("ollama", 20.0)
    assert r.health("ollama").latency_ewma_ms == pytest.approx(0.2 * 20 + 0.8 * 120)  # 100
    r.record_failure("ollama", "x")  # failures do not feed the latency EWMA
    assert r.health("ollama").latency_ewma_ms == pytest.approx(100.0)


def test_reset_and_unknown_provider() -> None:
    r = make(failure_threshold=1)
    r.record_failure("openai", "x")
    r.reset("openai")
    assert r.health("openai").state is BreakerState.CLOSED
    assert r.route("tools", "quality")[0] == "openai"
    with pytest.raises(ConfigError, match="unknown provider"):
        r.health("mistral")
    with pytest.raises(ConfigError, match="unknown provider"):
        r.record_success("mistral", 1.0)


def test_error_text_is_shortened() -> None:
    r = make()
    r.record_failure("openai", "x" * 1000)
    assert len(r.health("openai").last_error or "") == 200


# -- plan -------------------------------------------------------------------


def test_plan_default_models_and_costs() -> None:
    r = make()
    plan = r.plan("factual", "speed", req("x" * 400, max_tokens=100))
    assert [c.provider for c in plan] == r.route("factual", "speed")
    by = {c.provider: c for c in plan}
    assert by["ollama"] == RouteChoice("ollama", "llama-small", 0.0)
    # 400 chars -> 100 input tokens; 100 output tokens.
    assert by["openai"].estimated_cost_usd == pytest.approx((100 * 0.15 + 100 * 0.60) / 1e6)
    assert by["gemini"].estimated_cost_usd == pytest.approx((100 * 0.10 + 100 * 0.40) / 1e6)
    assert by["anthropic"].estimated_cost_usd == pytest.approx((100 * 0.80 + 100 * 4.0) / 1e6)


def test_cost_estimate_arithmetic() -> None:
    request = req("y" * 4001, max_tokens=2000)
    assert estimate_tokens(request) == (1001, 2000)  # chars / 4 rounded up
    cost = CATALOG.estimate_cost("gemini", "gem-pro", request)
    assert cost == pytest.approx(1001 * 1.25 / 1e6 + 2000 * 10.0 / 1e6)
    # max_tokens unset: DEFAULT_OUTPUT_TOKENS output tokens.
    assert estimate_tokens(req("abcd")) == (1, router_module.DEFAULT_OUTPUT_TOKENS)
    assert estimate_tokens(req("")) == (0, router_module.DEFAULT_OUTPUT_TOKENS)
    assert CATALOG.estimate_cost("openai", "unknown-model", request) is None


def test_plan_uses_per_task_model_table() -> None:
    r = Router(
        catalog=CATALOG,
        models={("openai", "*"): "gpt-mini", ("openai", "tools"): "gpt-big"},
    )
    plan = r.plan("tools", "quality", req())
    assert plan[0] == RouteChoice("openai", "gpt-big", plan[0].estimated_cost_usd)
    assert r.model_for("openai", "chat") == "gpt-mini"
    assert r.model_for("gemini", "tools") == "gem-flash"


def test_plan_pins_provider_and_model() -> None:
    r = make()
    plan = r.plan("factual", "speed", req(provider="anthropic"))
    assert [c.provider for c in plan] == ["anthropic", "ollama", "gemini", "openai"]
    assert plan[0].model == "claude-haiku"
    plan = r.plan("factual", "speed", req(provider="openai", model="gpt-big", max_tokens=10))
    assert (plan[0].provider, plan[0].model) == ("openai", "gpt-big")
    assert plan[0].estimated_cost_usd == pytest.approx((2 * 2.5 + 10 * 10.0) / 1e6)
    assert [c.provider for c in plan[1:]] == ["ollama", "gemini", "anthropic"]
    assert plan[1:][2].model == "claude-haiku"


def test_plan_pins_the_provider_of_a_bare_model() -> None:
    r = make()
    plan = r.plan("chat", "speed", req(model="gem-pro"))
    assert (plan[0].provider, plan[0].model) == ("gemini", "gem-pro")
    assert [c.provider for c in plan] == ["gemini", "ollama", "openai", "anthropic"]
    with pytest.raises(ConfigError, match=r"set ChatRequest\.provider"):
        r.plan("chat", "speed", req(model="no-such-model"))
    with pytest.raises(ConfigError, match="unknown provider"):
        r.plan("chat", "speed", req(provider="mistral"))


def test_plan_pinned_provider_stays_first_even_when_open() -> None:
    r = make(failure_threshold=1)
    r.record_failure("ollama", "x")
    plan = r.plan("chat", "speed", req(provider="ollama"))
    assert plan[0].provider == "ollama"
    assert [c.provider for c in r.plan("chat", "speed", req())][-1] == "ollama"


def test_context_window_filter() -> None:
    r = make()
    out = router_module.DEFAULT_OUTPUT_TOKENS
    # llama-small holds 8,000 tokens: prompt + default output one token over does not fit.
    big = req("z" * (8_000 - out + 1) * 4)
    plan = r.plan("factual", "speed", big)
    assert "ollama" not in [c.provider for c in plan]
    assert [c.provider for c in plan] == ["gemini", "openai", "anthropic"]
    full = r.plan("factual", "speed", big, include_skipped=True)
    assert full[0].provider == "ollama"
    assert full[0].skip_reason is not None and "8000" in full[0].skip_reason
    assert all(c.skip_reason is None for c in full[1:])
    # Exactly at the limit fits.
    assert r.plan("factual", "speed", req("z" * (8_000 - out) * 4))[0].provider == "ollama"
    # max_tokens counts too.
    assert r.plan("factual", "speed", req("z", max_tokens=8_000))[0].provider == "gemini"
    assert r.plan("factual", "speed", req("z", max_tokens=7_999))[0].provider == "ollama"


def test_context_filter_applies_to_a_pinned_model() -> None:
    r = make()
    plan = r.plan("chat", "speed", req("z" * 40_000, provider="ollama", model="llama-small"))
    assert [c.provider for c in plan] == ["gemini", "openai", "anthropic"]
    plan = r.plan("chat", "speed", req("z" * 40_000, provider="ollama", model="llama-big"))
    assert (plan[0].provider, plan[0].model) == ("ollama", "llama-big")


def test_unknown_context_window_is_kept() -> None:
    r = make()
    plan = r.plan("chat", "speed", req("z" * 10_000_000, provider="ollama", model="my-local"))
    assert plan[0] == RouteChoice("ollama", "my-local", None)


def test_catalog_prefix_lookup() -> None:
    # Dated / tagged model names find their family's entry, as in the adapters.
    assert CATALOG.price("openai", "gpt-mini-2024-07-18") == (0.15, 0.60)
    assert CATALOG.context_window("ollama", "llama-big:70b") == 128_000
    assert CATALOG.provider_of("gem-pro-002") == "gemini"


# -- the real provider tables ---------------------------------------------------


def test_catalog_from_settings_applies_overrides() -> None:
    from samplemind_core import Settings

    settings = Settings().with_provider(
        "openai", default_model="gpt-custom", prices={"gpt-custom": (1.0, 2.0)}
    )
    catalog = ModelCatalog.from_settings(settings)
    assert catalog.default_model("openai") == "gpt-custom"
    assert catalog.price("openai", "gpt-custom") == (1.0, 2.0)
    assert catalog.price("openai", "gpt-4o-mini") is not None


def test_every_table_model_is_priced_and_sized() -> None:
    catalog = ModelCatalog.default()
    r = Router(catalog=catalog)
    for provider in PROVIDERS:
        for task in Task:
            model = r.model_for(provider, task)
            assert catalog.price(provider, model) is not None, (provider, task, model)
            assert catalog.context_window(provider, model), (provider, task, model)


@pytest.mark.parametrize("max_tokens", [None, 300])
def test_estimates_match_the_adapters(max_tokens: int | None) -> None:
    from samplemind_core import Settings
    from samplemind_core.providers import get_provider
    from samplemind_core.providers.base import DEFAULT_MAX_OUTPUT_TOKENS

    assert router_module.DEFAULT_OUTPUT_TOKENS == DEFAULT_MAX_OUTPUT_TOKENS
    settings = Settings()
    adapters = {p: get_provider(p, settings.provider(p)) for p in PROVIDERS}
    r = Router(catalog=ModelCatalog.from_settings(settings))
    request = req("a sample description " * 50, max_tokens=max_tokens)
    for task, priority in itertools.product(Task, Priority):
        for choice in r.plan(task, priority, request):
            adapter = adapters[choice.provider]
            assert choice.estimated_cost_usd == pytest.approx(
                adapter.estimate_cost(request, choice.model)
            ), choice
            assert r.catalog.context_window(choice.provider, choice.model) == (
                adapter.context_window(choice.model)
            )
