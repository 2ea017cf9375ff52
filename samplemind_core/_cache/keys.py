"""Generations and key layout (every command touches one key, so it also works on a cluster)::

    {prefix}:{namespace}:{G}.{P}:{provider or '_'}:{fingerprint}

``G`` is the namespace's generation and ``P`` the generation of the request's
provider; both live in one Redis hash ``{prefix}:{namespace}:gen`` (fields
``*`` and the provider names). A cross-process lease of a key is ``{key}:lease``.

>>> g = Generations("sm", "default")
>>> g.segment("openai"), g.segment(None)
('sm:default:0.0:openai:', 'sm:default:0.0:_:')
>>> g.replace({"*": 2, "openai": 5})
True
>>> g.segment("openai"), g.classify("sm:default:1.0:_:ab"), g.classify("sm:default:gen")
('sm:default:2.5:openai:', True, None)
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "GLOBAL_FIELD",
    "LEASE_SUFFIX",
    "NO_PROVIDER",
    "RELAY_SUFFIXES",
    "Generations",
    "GensMoved",
]

GLOBAL_FIELD: Final = "*"
"""The field of the namespace's own generation in the generation hash."""
NO_PROVIDER: Final = "_"
LEASE_SUFFIX: Final = ":lease"
RELAY_SUFFIXES: Final = (":slease", ":chunks")
"""A stream's relay keys (``samplemind_core.cache._relay``): not entries, they expire by themselves."""


class Generations:
    """The generations known in-process and the key segments built from them."""

    __slots__ = ("base", "gen_key", "gens", "segments")

    def __init__(self, key_prefix: str, namespace: str) -> None:
        self.base = f"{key_prefix}:{namespace}:"
        self.gen_key = f"{self.base}gen"
        # "*" -> namespace generation, provider -> its generation
        self.gens: dict[str, int] = {}
        self.segments: dict[str | None, str] = {}

    def segment(self, provider: str | None) -> str:
        """The key prefix of ``provider``'s entries (``{base}{G}.{P}:{provider or '_'}:``)."""
        seg = self.segments.get(provider)
        if seg is None:
            gens = self.gens
            p = gens.get(provider, 0) if provider else 0
            seg = f"{self.base}{gens.get(GLOBAL_FIELD, 0)}.{p}:{provider or NO_PROVIDER}:"
            self.segments[provider] = seg
        return seg

    def replace(self, gens: dict[str, int]) -> bool:
        """Take ``gens``; True when they changed (the segments are rebuilt on demand)."""
        if gens == self.gens:
            return False
        self.gens = gens
        self.segments = {}
        return True

    def classify(self, key: str) -> bool | None:
        """True: an entry of an old generation; False: a current entry; None: not an entry."""
        if key.endswith(LEASE_SUFFIX) or key.endswith(RELAY_SUFFIXES):
            return None  # a cross-process lease or a stream relay: expires by itself
        gen, sep, rest = key[len(self.base) :].partition(":")
        provider, sep2, _fp = rest.rpartition(":")
        if not sep or not sep2:
            return None  # the generation hash or a foreign key
        kg, _, kp = gen.partition(".")
        try:
            return int(kg) != self.gens.get(GLOBAL_FIELD, 0) or (
                provider != NO_PROVIDER and int(kp) != self.gens.get(provider, 0)
            )
        except ValueError:
            return None


class GensMoved(Exception):
    """A key was built under generations that are not the store's (or could not be checked
    with its lookup): the generations are fresh now; build the key again and look up again
    (decision 0920). Never reaches a user."""
