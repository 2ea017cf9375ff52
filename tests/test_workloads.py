"""Workload generator: exact repeat fraction, committed files vs manifest, corrupt lines."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest

from fixtures.workloads import (
    COMMITTED,
    DATA_DIR,
    GENERATOR_VERSION,
    PRIORITIES,
    TASKS,
    WorkloadError,
    generate,
    load,
    load_manifest,
    measured_repeat_fraction,
    save,
)
from samplemind_core import ChatRequest
from samplemind_core.fingerprint import fingerprint


def _independent_repeat_fraction(items: list) -> float:  # type: ignore[type-arg]
    """Count repeats with the cache's own key function, independently of the generator."""
    seen: set[tuple[str, str, str]] = set()
    repeats = 0
    for item in items:
        key = (item.task, item.priority, fingerprint(item.request))
        repeats += key in seen
        seen.add(key)
    return repeats / len(items)


@pytest.mark.parametrize("repeat", [0.0, 0.6, 0.7, 0.8])
@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_measured_repeat_fraction_matches_setting(repeat: float) -> None:
    items = generate(5000, repeat=repeat, seed=17)
    assert len(items) == 5000
    measured = _independent_repeat_fraction(items)
    assert abs(measured - repeat) < 0.01
    assert measured == measured_repeat_fraction(items)


def test_popularity_is_zipf_like() -> None:
    items = generate(5000, repeat=0.8, seed=3)
    counts = Counter(fingerprint(i.request) for i in items).most_common()
    top, median = counts[0][1], counts[len(counts) // 2][1]
    assert top > 20 * median  # a few very popular requests, a long tail
    assert counts[-1][1] == 1


def test_mix_of_tasks_priorities_and_sizes() -> None:
    items = generate(3000, repeat=0.0, seed=8)
    assert {i.task for i in items} == set(TASKS)
    assert {i.priority for i in items} == set(PRIORITIES)
    assert all(isinstance(i.request, ChatRequest) for i in items)
    tools = [i for i in items if i.task == "tools"]
    assert tools and all(i.request.tools for i in tools)
    sizes = sorted(i.request.prompt_chars() for i in items)
    assert sizes[-1] > 4 * sizes[len(sizes) // 2]  # large prompts exist
    texts = " ".join(str(i.request.messages[-1]["content"]) for i in items[:300])
    for word in ("BPM", ".wav", "tempo_bpm", "sample pack", "Summarise"):
        assert word in texts


def test_generation_is_deterministic() -> None:
    a = [i.to_json() for i in generate(300, repeat=0.7, seed=5)]
    b = [i.to_json() for i in generate(300, repeat=0.7, seed=5)]
    c = [i.to_json() for i in generate(300, repeat=0.7, seed=6)]
    assert a == b and a != c


def test_save_load_roundtrip(tmp_path: Path) -> None:
    items = generate(150, repeat=0.6, seed=2)
    path = tmp_path / "w.jsonl"
    assert save(path, items) == 150
    loaded = load(path)
    assert [i.to_json() for i in loaded] == [i.to_json() for i in items]
    assert [fingerprint(i.request) for i in loaded] == [fingerprint(i.request) for i in items]


def test_committed_files_match_the_manifest_exactly() -> None:
    manifest = load_manifest()
    assert manifest["generator_version"] == GENERATOR_VERSION
    assert set(manifest["files"]) == {name for name, _ in COMMITTED}
    total = 0
    for name, params in COMMITTED:
        entry = manifest["files"][name]
        path = DATA_DIR / name
        data = path.read_bytes()
        total += len(data)
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], name
        items = load(path)
        assert len(items) == entry["requests"] == params["n"]
        distinct = len({(i.task, i.priority, fingerprint(i.request)) for i in items})
        assert distinct == entry["distinct"]
        assert _independent_repeat_fraction(items) == entry["repeat_fraction"]
        assert abs(entry["repeat_fraction"] - entry["target_repeat"]) < 0.01
        assert entry["seed"] == params["seed"]
        # regenerating with the recorded parameters gives the same bytes
        again = generate(
            int(params["n"]),
            repeat=params["repeat"],
            seed=int(params["seed"]),
            zipf_s=params["zipf_s"],
        )
        assert [i.to_json() for i in again] == [
            json.loads(line) for line in data.decode().splitlines()
        ]
    assert total < 1_000_000


def test_corrupt_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    good = json.dumps(generate(1, seed=1)[0].to_json(), separators=(",", ":"))
    path.write_text(
        good + "\n" + '{"task": "genre", "priority": "speed", "request": {"messages": [\n'
    )
    with pytest.raises(WorkloadError, match=r"bad\.jsonl:2: invalid workload line"):
        load(path)
    path.write_text(good + "\n" + good + "\n" + good.replace('"task":"', '"task":"x') + "\n")
    with pytest.raises(WorkloadError, match=r"bad\.jsonl:3: .*unknown task"):
        load(path)
    path.write_text(good.replace('"messages"', '"messages":[],"bogus":1,"x"') + "\n")
    with pytest.raises(WorkloadError, match=r":1: .*bogus"):
        load(path)


def test_invalid_parameters() -> None:
    with pytest.raises(ValueError):
        generate(0)
    with pytest.raises(ValueError):
        generate(10, repeat=1.0)
