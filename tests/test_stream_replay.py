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
from samplemind_core._streaming import split_text, stored_chunks

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
