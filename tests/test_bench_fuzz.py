"""Property-based fuzzing of the harness's loaders (issue 11): malformed results folders, manifests,
pytest-benchmark JSON and gate rules TOML. Each loader either returns a valid object or raises the
project's own error type with a message naming the file, never another exception; what loads
can be judged and rendered by the gate without a crash."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import environment, gate, results
from bench.results import ResultsFormatError

FUZZ = settings(
    max_examples=int(os.environ.get("SAMPLEMIND_FUZZ_EXAMPLES", "150")),  # more for a long fuzz
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the well-formed value, sometimes anything at all."""
    return st.one_of(strategy, strategy, json_values)


numbers = st.floats(min_value=1e-9, max_value=1.0) | st.integers(min_value=0, max_value=10)
benchmark = st.fixed_dictionaries(
    {
        "name": maybe(st.sampled_from(["t[a]", "t[b]", "t[c]"])),
        "stats": maybe(
            st.fixed_dictionaries(
                {},
                optional={"data": maybe(st.lists(maybe(numbers), max_size=12))},
            )
        ),
    },
    optional={
        "fullname": maybe(st.sampled_from(["x.py::t[a]", "x.py::t[b]"])),
        "group": maybe(st.sampled_from(["fingerprint/x", "cache/y", ""])),
        "extra_info": maybe(
            st.dictionaries(st.sampled_from(["hit_rate", "req_per_s", "n"]), maybe(numbers))
        ),
        "options": maybe(
            st.fixed_dictionaries(
                {"timer": maybe(st.sampled_from(["perf_counter", "process_time"]))}
            )
        ),
    },
)
bench_doc = maybe(
    st.fixed_dictionaries(
        {"benchmarks": maybe(st.lists(benchmark, max_size=5))},
        optional={"machine_info": json_values, "commit_info": json_values},
    )
)
file_names = st.sampled_from(["a.json", "b.json", "missing.json", "../a.json", "/etc/hostname", ""])
manifest = maybe(
    st.fixed_dictionaries(
        {
            "format": maybe(st.just(results.FORMAT)),
            "version": maybe(st.just(1)),
            "files": maybe(st.lists(maybe(file_names), max_size=3)),
        },
        optional={
            "environment": maybe(
                st.fixed_dictionaries(
                    {
                        "cpu": maybe(st.just("x")),
                        "packages": maybe(st.dictionaries(st.text(max_size=4), json_values)),
                    }
                )
            ),
            "commit": json_values,
            "suites": json_values,
        },
    )
)
raw_text = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
    st.just("[" * 5000),  # deep nesting
)


def write_folder(root: Path, man: Any, docs: dict[str, Any], raw: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.json").write_text(json.dumps(man))
    for name, doc in docs.items():
        (root / name).write_text(json.dumps(doc))
    for name, text in raw.items():
        (root / name).write_text(text, encoding="utf-8", errors="surrogatepass")
    return root


folders = st.tuples(
    manifest,
    st.dictionaries(st.sampled_from(["a.json", "b.json"]), bench_doc, max_size=2),
    st.dictionaries(st.sampled_from(["b.json", "manifest.json"]), raw_text, max_size=1),
)


def load_or_error(path: Path) -> gate.ResultSet | None:
    try:
        rs = gate.load_results(path)
    except (gate.GateInputError, ResultsFormatError) as exc:  # the results reader's own error
        assert str(path) in str(exc), exc
        return None
    # what loads is well-formed
    for key, rec in rs.benches.items():
        assert isinstance(key, str) and isinstance(rec.name, str) and isinstance(rec.group, str)
        assert all(isinstance(x, float) and math.isfinite(x) for x in rec.samples)
        assert all(isinstance(v, list) for v in rec.extra.values())
    assert isinstance(rs.environment, dict) and isinstance(
        rs.environment.get("packages") or {}, dict
    )
    return rs


@pytest.mark.slow  # several seconds: outside the fast tier
@FUZZ
@given(folders, folders)
def test_results_loader_and_gate_survive_malformed_folders(a: Any, b: Any) -> None:
    fast = gate.GateConfig(rules=gate.load_config().rules, n_boot=200, min_samples=2)
    with tempfile.TemporaryDirectory() as tmp:
        sets = [
            load_or_error(write_folder(Path(tmp) / name, *spec))
            for name, spec in (("a", a), ("b", b))
        ]
        base, cand = sets
        if base is None or cand is None:
            return
        for side, rs in (("baseline", base), ("candidate", cand)):
            try:
                gate.require_samples(side, rs)
            except gate.GateInputError as exc:
                assert side in str(exc)
        report = gate.GateReport(
            verdicts=gate.evaluate(base, cand, fast),
            env_differences=environment.differences(base.environment, cand.environment),
            ignore_env=True,
            baseline_sources=base.sources,
            candidate_sources=cand.sources,
            settings={},
        )
        assert report.exit_code in (0, 1, 2, 3)
        report.to_table()
        report.to_markdown()
        json.dumps(report.as_dict(), allow_nan=False)


@FUZZ
@given(bench_doc | raw_text)
@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_single_benchmark_file_loader(doc: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "bench.json"
        if isinstance(doc, str):
            f.write_text(doc, encoding="utf-8", errors="surrogatepass")
        else:
            f.write_text(json.dumps(doc))
        load_or_error(f)


@FUZZ
@given(folders)
@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_report_loader_survives_malformed_folders(spec: Any) -> None:
    from reports.data import ReportInputError, load_run

    with tempfile.TemporaryDirectory() as tmp:
        folder = write_folder(Path(tmp) / "r", *spec)
        try:
            run = load_run(folder)
        except ReportInputError as exc:
            assert str(exc)
            return
        assert run.path == folder


# --------------------------------------------------------------------------- rules TOML


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return (
            "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
        )
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(x)}" for k, x in v.items()) + "}"


