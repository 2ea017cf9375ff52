"""What the stream suite measures against a real local model server (``test_stream_local``).

One :func:`measure_local` call runs, through ``AIManager`` (with its Redis cache), in blocks
that do not disturb each other's server-side prompt cache:

1. ``new``: fresh prompts one at a time (each starts with its own tag, so the server can
   reuse no prompt prefix): TTFT of a new prompt, tokens/s, ITL;
2. ``prefix``: one warm-up, then prompts that share a long prefix (the system prompt) with
   the one before and differ only at the end: TTFT with a cached prompt prefix
   (llama.cpp and Ollama keep the last prompt's KV cache);
3. ``short_new`` / ``short_prefix``: a short answer (``complete()``, :data:`SHORT_TOKENS`
   tokens) to a new prompt and to one with the cached prefix: the whole call's latency;
4. ``concurrent``: waves of :data:`CONCURRENT` fresh streams at once: TTFT under
   queueing, aggregate tokens/s, and how many streams the server cut short;
5. ``replay``: the ``new`` requests again, replayed from SampleMind's cache: the
   cached TTFT against the model's.

The model name every reply carried (``ChatResponse.model``) is collected, so the record
says which model answered.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from bench.harness.local_server import LocalServer
from bench.suites.stream_engine import StreamRead, timed_stream, wave
from samplemind_core import ChatRequest, SampleMindError
from samplemind_core.manager import AIManager

__all__ = [
    "CONCURRENT",
    "LOCAL_MAX_TOKENS",
    "SHORT_TOKENS",
    "LocalRun",
    "local_request",
    "measure_local",
]

LOCAL_MAX_TOKENS: Final = 32
"""Tokens of a measured stream: enough for TPOT and tokens/s, short on a CPU."""
SHORT_TOKENS: Final = 8
"""A short answer (a tag, a one-line label): the "local answers" of the plan."""
CONCURRENT: Final = 4

_PREFIX: Final = (
    "You label audio samples for music producers. For each file, give the instrument, "
    "the genre it suits, its mood, a tempo estimate in BPM and a musical key when one is "
    "audible. Use the vocabulary of sample libraries: one-shot, loop, stem, texture, riser, "
    "impact, pad, pluck, stab, chop. Keep each answer to one short line, no preamble, no "
    "apology, no markdown. Prefer the producer's words over a musicologist's: say 'punchy', "
    "'warm', 'gritty', 'airy', 'lo-fi', 'glassy', 'wide', 'dry', 'wet'."
)
"""The shared prompt prefix of the ``prefix`` block (about 120 tokens)."""


def local_request(
    server: LocalServer, tag: str, *, shared_prefix: bool, max_tokens: int
) -> ChatRequest:
    """A request for ``server``'s model; without ``shared_prefix`` the prompt starts with ``tag``."""
    system = _PREFIX if shared_prefix else f"[{tag}] {_PREFIX}"
    return ChatRequest(
        messages=[
            {"role": "system", "content": system},
            {"role": "user", "content": f"Label 'take_{tag}.wav'."},
        ],
        provider=server.provider,
        model=server.model,
        max_tokens=max_tokens,
        temperature=0.0,
    )


