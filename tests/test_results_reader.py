"""The one reader of results folders (issue 22 item 2) and compressed suite files (issue 21
item 6): every command that reads a results folder (``report``, ``gate``, ``headline``,
``history add``, ``python -m bench.instructions.summary``) refuses the same damage with the same
message (the reader's :class:`ResultsFormatError`, ``"{file}: {problem}"``) and exit 2; a
``.json.gz`` suite file reads exactly like the plain file it came from.

Every command runs in-process through its ``main([...])`` (no subprocess, no server)."""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench import cli as bench_cli
from bench import results
from bench.instructions import summary
from bench.results import ResultsFormatError, compress_suite_file, read_folder
from samplemind_core import SampleMindError
from tests._helpers import run_main, unrendered_charts

RUN_A = Path(__file__).parent / "data" / "results" / "run_a"


def _copy(tmp_path: Path, name: str = "run") -> Path:
    return Path(shutil.copytree(RUN_A, tmp_path / name))


def _compress(folder: Path) -> Path:
    """``folder`` as ``samplemind-bench run`` writes it since version 2: ``.json.gz`` files."""
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"] = [compress_suite_file(folder / f).name for f in manifest["files"]]
    manifest["version"] = 2
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def _edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def _no_samples(doc: dict[str, Any]) -> None:
    del doc["benchmarks"][1]["stats"]["data"]


def _negative(doc: dict[str, Any]) -> None:
    doc["benchmarks"][0]["stats"]["data"][3] = -1e-6


DAMAGE: dict[str, Callable[[Path], Path]] = {
    "corrupt-json": lambda d: (d / "cache.json").write_text('{"benchmarks": [') and d,
    "empty": lambda d: (d / "cache.json").write_text("") or d,
    "missing-file": lambda d: (d / "cache.json").unlink() or d,
    "not-benchmark-json": lambda d: (d / "cache.json").write_text('{"x": 1}') and d,
    "no-samples": lambda d: _edit(d / "cache.json", _no_samples) or d,
    "negative-sample": lambda d: _edit(d / "cache.json", _negative) or d,
    "missing-manifest": lambda d: (d / "manifest.json").unlink() or d,
    "truncated-gzip": lambda d: _truncate(_compress(d) / "cache.json.gz") or d,
    "corrupt-gzip": lambda d: _scramble(_compress(d) / "router.json.gz") or d,
}


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _scramble(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[20:60] = bytes(40)  # inside the deflate stream, past the header
    path.write_bytes(bytes(raw))


def _commands(folder: Path, tmp_path: Path) -> dict[str, Any]:
    bench = lambda *a: run_main(bench_cli.main, [str(x) for x in a], prog="samplemind-bench")  # noqa: E731
    return {
        "report": bench("report", folder, "--out", tmp_path / "report"),
        "gate": bench("gate", RUN_A, folder, "-q"),
        "headline": bench("headline", folder),
        "history add": bench("history", "add", folder, "--db", tmp_path / "h.sqlite"),
        "instructions summary": run_main(summary.main, [str(folder)]),
    }


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_every_command_refuses_the_same_damage_with_the_same_message(
    tmp_path: Path, damage: str
) -> None:
    folder = DAMAGE[damage](_copy(tmp_path))
    with pytest.raises(ResultsFormatError) as exc:
        read_folder(folder)
    message = str(exc.value)
    assert message.startswith(f"{exc.value.path}: ") and str(folder) in message
    assert isinstance(exc.value, SampleMindError) and isinstance(exc.value, ValueError)
    for command, proc in _commands(folder, tmp_path).items():
        assert proc.returncode == 2, (command, proc.stdout, proc.stderr)
        assert message in proc.stderr, (command, message, proc.stderr)
        assert "Traceback" not in proc.stderr, command
    assert not (tmp_path / "report" / "index.html").exists()  # no report from a damaged run
    assert not (tmp_path / "h.sqlite").exists()  # every folder is read before the store opens


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        ("corrupt-json", "not valid JSON (line 1, column 17"),
        ("empty", "file is empty"),
        ("missing-file", "file not found"),
        ("not-benchmark-json", "not a pytest-benchmark JSON file (no 'benchmarks' list)"),
        ("no-samples", "has no raw samples (stats.data)"),
        ("negative-sample", "stats.data holds -1e-06 (samples are finite seconds >= 0)"),
        ("missing-manifest", "missing: no manifest.json"),
        ("truncated-gzip", "corrupt or truncated gzip data"),
        ("corrupt-gzip", "corrupt or truncated gzip data"),
    ],
)
def test_the_message_names_the_file_and_what_is_wrong(
    tmp_path: Path, damage: str, problem: str
) -> None:
    folder = DAMAGE[damage](_copy(tmp_path))
    with pytest.raises(ResultsFormatError) as exc:
        read_folder(folder)
    assert exc.value.path.parent == folder and problem in exc.value.problem