toml_scalars = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6)
    | st.sampled_from(["5%", "-5%", "abc%", "nan%", "1e400%", " 10 % ", "%"])
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=2)
    ),
    max_leaves=6,
)
rule_keys = st.sampled_from(
    ["name", "group", "metric", "direction", "allowed", "test", "skip", "timer", "bogus"]
)
gate_keys = st.sampled_from(
    [
        "alpha",
        "correction",
        "confidence",
        "n_boot",
        "seed",
        "min_samples",
        "default_allowed",
        "rounds",
        "suites",
        "trim",
    ]
)
good_values = {
    "direction": st.sampled_from(["lower", "higher"]),
    "test": st.sampled_from(["samples", "exact"]),
    "timer": st.sampled_from(["wall", "cpu"]),
    "correction": st.sampled_from(["holm", "bh", "none"]),
    "metric": st.sampled_from(["time", "hit_rate"]),
}


def table(keys: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(
        keys, toml_values | st.sampled_from([0.01, 0.99, 100, 3, "holm", "lower"]), max_size=4
    )


@st.composite
def rules_docs(draw: st.DrawFn) -> str:
    lines: list[str] = []
    if draw(st.booleans()):
        lines.append("[gate]")
        lines += [f"{k} = {toml_value(v)}" for k, v in draw(table(gate_keys)).items()]
    if draw(st.booleans()):
        lines.append("[environment]")
        env = draw(
            st.dictionaries(
                st.sampled_from(["fields", "ignore_packages", "x"]), toml_values, max_size=2
            )
        )
        lines += [f"{k} = {toml_value(v)}" for k, v in env.items()]
    for rule in draw(st.lists(table(rule_keys), max_size=3)):
        lines.append("[[rule]]")
        for k, v in rule.items():
            if k in good_values and draw(st.booleans()):
                v = draw(good_values[k])
            lines.append(f"{k} = {toml_value(v)}")
    if draw(st.booleans()):
        lines.append(
            draw(st.sampled_from(["rule = 3", "gate = 1", "[other]", "[[gate]]", "x = [", "\x00"]))
        )
    return "\n".join(lines) + "\n"


@FUZZ
@given(rules_docs() | raw_text)
@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_rules_loader_returns_a_valid_config_or_names_the_file(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rules.toml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            cfg = gate.load_config(path)
        except gate.GateInputError as exc:
            assert str(path) in str(exc)
            return
    # a config that loads is usable as is
    assert 0 < cfg.alpha < 1 and 0 < cfg.confidence < 1 and cfg.n_boot >= 100
    assert cfg.min_samples >= 2 and cfg.rounds >= 1 and 0 <= cfg.trim < 0.5
    assert math.isfinite(cfg.default_allowed) and cfg.default_allowed >= 0
    assert all(isinstance(s, str) for s in (*cfg.suites, *cfg.env_fields, *cfg.ignore_packages))
    for rule in cfg.rules:
        assert (
            isinstance(rule.name, str)
            and isinstance(rule.group, str)
            and isinstance(rule.metric, str)
        )
        assert math.isfinite(rule.allowed) and rule.allowed >= 0 and isinstance(rule.skip, bool)
        assert rule.direction in ("lower", "higher") and rule.test in ("samples", "exact")