@dataclass
class LocalRun:
    """The reads of one :func:`measure_local`."""

    new: list[StreamRead] = field(default_factory=list)
    prefix: list[StreamRead] = field(default_factory=list)
    short_new: list[float] = field(default_factory=list)
    short_prefix: list[float] = field(default_factory=list)
    concurrent: list[StreamRead] = field(default_factory=list)
    concurrent_s: float = 0.0
    """Wall time of the concurrent waves, summed."""
    concurrent_errors: list[str] = field(default_factory=list)
    replay: list[StreamRead] = field(default_factory=list)
    served_models: set[str] = field(default_factory=set)
    prompt_tokens: dict[str, int] = field(default_factory=dict)
    """Prompt tokens of a short answer's request, ``new`` and ``cached_prefix`` (usage)."""

    def served(self) -> str | None:
        """The model name the replies carried (several joined with ``+``)."""
        return " + ".join(sorted(self.served_models)) or None

    def cut(self, max_tokens: int = LOCAL_MAX_TOKENS) -> int:
        """Concurrent streams the server ended early (a ``finish_reason`` other than
        ``length``/``stop``, or fewer tokens than asked without a ``stop``) or that failed."""
        cut = len(self.concurrent_errors)
        for r in self.concurrent:
            resp = r.response
            reason = resp.finish_reason if resp is not None else None
            if reason not in ("length", "stop") or (
                reason != "stop" and r.timeline.tokens < max_tokens
            ):
                cut += 1
        return cut


async def measure_local(
    ai: AIManager,
    server: LocalServer,
    *,
    n: int,
    waves: int,
    clock: Callable[[], float] = time.perf_counter,
) -> LocalRun:
    """Run the blocks of the module docstring, ``n`` requests each (``waves`` concurrent waves)."""
    run = LocalRun()
    tag = uuid.uuid4().hex[:8]

    def note(read: StreamRead) -> StreamRead:
        resp = read.response
        if resp is not None and not resp.cached:
            if resp.provider != server.provider:  # the router fell back: not the local model
                raise AssertionError(
                    f"a reply came from {resp.provider}, not the local server ({server.provider})"
                )
            run.served_models.add(resp.model)
        return read

    new_requests = [
        local_request(server, f"{tag}-n{i}", shared_prefix=False, max_tokens=LOCAL_MAX_TOKENS)
        for i in range(n)
    ]
    for req in new_requests:  # 1. one at a time: nothing shared with the previous prompt
        run.new.append(note(await timed_stream(ai, req, clock=clock)))

    # 2. warm the prefix once (not recorded), then one at a time, the prefix shared
    await timed_stream(
        ai, local_request(server, f"{tag}-warm", shared_prefix=True, max_tokens=SHORT_TOKENS)
    )
    for i in range(n):
        req = local_request(server, f"{tag}-p{i}", shared_prefix=True, max_tokens=LOCAL_MAX_TOKENS)
        run.prefix.append(note(await timed_stream(ai, req, clock=clock)))

    # 3. short answers: complete() with the prefix still cached, then to fresh prompts
    for shared, out in ((True, run.short_prefix), (False, run.short_new)):
        for i in range(n):
            req = local_request(
                server, f"{tag}-s{int(shared)}{i}", shared_prefix=shared, max_tokens=SHORT_TOKENS
            )
            start = clock()
            resp = await ai.complete(req)
            out.append(clock() - start)
            if resp.provider != server.provider:
                raise AssertionError(
                    f"a reply came from {resp.provider}, not the local server ({server.provider})"
                )
            run.served_models.add(resp.model)
            if resp.usage.input_tokens:
                run.prompt_tokens["cached_prefix" if shared else "new"] = resp.usage.input_tokens

    # 4. CONCURRENT fresh streams at once, `waves` times
    for w in range(waves):

        async def one(i: int, w: int = w) -> StreamRead | str:
            req = local_request(
                server, f"{tag}-c{w}-{i}", shared_prefix=False, max_tokens=LOCAL_MAX_TOKENS
            )
            try:
                return note(await timed_stream(ai, req, clock=clock))
            except SampleMindError as exc:  # counted: the server cut or refused a stream
                return f"{type(exc).__name__}: {exc}"

        start = clock()
        results = await wave(CONCURRENT, one)
        run.concurrent_s += clock() - start
        for res in results:
            if isinstance(res, str):
                run.concurrent_errors.append(res)
            else:
                run.concurrent.append(res)

    # 5. the new requests again: replayed from SampleMind's cache
    for req in new_requests:
        read = await timed_stream(ai, req, clock=clock)
        run.replay.append(read)
    return run
