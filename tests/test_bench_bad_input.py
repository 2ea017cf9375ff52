"""Bad input to ``samplemind-bench`` (issue 11, harness part): every case through the console
script's ``main()`` in this process (:func:`tests._helpers.run_main`: exit code, stdout, stderr),
and one real subprocess of the installed script (``test_console_script_smoke``). Each ends as a clear message naming the problem (exit 2 for usage and
input errors), never a traceback, never a silent pass, and nothing is lost."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench import cli as bench_cli
from bench import gate
from bench.profile import find_py_spy
from tests._helpers import run_main

BIN = Path(sys.executable).parent
BENCH = BIN / "samplemind-bench"
RUN_A = Path(__file__).parent / "data" / "results" / "run_a"


def cli(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> Any:
    """Run the console script's ``main()`` in-process; assert it never ends in a traceback."""
    proc = run_main(bench_cli.main, args, cwd=cwd, env=env, prog=str(BENCH))
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    return proc


def real_cli(*args: str | Path) -> Any:
    """Run the installed console script in a subprocess; assert it never ends in a traceback."""
    proc = subprocess.run(
        [str(BENCH), *map(str, args)], capture_output=True, text=True, timeout=600
    )
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    return proc


@pytest.fixture(autouse=True)
def _console_script() -> None:
    if not BENCH.is_file():
        pytest.skip(f"{BENCH} is not installed (pip install -e .)")


def results(
    tmp_path: Path, name: str, edit: Callable[[str, dict[str, Any]], None] | None = None
) -> Path:
    """A copy of the committed run_a results; ``edit(file name, doc)`` changes each suite file."""
    dest = tmp_path / name
    shutil.copytree(RUN_A, dest)
    if edit is not None:
        for f in sorted(dest.glob("*.json")):
            if f.name != "manifest.json":
                doc = json.loads(f.read_text())
                edit(f.name, doc)
                f.write_text(json.dumps(doc))
    return dest


def drop_samples(only: str | None = None) -> Callable[[str, dict[str, Any]], None]:
    def edit(name: str, doc: dict[str, Any]) -> None:
        if only is None or name == only:
            for b in doc["benchmarks"]:
                b["stats"].pop("data", None)

    return edit


# --------------------------------------------------------------------------- gate: no data


def test_gate_candidate_without_raw_samples_is_bad_input_naming_the_files(tmp_path: Path) -> None:
    base, cand = results(tmp_path, "base"), results(tmp_path, "cand", drop_samples())
    proc = cli("gate", base, cand)
    assert proc.returncode == 2, proc.stdout
    assert "candidate" in proc.stderr and str(cand / "hashing.json") in proc.stderr
    assert "no raw samples (stats.data)" in proc.stderr and "PASS" not in proc.stdout
    # the same on the baseline side
    proc = cli("gate", cand, base, "-q")
    assert proc.returncode == 2 and "baseline" in proc.stderr


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_gate_where_some_benchmarks_lack_samples_is_bad_input_like_every_command(
    tmp_path: Path,
) -> None:
    """A benchmark without raw samples is a damaged file for every reader (the one results
    reader refuses it: decision 0320); before 2026-12-06 the gate judged it "insufficient
    data" while report, headline and history refused it."""
    base, cand = results(tmp_path, "base"), results(tmp_path, "cand", drop_samples("hashing.json"))
    proc = cli("gate", base, cand)
    assert proc.returncode == 2, proc.stdout
    assert f"candidate {cand / 'hashing.json'}: benchmark" in proc.stderr
    assert "has no raw samples (stats.data)" in proc.stderr and "PASS" not in proc.stdout
    for command in (["headline", cand], ["report", cand, "--out", tmp_path / "r"]):
        other = cli(*command)
        assert other.returncode == 2 and f"{cand / 'hashing.json'}: benchmark" in other.stderr


def test_gate_that_compares_nothing_exits_2(tmp_path: Path) -> None:
    def three(name: str, doc: dict[str, Any]) -> None:
        for b in doc["benchmarks"]:
            b["stats"]["data"] = b["stats"]["data"][:3]
            b["extra_info"] = {}

    few = results(tmp_path, "few", three)
    proc = cli("gate", few, results(tmp_path, "few2", three))
    assert proc.returncode == 2, proc.stdout
    assert (
        proc.stdout.startswith("gate: NOTHING COMPARED") and "fewer than 5 samples" in proc.stdout
    )


