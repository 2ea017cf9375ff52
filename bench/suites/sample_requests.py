"""Standard chat requests of the fingerprint and cache suites (deterministic, sized by JSON).

``standard_request("1KB")`` is a :class:`ChatRequest` whose canonical
encoding (``canonical_bytes``, what the fingerprint hashes) is about 1 KB; ``"tools"`` is a 1 KB
request carrying two tool definitions. ``naive_key`` is the key SampleMind's
original code computed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from typing import Any, Final

from samplemind_core import ChatRequest
from samplemind_core.fingerprint import canonical_bytes

__all__ = ["REQUEST_SIZES", "naive_key", "request_dict", "standard_request"]

REQUEST_SIZES: Final = {"256B": 256, "1KB": 1024, "8KB": 8192, "tools": 1024}

_WORDS: Final = [
    "tempo",
    "key",
    "genre",
    "bpm",
    "groove",
    "bass",
    "snare",
    "kick",
    "hat",
    "pad",
    "lead",
    "chord",
    "minor",
    "major",
    "loop",
    "sample",
    "stem",
    "mix",
    "master",
    "drum",
    "synth",
    "vocal",
    "reverb",
    "delay",
    "filter",
    "swing",
]

_TOOLS: Final[list[dict[str, Any]]] = [
    {
        "type": "function",
        "function": {
            "name": "detect_bpm",
            "description": "Estimate the tempo of an audio sample in beats per minute.",
            "parameters": {
                "type": "object",
                "properties": {
                    "sample_id": {"type": "string"},
                    "min_bpm": {"type": "number", "minimum": 20},
                    "max_bpm": {"type": "number", "maximum": 300},
                },
                "required": ["sample_id"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "tag_genre",
            "description": "Assign up to three genre tags to a sample.",
            "parameters": {
                "type": "object",
                "properties": {
                    "sample_id": {"type": "string"},
                    "max_tags": {"type": "integer", "default": 3},
                },
                "required": ["sample_id"],
            },
        },
    },
]


def _text(rng: random.Random, n_chars: int) -> str:
    out: list[str] = []
    length = 0
    while length < n_chars:
        w = rng.choice(_WORDS)
        out.append(w)
        length += len(w) + 1
    return " ".join(out)[: max(n_chars, 1)]


def request_dict(req: ChatRequest) -> dict[str, Any]:
    """The request as the plain dict the original code passed around."""
    return dataclasses.asdict(req)


def standard_request(name: str, *, seed: int = 0) -> ChatRequest:
    """A deterministic request named by :data:`REQUEST_SIZES`; ``seed`` varies the text."""
    target = REQUEST_SIZES[name]
    rng = random.Random(f"{name}/{seed}")
    tools = [dict(t) for t in _TOOLS] if name == "tools" else None

    def build(n_user: int) -> ChatRequest:
        return ChatRequest(
            messages=[
                {"role": "system", "content": "You label music samples. Answer briefly."},
                {"role": "user", "content": _text(rng, n_user)},
            ],
            model="gpt-4o-mini",
            temperature=0.2,
            max_tokens=256,
            tools=tools,
        )

    base = len(canonical_bytes(build(1)))
    rng = random.Random(f"{name}/{seed}")
    return build(max(target - base, 1))


def naive_key(req: dict[str, Any]) -> str:
    """The original key: ``sha256(json.dumps(req, sort_keys=True))``."""
    return hashlib.sha256(json.dumps(req, sort_keys=True).encode()).hexdigest()
