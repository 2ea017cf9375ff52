"""How a stored answer is cut back into its chunks for a replay (``stored_chunks``).

Boundaries that add up are replayed exactly; anything else stored under them (wrong types,
non-positive lengths, lengths that do not add up to the text, bad gaps) must neither raise
nor cut the text wrongly: bad lengths fall back to one chunk per word, bad gaps to none.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from samplemind_core import ChatResponse
from samplemind_core._streaming import CHUNKS_KEY, UpstreamFeed, split_text, stored_chunks

TEXT = "Deep kick, short tail."
GOOD = {"lengths": [5, 6, 11], "gaps_ms": [0.0, 2.5, 3]}


def _resp(text: str = TEXT) -> ChatResponse:
    return ChatResponse(text=text, provider="ollama", model="m")


def test_boundaries_that_add_up_are_replayed_exactly() -> None:
    assert stored_chunks(_resp(), GOOD) == (["Deep ", "kick, ", "short tail."], [0.0, 2.5, 3])
    assert stored_chunks(_resp(), {"lengths": [len(TEXT)]}) == ([TEXT], None)
    assert stored_chunks(_resp(""), {"lengths": []}) == ([], None)


@pytest.mark.parametrize(
    "lengths",
    [
        [0, 5, 6, 11],
        [5, 6, 10],
        [5, 6, 12],
        [5.0, 6, 11],
        [True, 4, 6, 11],
        [-1, 6, 6, 11],
        "x",
        None,
    ],
)
def test_bad_lengths_fall_back_to_words(lengths: Any) -> None:
    assert stored_chunks(_resp(), {**GOOD, "lengths": lengths}) == (split_text(TEXT), None)


@pytest.mark.parametrize(
    "gaps",
    [[0.0, -1.0, 3.0], [0.0, math.nan, 3.0], ["1", 2.0, 3.0], [True, 2.0, 3.0], [1.0, 2.0], None],
)
def test_bad_gaps_are_dropped_and_the_chunks_kept(gaps: Any) -> None:
    assert stored_chunks(_resp(), {**GOOD, "gaps_ms": gaps}) == (
        ["Deep ", "kick, ", "short tail."],
        None,
    )


STORED: list[tuple[str, Any]] = [
    (TEXT, GOOD),
    (TEXT, {"lengths": [len(TEXT)]}),
    ("", {"lengths": []}),
    ("", None),
    ("   ", None),
    ("Hello  big\nworld ", None),
    (TEXT, {**GOOD, "lengths": [True, 4, 6, 11]}),
    (TEXT, {**GOOD, "lengths": [0, 5, 6, 11]}),
    (TEXT, {**GOOD, "lengths": [len(TEXT) + 1]}),
    (TEXT, {**GOOD, "lengths": [5.0, 6, 11]}),
    (TEXT, {**GOOD, "gaps_ms": [0.0, math.nan, 3.0]}),
    (TEXT, {**GOOD, "gaps_ms": [1.0, 2.0]}),
    (TEXT, "not a dict"),
    (" a" * 300, None),
    ("ab" * 50, {"lengths": [1] * 100, "gaps_ms": [0.5] * 100}),
]


@pytest.mark.parametrize("text, extra", STORED)
@pytest.mark.parametrize("paced", [False, True])
def test_a_lazy_replay_cuts_what_stored_chunks_cuts(text: str, extra: Any, paced: bool) -> None:
    """UpstreamFeed.replay_stored cuts the first chunk at once and the rest when read
    (decision 0500): the same chunks and gaps as stored_chunks, in every case above."""
    chunks, gaps = stored_chunks(_resp(text), extra)
    feed = UpstreamFeed(source="cache")
    feed.replay_stored(_resp(text), extra)
    assert feed.done and feed.chunks == chunks[:1]
    if paced:  # a paced reader cuts everything before its first chunk (it needs the gaps)
        feed.cut_rest()
    else:  # an instant reader asks for chunk 1 once chunk 0 is out
        assert len(feed.chunks) <= 1
        feed.cut_rest()
    feed.cut_rest()  # idempotent
    assert feed.chunks == chunks and "".join(feed.chunks) == text
    assert feed.gaps_ms == (gaps if gaps is not None else [0.0] * len(chunks))


def test_an_old_entrys_metadata_boundaries_are_read_and_popped_lazily_too() -> None:
    old = _resp()
    old.metadata[CHUNKS_KEY] = dict(GOOD)
    feed = UpstreamFeed(source="cache")
    feed.replay_stored(old, None)
    assert CHUNKS_KEY not in old.metadata
    feed.cut_rest()
    assert feed.chunks == ["Deep ", "kick, ", "short tail."] and feed.gaps_ms == [0.0, 2.5, 3]


@pytest.mark.parametrize(
    "lengths", [[5, 6, 10], [5, 6, 12], [5, 6.0, 11], [5, True, 6, 10], [5, 0, 6, 11], [5, -1, 18]]
)
def test_a_lazy_replay_with_a_good_first_length_cuts_the_rest_into_words(lengths: Any) -> None:
    """Only the first stored length is checked before the first chunk (decision 0500): when
    the others do not add up, the text after that chunk is cut into words, still exactly."""
    feed = UpstreamFeed(source="cache")
    feed.replay_stored(_resp(), {**GOOD, "lengths": lengths})
    assert feed.chunks == ["Deep "]
    feed.cut_rest()
    assert feed.chunks == ["Deep ", *split_text(TEXT[5:])] and "".join(feed.chunks) == TEXT
    assert feed.gaps_ms == [0.0] * len(feed.chunks)
