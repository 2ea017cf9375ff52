"""The headline says what its ratios mean and tells noise from a finding (issue 21 item 4)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.harness.headline import headline
from bench.suites.test_router import mean_difference_ci


def _bench(suite: str, variant: str, seconds: float, **extra: Any) -> dict[str, Any]:
    return {
        "name": f"test_{suite}[{variant}]",
        "fullname": f"bench/suites/test_{suite}.py::test_{suite}[{variant}]",
        "params": {"variant": variant},
        "stats": {"data": [seconds] * 5},
        "extra_info": {"subject": extra.pop("subject", "1KiB"), "variant": variant, **extra},
    }


def _folder(tmp_path: Path, router_extra: dict[str, Any]) -> Path:
    folder = tmp_path / "results"
    folder.mkdir(parents=True)
    docs = {
        "hashing": [_bench("hashing", "sha256", 1e-6), _bench("hashing", "blake3", 1.25e-6)],
        "router": [
            _bench("router", "fail50", 0.01, subject="fallback-mock", **router_extra),
        ],
    }
    for suite, benches in docs.items():
        (folder / f"{suite}.json").write_text(json.dumps({"benchmarks": benches}))
    manifest = {
        "format": "samplemind-bench-results",
        "version": 1,
        "suites": list(docs),
        "files": [f"{s}.json" for s in docs],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


ROUTER = {"success_rate": 0.97, "added_latency_all_ms": 1.0, "calls_per_request": 1.2}


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (
            {"added_latency_ms": -0.08, "added_latency_ci_low_ms": -0.4,
             "added_latency_ci_high_ms": 0.25},
            "added latency within noise (-0.08 ms, 95% CI -0.40 to +0.25 ms)",
        ),
        (
            {"added_latency_ms": 21.5, "added_latency_ci_low_ms": 19.0,
             "added_latency_ci_high_ms": 24.0},
            "added latency +21.50 ms (95% CI +19.00 to +24.00 ms)",
        ),
        ({"added_latency_ms": -0.08}, "added latency -0.08 ms (no interval recorded"),
    ],
)  # fmt: skip
def test_headline_wording(tmp_path: Path, extra: dict[str, Any], says: str) -> None:
    lines = headline(_folder(tmp_path, {**ROUTER, **extra}))
    text = "\n".join(lines)
    assert "BLAKE3 is 0.80x as fast as SHA-256" in text  # one reading only
    assert "SHA-256/BLAKE3" not in text
    assert says in text


def test_mean_difference_ci() -> None:
    assert mean_difference_ci([1.0], [1.0, 2.0]) is None
    lo, hi = mean_difference_ci([10.0, 12.0, 11.0, 13.0], [1.0, 2.0, 1.5, 2.5])  # type: ignore[misc]
    assert lo < 11.5 - 1.75 < hi and lo > 0  # the difference of means 9.75 is inside, 0 is not
    lo, hi = mean_difference_ci([1.0, 2.0, 3.0], [1.5, 2.5, 2.0])  # type: ignore[misc]
    assert lo < 0 < hi


def test_headline_shows_instruction_counts(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {**ROUTER, "added_latency_ms": 1.0})
    doc = json.loads((folder / "router.json").read_text())
    doc["benchmarks"].append(
        _bench("router", "chat/speed/healthy", 3e-7, subject="route", instructions=4321.0)
    )
    (folder / "router.json").write_text(json.dumps(doc))
    text = "\n".join(headline(folder))
    assert "instructions per routing decision (chat/speed, healthy) 4,321" in text
    assert "1 benchmarks counted" in text
    assert "instructions per call" not in "\n".join(headline(_folder(tmp_path / "b", ROUTER)))


def test_a_missing_field_is_named_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A benchmark without a field the headline reads (the reader's test folder run_a has
    no ``variant`` where the headline looks): exit 2, the folder and the field named."""
    from bench.harness.headline import main

    folder = Path(__file__).parent / "data" / "results" / "run_a"
    with pytest.raises(SystemExit) as exit_:
        main([str(folder)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"{folder}: a benchmark lacks the field 'variant' the headline reads" in err
