"""The route table: tasks, priorities, rules, and their compilation into complete chains."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from .._exceptions import ConfigError

__all__ = [
    "ANY",
    "DEFAULT_MODELS",
    "DEFAULT_ROUTES",
    "Priority",
    "RouteRule",
    "Task",
    "compile_routes",
    "validate_models",
]


class Task(StrEnum):
    """What SampleMind asks the model to do (values are the lowercase names).

    * ``factual``: short factual questions about music, gear, theory ("what key
      is a Dorian mode built on?"); a small fast model is enough;
    * ``genre``: genre / mood / BPM / instrument tagging of a sample from its
      name, metadata and extracted features; short structured answers;
    * ``creative``: writing: sample-pack descriptions, track names, lyric ideas,
      production suggestions; quality matters most;
    * ``tools``: tool (function) calls that tag, rename or move files in the
      library; needs reliable tool calling and JSON arguments;
    * ``audio``: questions about audio features and analysis (spectral
      centroid, loudness, onset density, key detection results);
    * ``summarize``: summaries of long inputs (a session's notes, a folder's
      analysis report); needs a long context window;
    * ``chat``: the assistant's free conversation with the user.
    """

    FACTUAL = "factual"
    GENRE = "genre"
    CREATIVE = "creative"
    TOOLS = "tools"
    AUDIO = "audio"
    SUMMARIZE = "summarize"
    CHAT = "chat"


class Priority(StrEnum):
    """What the caller optimises for: ``speed`` (latency), ``quality`` or ``cost``."""

    SPEED = "speed"
    QUALITY = "quality"
    COST = "cost"


ANY: Final = "*"


@dataclass(frozen=True, slots=True)
class RouteRule:
    """One row of the route table: ``task`` × ``priority`` → provider ``chain``.

    ``task`` / ``priority`` are a value or ``"*"``. ``chain`` lists providers
    best first; providers it omits are appended in ``PROVIDERS`` order.
    """

    task: str
    priority: str
    chain: tuple[str, ...]

    @property
    def specificity(self) -> int:
        """Higher wins: exact task counts 2, exact priority 1."""
        return (2 if self.task != ANY else 0) + (1 if self.priority != ANY else 0)


DEFAULT_ROUTES: Final[tuple[RouteRule, ...]] = (
    # Defaults by priority. Speed and cost: the local model first (no network
    # round trip to a cloud, no bill), then the cheapest fast cloud model.
    RouteRule(ANY, Priority.SPEED, ("ollama", "gemini", "openai", "anthropic")),
    RouteRule(ANY, Priority.COST, ("ollama", "gemini", "openai", "anthropic")),
    RouteRule(ANY, Priority.QUALITY, ("anthropic", "openai", "gemini", "ollama")),
    # Factual answers at quality: OpenAI first.
    RouteRule(Task.FACTUAL, Priority.QUALITY, ("openai", "anthropic", "gemini", "ollama")),
    # Creative writing: a fast cloud model beats a small local one on speed too.
    RouteRule(Task.CREATIVE, Priority.SPEED, ("gemini", "ollama", "openai", "anthropic")),
    # Tool calls: the most reliable tool calling first; small local models last.
    RouteRule(Task.TOOLS, ANY, ("openai", "anthropic", "gemini", "ollama")),
    RouteRule(Task.TOOLS, Priority.COST, ("gemini", "openai", "ollama", "anthropic")),
    # Audio analysis questions at quality: Gemini understands audio natively.
    RouteRule(Task.AUDIO, Priority.QUALITY, ("gemini", "anthropic", "openai", "ollama")),
    # Summaries: long context windows.
    RouteRule(Task.SUMMARIZE, Priority.SPEED, ("gemini", "ollama", "openai", "anthropic")),
    RouteRule(Task.SUMMARIZE, Priority.QUALITY, ("anthropic", "gemini", "openai", "ollama")),
)
"""The built-in route table (see :class:`Router` for the guaranteed routes)."""

DEFAULT_MODELS: Final[Mapping[tuple[str, str], str]] = {
    # Ollama: the provider default (llama3.2) for short answers; qwen2.5 calls
    # tools more reliably and writes better.
    ("ollama", Task.TOOLS): "qwen2.5",
    ("ollama", Task.CREATIVE): "qwen2.5",
    # Gemini: flash-lite is plenty for tagging; flash (the default) elsewhere.
    ("gemini", Task.GENRE): "gemini-2.5-flash-lite",
    # OpenAI: gpt-4o-mini (the default); gpt-4.1-mini for tools, writing and
    # long inputs (1M-token window).
    ("openai", Task.TOOLS): "gpt-4.1-mini",
    ("openai", Task.CREATIVE): "gpt-4.1-mini",
    ("openai", Task.SUMMARIZE): "gpt-4.1-mini",
    # Anthropic: haiku (the default); sonnet for writing and summaries.
    ("anthropic", Task.CREATIVE): "claude-sonnet-4-20250514",
    ("anthropic", Task.SUMMARIZE): "claude-sonnet-4-20250514",
}
"""Per ``(provider, task)`` model of the built-in table (``task`` may be ``"*"``).

A pair not listed uses the provider's default model (``ProviderConfig.default_model``
or the adapter's ``DEFAULT_MODEL``). :class:`~samplemind_core.AIManager` drops a
provider's entries when its ``ProviderConfig.default_model`` is set: a model the
user configured wins over these built-in choices.
"""


def compile_routes(
    rules: tuple[RouteRule, ...], providers: tuple[str, ...]
) -> dict[tuple[str, str], tuple[str, ...]]:
    """Every ``(task, priority)`` -> its complete chain; ``ConfigError`` for a bad rule."""
    tasks = {t.value for t in Task}
    priorities = {p.value for p in Priority}
    known = set(providers)
    for rule in rules:
        if not isinstance(rule, RouteRule):
            raise ConfigError(f"route table entries must be RouteRule, got {rule!r}")
        if rule.task != ANY and rule.task not in tasks:
            raise ConfigError(f"unknown task {rule.task!r} in route table; known: {sorted(tasks)}")
        if rule.priority != ANY and rule.priority not in priorities:
            raise ConfigError(
                f"unknown priority {rule.priority!r} in route table; known: {sorted(priorities)}"
            )
        unknown = [p for p in rule.chain if p not in known]
        if unknown:
            raise ConfigError(
                f"unknown provider(s) {unknown} in route table; known: {sorted(known)}"
            )
        if len(set(rule.chain)) != len(rule.chain):
            raise ConfigError(f"provider listed twice in route chain {rule.chain}")
    # Most specific first; among equals, the later rule wins (like dict updates).
    ordered = sorted(enumerate(rules), key=lambda ir: (-ir[1].specificity, -ir[0]))
    chains: dict[tuple[str, str], tuple[str, ...]] = {}
    for task in Task:
        for priority in Priority:
            for _, rule in ordered:
                if rule.task in (ANY, task) and rule.priority in (ANY, priority):
                    head = rule.chain
                    break
            else:
                head = ()
            chain = head + tuple(p for p in providers if p not in head)
            chains[(task.value, priority.value)] = chain
    return chains


def validate_models(models: Iterable[tuple[str, str]], providers: tuple[str, ...]) -> None:
    """``ConfigError`` for a ``(provider, task)`` key naming an unknown provider or task."""
    tasks = {t.value for t in Task}
    for provider, task in models:
        if provider not in providers:
            raise ConfigError(f"unknown provider {provider!r} in model table")
        if task != ANY and task not in tasks:
            raise ConfigError(f"unknown task {task!r} in model table")