def test_gate_empty_benchmarks_and_unmatched_select_are_bad_input(tmp_path: Path) -> None:
    empty = results(tmp_path, "empty", lambda n, d: d.update(benchmarks=[]))
    proc = cli("gate", RUN_A, empty)
    assert proc.returncode == 2 and "no benchmarks" in proc.stderr and str(empty) in proc.stderr
    proc = cli("gate", RUN_A, results(tmp_path, "b"), "--select", "nomatch*")
    assert proc.returncode == 2 and "--select 'nomatch*' matches no benchmark" in proc.stderr


# --------------------------------------------------------------------------- gate: same input


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_gate_given_the_same_folder_twice_passes_with_a_warning(tmp_path: Path) -> None:
    run = results(tmp_path, "run")
    proc = cli("gate", run, run, "--json", tmp_path / "v.json")
    assert proc.returncode == 0
    assert f"gate: warning: {run} is both baseline and candidate" in proc.stderr
    assert "is both baseline and candidate" in json.loads((tmp_path / "v.json").read_text())["note"]
    assert "WARNING" in proc.stdout  # in the report's note as well
    # the manifest path of the same folder, and a copy of the same run, are caught too
    proc = cli("gate", run / "manifest.json", run, "-q")
    assert proc.returncode == 0 and "is both baseline and candidate" in proc.stderr
    proc = cli("gate", run, results(tmp_path, "copy"), "-q")
    assert proc.returncode == 0 and "identical raw samples" in proc.stderr
    proc = cli("gate", "--baseline", run, "--baseline", run, "--candidate", RUN_A, "-q")
    assert "given twice as baseline" in proc.stderr


def test_gate_of_distinct_runs_does_not_warn(tmp_path: Path) -> None:
    run_b = RUN_A.parent / "run_b"
    proc = cli("gate", RUN_A, run_b, "-q", "--ignore-env")
    assert "warning" not in proc.stderr


# --------------------------------------------------------------------------- gate: corrupt input


@pytest.mark.parametrize(
    ("mangle", "needle"),
    [
        (lambda d: (d / "cache.json").write_text('{"benchmarks": ['), "cache.json: not valid JSON"),
        (lambda d: (d / "cache.json").write_text(""), "cache.json: file is empty"),
        (lambda d: (d / "cache.json").unlink(), "cache.json: file not found"),
        (lambda d: (d / "cache.json").write_text('{"x": 1}'), "cache.json: not a pytest-benchmark"),
        (
            lambda d: (d / "manifest.json").write_text(
                (d / "manifest.json").read_text().replace('"version": 1', '"version": 7')
            ),
            "unknown format version 7",
        ),
        (
            lambda d: (d / "manifest.json").write_text(
                json.dumps(
                    {**json.loads((d / "manifest.json").read_text()), "files": ["../x.json"]}
                )
            ),
            "is not a file name in the folder",
        ),
        (
            lambda d: (d / "manifest.json").write_text(
                json.dumps({**json.loads((d / "manifest.json").read_text()), "environment": []})
            ),
            "'environment' is not an object",
        ),
    ],
    ids=["truncated", "empty", "missing", "not-benchmark-json", "version", "escape", "env"],
)
def test_gate_corrupt_results_are_bad_input(
    tmp_path: Path, mangle: Callable[[Path], Any], needle: str
) -> None:
    bad = results(tmp_path, "bad")
    mangle(bad)
    proc = cli("gate", RUN_A, bad, "-q")
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ('[[rule]]\nallowed = "-5%"', "'allowed' must be a change >= 0"),
        ('[[rule]]\nallowed = "abc%"', "'allowed' must be a change >= 0"),
        ('[[rule]]\nallowed = "nan%"', "'allowed' must be a change >= 0"),
        ("[[rule]]\nbogus = 1", "unknown keys ['bogus']"),
        ("[gate]\nbogus = 1", "[gate] unknown keys ['bogus']"),
        ("[enviroment]\nfields = []", "unknown sections ['enviroment']"),
        ("rule = 3", "rules must be [[rule]] tables"),
        ("gate = 1", "[gate] must be a table"),
        ("[[rule]]\nname = 3", "name must be a non-empty string"),
        ('[[rule]]\nskip = "no"', "skip must be true or false"),
        ('[gate]\nalpha = "x"', "alpha must be a number"),
        ("[gate]\nalpha = 5", "alpha must be a number in"),
        ("[gate]\nn_boot = 0", "n_boot must be an integer"),
        ("[gate]\nconfidence = 2", "confidence must be a number in"),
        ("[gate]\ntrim = 0.6", "trim must be a number in"),
        ("[gate]\nmin_samples = -1", "min_samples must be an integer"),
        ('[gate]\nsuites = "abc"', "suites must be a list"),
        ("[environment]\nfields = 3", "fields must be a list"),
        ("[gate\n", "not valid TOML"),
    ],
)
def test_gate_bad_rules_file_is_bad_input(tmp_path: Path, toml: str, needle: str) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(toml + "\n")
    with pytest.raises(gate.GateInputError) as err:  # the loader (in process: 19 cases) ...
        gate.load_config(rules)
    assert str(rules) in str(err.value) and needle in str(err.value), err.value
    if toml.startswith("[[rule]]\nallowed"):  # ... and a few through the console script
        proc = cli("gate", RUN_A, RUN_A, "-q", "--rules", rules)
        assert proc.returncode == 2, proc.stdout
        assert f"gate: bad input: {err.value}" in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--alpha", "7"], "--alpha must be a number in"),
        (["--rounds", "0"], "--rounds must be an integer in"),
        (["--json", "{file}/v.json"], "is not a folder"),
        (["--markdown", "{dir}"], "is a folder"),
    ],
)
def test_gate_bad_options_are_bad_input(tmp_path: Path, args: list[str], needle: str) -> None:
    (tmp_path / "file").write_text("keep")
    args = [a.format(file=tmp_path / "file", dir=tmp_path) for a in args]
    proc = cli("gate", RUN_A, RUN_A, "-q", *args)
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
    assert (tmp_path / "file").read_text() == "keep"