def test_compressed_folder_reads_exactly_like_the_plain_one(tmp_path: Path) -> None:
    plain = read_folder(RUN_A)
    packed_dir = _compress(_copy(tmp_path))
    packed = read_folder(packed_dir)
    assert [f.path.name for f in packed.files] == [f"{f.suite}.json.gz" for f in plain.files]
    for a, b in zip(plain.benchmarks, packed.benchmarks, strict=True):
        assert (a.suite, a.fullname, a.group, a.params, a.timer) == (
            b.suite,
            b.fullname,
            b.group,
            b.params,
            b.timer,
        )
        assert a.samples == b.samples and a.extra_info == b.extra_info  # bit for bit
    for f in packed.files:  # a gzip of compact JSON: zcat shows pytest-benchmark's document
        assert json.loads(gzip.decompress(f.path.read_bytes())) == json.loads(
            (RUN_A / f"{f.suite}.json").read_text()
        )
    size = results.folder_size
    assert size(packed_dir) < size(RUN_A) / 3


def test_compression_is_deterministic_and_keeps_nothing_behind(tmp_path: Path) -> None:
    a, b = _copy(tmp_path, "a"), _copy(tmp_path, "b")
    pa, pb = compress_suite_file(a / "router.json"), compress_suite_file(b / "router.json")
    assert pa.read_bytes() == pb.read_bytes()  # no time or name in the gzip header
    assert not (a / "router.json").exists() and not list(a.glob("*.tmp"))


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_version_1_and_version_2_folders_are_both_read_by_every_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The report's charts are compared by what they show, not drawn (decision 0980): the
    # images of run_a's report are the golden and browser tests' business.
    unrendered_charts(monkeypatch)
    plain, packed = _copy(tmp_path, "plain"), _compress(_copy(tmp_path, "packed"))
    seen = []
    for folder in (plain, packed):
        procs = _commands(folder, tmp_path / f"out-{folder.name}")
        assert procs["report"].returncode == 0, procs["report"].stderr
        assert procs["gate"].returncode == 0, procs["gate"].stdout
        assert procs["history add"].returncode == 0, procs["history add"].stderr
        assert procs["instructions summary"].returncode == 2  # run_a has no counts: said so
        report = tmp_path / f"out-{folder.name}" / "report"
        csv = (report / "data.csv").read_text()
        charts = sorted((p.name, p.read_bytes()) for p in (report / "charts").iterdir())
        pages = [(report / n).read_text() for n in ("summary.md", "index.html")]
        assert len(charts) == 2 * pages[1].count("<figure") >= 16  # PNG + SVG per chart
        outputs = [csv, repr(charts), *pages, *(p.stdout + p.stderr for p in procs.values())]
        seen.append([o.replace(str(folder), "DIR").replace(folder.name, "DIR") for o in outputs])
    assert seen[0] == seen[1]  # every command says the same of both (headline included)


def test_a_benchmark_twice_in_a_folder_is_refused(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    router = json.loads((folder / "router.json").read_text())
    _edit(folder / "cache.json", lambda d: d["benchmarks"].append(router["benchmarks"][0]))
    with pytest.raises(
        ResultsFormatError, match=r"router\.json: benchmark .* is also in cache\.json"
    ):
        read_folder(folder)


def test_the_merge_of_counts_reads_through_the_reader(tmp_path: Path) -> None:
    from bench.instructions.runner import merge_counts

    folder = _copy(tmp_path)
    (folder / "cache.json").write_text('{"benchmarks": [')
    with pytest.raises(ResultsFormatError, match="not valid JSON"):
        merge_counts(folder / "cache.json", {}, "callgrind")
    assert (folder / "cache.json").read_text() == '{"benchmarks": ['  # nothing written