# --------------------------------------------------------------------------- report


def only_suite(run: Path, suite: str) -> Path:
    """Keep one suite of a results folder (its file and the manifest's entries): a smaller run
    whose report draws fewer charts."""
    manifest = json.loads((run / "manifest.json").read_text())
    for name in manifest["files"]:
        if name != f"{suite}.json":
            (run / name).unlink()
    manifest["suites"], manifest["files"] = [suite], [f"{suite}.json"]
    (run / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return run


@pytest.mark.slow  # two report builds: outside the fast tier
def test_report_into_the_results_folder_keeps_its_profile(tmp_path: Path) -> None:
    # one suite: the report's own charts are not what this test is about (a build of the
    # hashing suite alone takes about a third of the CPU of run_a's six suites)
    run = only_suite(results(tmp_path, "run"), "hashing")
    inputs = {name: (run / name).read_bytes() for name in ("manifest.json", "hashing.json")}
    prof = run / "profile"
    prof.mkdir()
    (prof / "memray.bin").write_bytes(b"\x00capture")
    (prof / "notes.txt").write_text("mine")
    (prof / "flame.svg").write_text("<svg/>")
    (prof / "profile.json").write_text(
        json.dumps(
            {"format": "samplemind-profile", "version": 1, "cpu": {"artefacts": {"f": "flame.svg"}}}
        )
    )
    before = {p.name: p.read_bytes() for p in prof.iterdir()}
    proc = cli("report", run, "--out", run)
    assert proc.returncode == 0, proc.stderr
    assert {p.name: p.read_bytes() for p in prof.iterdir()} == before
    assert (run / "index.html").is_file() and any((run / "charts").glob("*.png"))
    assert "profile/flame.svg" in (run / "index.html").read_text()
    # the next build removes what the previous one listed as written (a stale chart), and only
    # that: not the profile, not a file of the user's in charts/
    listing = (run / ".samplemind-report").read_text().splitlines()
    assert "index.html" in listing and not any(n.startswith("profile/") for n in listing)
    stale = run / "charts" / "gone.png"
    stale.write_bytes(b"old")
    (run / ".samplemind-report").write_text("\n".join([*listing, "charts/gone.png"]) + "\n")
    (run / "charts" / "user.txt").write_text("mine")
    assert cli("report", run, "--out", run).returncode == 0
    assert not stale.exists() and (run / "charts" / "user.txt").read_text() == "mine"
    assert {p.name: p.read_bytes() for p in prof.iterdir()} == before
    for name, content in inputs.items():  # the inputs are intact
        assert (run / name).read_bytes() == content


def test_report_bad_out_and_empty_input_are_bad_input(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("keep")
    for out, needle in (
        (tmp_path / "file", "File exists"),
        (tmp_path / "file" / "x", "Not a directory"),
    ):
        proc = cli("report", RUN_A, "--out", out)
        assert proc.returncode == 2 and str(out) in proc.stderr and needle in proc.stderr
    assert (tmp_path / "file").read_text() == "keep"
    (tmp_path / "empty").mkdir()
    proc = cli("report", tmp_path / "empty", "--out", tmp_path / "r")
    assert proc.returncode == 2 and "manifest.json" in proc.stderr


# --------------------------------------------------------------------------- run


def test_run_out_an_existing_file_or_foreign_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("keep")
    proc = cli("run", "--quick", "--suite", "hashing", "--out", tmp_path / "file")
    assert proc.returncode == 2
    assert f"--out: {tmp_path / 'file'} exists and is not a folder" in proc.stderr
    proc = cli("run", "--quick", "--suite", "hashing", "--out", tmp_path / "file" / "sub")
    assert proc.returncode == 2 and "is not a folder" in proc.stderr
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "hashing.json").write_text("my own file")
    proc = cli("run", "--quick", "--suite", "hashing", "--out", foreign)
    assert proc.returncode == 2 and "not empty and not a results folder" in proc.stderr
    assert (foreign / "hashing.json").read_text() == "my own file"
    assert (tmp_path / "file").read_text() == "keep"


# --------------------------------------------------------------------------- profile, help


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_profile_finds_py_spy_beside_the_interpreter_without_activation(tmp_path: Path) -> None:
    if not (BIN / "py-spy").is_file():
        pytest.skip("py-spy is not installed in this environment")
    assert find_py_spy() == str(BIN / "py-spy")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV",)}
    env["PATH"] = "/usr/bin:/bin"  # the virtualenv is not activated
    out = tmp_path / "prof"
    proc = cli("profile", "--out", out, "--requests", "40", "--memray-requests", "0", env=env)
    assert "py-spy is not installed" not in proc.stderr, proc.stderr
    cpu = json.loads((out / "profile.json").read_text())["cpu"]
    assert cpu["status"] != "missing" and "not installed" not in cpu.get("message", "")


def test_profile_bad_out_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("keep")
    proc = cli("profile", "--out", tmp_path / "file", "--requests", "40")
    assert proc.returncode == 2 and "--out" in proc.stderr and str(tmp_path / "file") in proc.stderr
    assert (tmp_path / "file").read_text() == "keep"


def test_help_names_commands_not_modules() -> None:
    top = cli("--help")
    assert top.returncode == 0
    for module in ("reports.build", "bench.profile", "bench.gate", "bench.harness.headline"):
        assert module not in top.stdout
    for command in ("run", "report", "profile", "gate", "headline"):
        proc = cli(command, "--help")
        assert proc.returncode == 0 and proc.stdout.startswith(f"usage: samplemind-bench {command}")
    gate_help = cli("gate", "--help").stdout
    assert "insufficient data" in gate_help and "2 bad input" in gate_help
    proc = cli("gate")
    assert proc.returncode == 2 and "missing baseline or candidate" in proc.stderr


def test_headline_corrupt_input_names_the_file(tmp_path: Path) -> None:
    bad = results(tmp_path, "bad")
    (bad / "cache.json").write_text("{")
    proc = cli("headline", bad)
    assert proc.returncode == 2 and f"{bad / 'cache.json'}" in proc.stderr
    proc = cli("headline", results(tmp_path, "nodata", drop_samples()))
    assert proc.returncode == 2 and "no raw samples" in proc.stderr


def test_gate_warns_of_rules_that_apply_to_nothing(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nmetric = "hit_rtae"\ntest = "exact"\n\n[[rule]]\nname = "[abc"\n')
    proc = cli("gate", RUN_A, results(tmp_path, "copy"), "-q", "--rules", rules)
    assert proc.returncode == 0, proc.stderr
    assert "rule #1 (name=* group=* metric=hit_rtae" in proc.stderr
    assert "matches no benchmark with a 'hit_rtae' figure" in proc.stderr
    assert "rule #2 (name=[abc " in proc.stderr


# --------------------------------------------------------------------------- the real script


@pytest.mark.parametrize(
    "command", ["run", "report", "profile", "gate", "headline", "history", "bisect"]
)
@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_console_script_smoke(command: str, tmp_path: Path) -> None:
    """One real subprocess of the installed script per command: its ``--help`` answers with the
    command's usage, and bad input exits 2 naming what is wrong, as the in-process cases show."""
    proc = real_cli(command, "--help")
    assert proc.returncode == 0 and proc.stdout.startswith(f"usage: samplemind-bench {command}")
    if command == "gate":
        proc = real_cli("gate", RUN_A, tmp_path / "missing", "-q")
        assert proc.returncode == 2 and str(tmp_path / "missing") in proc.stderr
