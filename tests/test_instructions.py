"""The instruction tier (bench/instructions): counts, selection, merge, decision, missing tools.

Tests marked ``valgrind`` run processes under callgrind; without valgrind (or a C
compiler, or valgrind/callgrind.h) they skip with the command that installs them,
unless ``CI`` is set: then they fail.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bench import cli
from bench.instructions import _select, _tools, runner
from bench.instructions._counter import Count, DumpError, read_dump_total, warmup_calls
from bench.instructions._tools import APT_HINT, ToolMissing, Tools, build_shim, find_tools
from bench.results import read_suite_document
from bench.stats import aa_spread, decide, load_spreads
from tests._helpers import run_main

if TYPE_CHECKING:
    from tests.conftest import CountedPair

REPO = Path(__file__).resolve().parent.parent
BENCH_SCRIPT = Path(sys.executable).parent / "samplemind-bench"


@pytest.fixture(scope="module")
def tools() -> Tools:
    """valgrind, setarch and the built shim; skip (or fail under CI) when one is missing."""
    try:
        return find_tools()
    except ToolMissing as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc} (CI is set, so valgrind tests must run)", pytrace=False)
        pytest.skip(str(exc))


# -- dumps, counts, warm-up -------------------------------------------------------------------

DUMP = """\
version: 1
creator: callgrind-3.19.0
pid: 4242
cmd:  python -m pytest
part: 3

desc: I1 cache:
desc: Timerange: Basic block 225924 - 3649575
desc: Trigger: Client Request: samplemind-4242-3

positions: line
events: Ir
summary: 23851599


totals: 23851599
"""


def test_read_dump_total(tmp_path: Path) -> None:
    path = tmp_path / "callgrind.4242.3"
    path.write_text(DUMP)
    assert read_dump_total(path, "samplemind-4242-3") == 23_851_599
    with pytest.raises(DumpError, match="is not the dump of"):
        read_dump_total(path, "samplemind-4242-2")
    path.write_text(DUMP.replace("summary: 23851599\n", "").replace("totals: 23851599\n", ""))
    with pytest.raises(DumpError, match="no totals"):
        read_dump_total(path, "samplemind-4242-3")
    with pytest.raises(DumpError, match="cannot read"):
        read_dump_total(tmp_path / "missing", "x")


def test_count_extra_info_and_warmup() -> None:
    count = Count(per_call=1234.5, total=250_000, calls=200, regions=1, overhead=1100, warmup=50)
    info = count.as_extra_info()
    assert info["instructions"] == 1234.5 and info["instructions_calls"] == 200
    assert set(info) == {
        "instructions",
        "instructions_calls",
        "instructions_total",
        "instructions_regions",
        "instructions_overhead",
        "instructions_warmup",
    }
    assert [warmup_calls(n) for n in (1, 12, 100, 400)] == [4, 4, 25, 100]


# -- selection ---------------------------------------------------------------------------------


def test_rules_name_existing_benchmarks() -> None:
    """A renamed benchmark must not silently drop out of the instruction tier."""
    import importlib

    for rule in _select.RULES:
        module = importlib.import_module(f"bench.suites.test_{rule.suite}")
        assert callable(getattr(module, rule.test, None)), f"{rule.suite}: no {rule.test}"
        assert rule.calls({}) >= 1


@pytest.mark.parametrize(
    ("suite", "test", "params", "counted"),
    [
        ("hashing", "test_hash", {"size": 16 * 1024, "algorithm": "blake3"}, True),
        ("hashing", "test_hash", {"size": 1 << 20, "algorithm": "blake3"}, False),
        ("hashing", "test_hash", {"size": 64, "algorithm": "blake3_auto"}, False),
        ("fingerprint", "test_fingerprint", {"request_name": "1KB", "variant": "naive"}, True),
        ("router", "test_route", {"task": "chat"}, True),
        ("router", "test_fallback", {"target": "mock"}, False),
        ("cache", "test_cache_op", {"backend": "fakeredis", "op": "hit"}, True),
        ("cache", "test_cache_op", {"backend": "redis", "op": "hit"}, False),
        ("cache", "test_cache_op", {"backend": "fakeredis", "op": "get_or_call"}, False),
        ("cache", "test_codec", {"size": "1KB"}, True),
        ("cache", "test_hit_vs_raw_get_interleaved", {"backend": "fakeredis"}, False),
        ("pipeline", "test_request_cpu", {}, True),
        ("pipeline", "test_pipeline", {"workload": "x"}, False),
        ("client", "test_client", {}, False),
    ],
)
def test_rule_for(suite: str, test: str, params: dict[str, object], counted: bool) -> None:
    assert (_select.rule_for(suite, test, params) is not None) is counted


def test_counted_suites() -> None:
    assert _select.counted_suites() == ("hashing", "fingerprint", "router", "cache", "pipeline")


# -- merge into the results file --------------------------------------------------------------


def test_merge_counts(tmp_path: Path) -> None:
    results = tmp_path / "router.json"
    stats = {"median": 4e-7, "data": [4e-7]}
    results.write_text(
        json.dumps(
            {
                "benchmarks": [
                    {  # as pytest-benchmark writes them (the reader checks name and samples)
                        "name": "test_route[a]",
                        "fullname": "bench/test_router.py::test_route[a]",
                        "stats": stats,
                        "extra_info": {"suite": "router"},
                    },
                    {
                        "name": "test_fallback[b]",
                        "fullname": "bench/test_router.py::test_fallback[b]",
                        "stats": stats,
                        "extra_info": {},
                    },
                ]
            }
        )
    )
    counts = {
        "bench/test_router.py::test_route[a]": {
            "instructions": 3358.5,
            "instructions_calls": 400,
            "group": "router/route",
            "extra_info": {},
        },
        "bench/test_router.py::test_route[gone]": {"instructions": 1.0},
    }
    merged, unmatched = runner.merge_counts(results, counts, "valgrind-3.19.0 callgrind")
    assert merged == 1 and unmatched == ["bench/test_router.py::test_route[gone]"]
    data = json.loads(results.read_text())
    first, second = data["benchmarks"]
    assert first["extra_info"] == {
        "suite": "router",
        "instructions": 3358.5,
        "instructions_calls": 400,
        "instructions_tool": "valgrind-3.19.0 callgrind",
    }
    assert first["stats"] == stats  # wall time untouched
    assert "instructions" not in second["extra_info"]


def test_counting_command_and_env(tmp_path: Path) -> None:
    tools = Tools(
        "/usr/bin/valgrind", "/usr/bin/setarch", tmp_path / "shim.so", "valgrind-3.19.0", "/j.so"
    )
    cmd = runner.counting_command(
        tools, "router", tmp_path, quick=True, live=False, pytest_args=["-k", "x"]
    )
    assert cmd[:3] == ["/usr/bin/setarch", "-R", "/usr/bin/valgrind"]
    assert (
        "--tool=callgrind" in cmd and "--instr-atstart=no" in cmd and "--collect-atstart=no" in cmd
    )
    assert f"--callgrind-out-file={tmp_path / 'callgrind.%p'}" in cmd
    assert f"--instructions={tmp_path}" in cmd and "--quick" in cmd and "--live" not in cmd
    assert str(REPO / "bench" / "suites" / "test_router.py") in cmd
    assert cmd[-2:] == ["-k", "x"]
    # pytest-benchmark's commit lookup is answered without git/hg (decision 0620)
    at = cmd.index("bench.instructions._no_vcs")
    assert cmd[at - 1] == "-p"
    staged = runner.counting_command(
        tools, "router", tmp_path, quick=False, live=True, tree=tmp_path, basetemp=tmp_path / "t"
    )
    assert str(tmp_path / "bench" / "suites" / "test_router.py") in staged
    assert f"--basetemp={tmp_path / 't'}" in staged and "--live" in staged

    base = {
        "PYTHONHASHSEED": "random",
        "PYTEST_XDIST_WORKER": "gw0",
        "LD_PRELOAD": "x",
        "PATH": "/bin",
        "LC_ALL": "C",
        "SAMPLEMIND_REDIS_URL": "redis://x",
        "PWD": "/somewhere/else",
        "OLDPWD": "/x",
        "_": "/usr/bin/samplemind-bench",
        "GITHUB_SHA": "abc",
        "PYTHONPATH": os.pathsep.join([str(REPO), "/extra"]),
    }
    env = runner.counting_env(tools, base)
    assert env == {
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PATH": "/bin",
        "LC_ALL": "C",
        "SAMPLEMIND_REDIS_URL": "redis://x",
        "LD_PRELOAD": "/j.so",
        "MALLOC_CONF": runner.JEMALLOC_CONF,
        "OPENBLAS_NUM_THREADS": "1",
    }
    other = tmp_path / "other-checkout"  # e.g. the candidate's, on the baseline side's path
    (other / "bench" / "instructions").mkdir(parents=True)
    (other / "bench" / "instructions" / "runner.py").touch()
    base["PYTHONPATH"] = os.pathsep.join([str(REPO), str(other), "/extra"])
    stage_env = runner.counting_env(tools, base, tree=tmp_path)
    # the stage replaces every checkout of the project on PYTHONPATH; other entries stay
    assert stage_env["PYTHONPATH"] == os.pathsep.join([str(tmp_path), "/extra"])
    assert stage_env["PWD"] == str(tmp_path)


def test_no_vcs_answers_the_commit_lookup_without_a_subprocess(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pytest_benchmark.utils as utils

    from bench.instructions import _no_vcs

    monkeypatch.setattr(utils, "get_commit_info", utils.get_commit_info)  # restored afterwards

    def no_subprocess(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"a subprocess was started: {args}")

    monkeypatch.setattr(subprocess.Popen, "__init__", no_subprocess)
    _no_vcs.answer_without_vcs(utils)
    tag = utils.get_tag()  # what pytest-benchmark's pytest_addoption calls
    assert tag.startswith("unversioned_") and len(tag) == len("unversioned_20261206_231500")
    assert utils.get_commit_info("p") == {
        "id": "unversioned",
        "time": None,
        "author_time": None,
        "dirty": False,
        "project": "p",
        "branch": "(unknown)",
    }


AUDIT_PLUGIN = textwrap.dedent(
    """
    import os, sys

    def _audit(event, args):
        if event == "subprocess.Popen":
            with open(os.environ["POPEN_LOG"], "a") as fh:
                fh.write(str(args[0]) + "\\n")

    sys.addaudithook(_audit)
    """
)


@pytest.mark.slow
def test_counting_pytest_starts_no_vcs_subprocess(tmp_path: Path) -> None:
    """The counting process's pytest, with the counting command's plugins, asks neither git nor
    hg (a failing exec's error pipe is read in a scheduling-dependent number of parts: decision
    0620); without ``-p bench.instructions._no_vcs`` it asks both (the check can fail)."""
    (tmp_path / "popen_audit.py").write_text(AUDIT_PLUGIN)
    suite = str(REPO / "bench" / "suites" / "test_hashing.py")
    logs = {}
    for name, args in (("counting", runner.EXTRA_PYTEST_ARGS), ("without", ("-p", "no:xdist"))):
        log = tmp_path / f"{name}.txt"
        log.touch()
        env = dict(os.environ, POPEN_LOG=str(log))
        env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(REPO)])
        cmd = [sys.executable, "-m", "pytest", suite, *args, "-p", "popen_audit"]
        cmd += ["-p", "no:cacheprovider", "-q", "-k", "64B-xxh3", f"--basetemp={tmp_path / name}"]
        proc = subprocess.run(
            cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        logs[name] = log.read_text().split()
    assert not {"git", "hg"} & set(logs["counting"]), logs
    assert "git" in logs["without"], logs


def test_counting_stage_is_one_path_for_every_checkout(tmp_path: Path) -> None:
    """Two checkouts at paths of other lengths are counted from the same path, one at a time."""
    short, long_ = tmp_path / "a", tmp_path / ("b" * 40)
    for repo in (short, long_):
        (repo / "bench" / "__pycache__").mkdir(parents=True)
        (repo / "bench" / "x.py").write_text(f"WHERE = {str(repo)!r}\n")
        (repo / "bench" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"stale")
        (repo / ".benchmarks").mkdir()
        (repo / "pytest.ini").write_text("[pytest]\n")
        (repo / "tests").mkdir()  # not needed by a count: not copied
    root = tmp_path / "stage"
    seen = []
    for repo in (short, long_):
        with runner.counting_stage(repo, root) as stage:
            assert stage.src == root / "src" and stage.out == root / "out"
            assert (stage.src / "bench" / "x.py").read_text() == f"WHERE = {str(repo)!r}\n"
            assert (stage.src / "pytest.ini").is_file()
            assert not (stage.src / "bench" / "__pycache__").exists()
            assert not (stage.src / "tests").exists()
            assert (stage.src / ".benchmarks").is_dir()  # made before the count, never by it
            # the stage is held: another count would wait
            with (tmp_path / "stage.lock").open("a") as other, pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            seen.append(stage.src)
        assert not root.exists()  # removed afterwards
    assert seen[0] == seen[1]
    (root / "src").mkdir(parents=True)
    (root / "src" / "left-by-a-killed-count").write_text("x")
    with pytest.raises(RuntimeError), runner.counting_stage(short, root) as stage:
        assert not (stage.src / "left-by-a-killed-count").exists()
        raise RuntimeError("count failed")
    assert not root.exists()  # also when the count fails
    with (tmp_path / "stage.lock").open("a") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released


def test_stage_problem_names_what_is_in_the_way(tmp_path: Path) -> None:
    root = tmp_path / "stage"
    assert runner.stage_problem(root) is None  # nothing there yet: fine
    root.mkdir()
    assert runner.stage_problem(root) is None  # a stage left by a killed count: replaced
    root.rmdir()
    root.write_text("x")
    assert (
        runner.stage_problem(root)
        == f"the counting stage {root} exists and is not a folder: remove it"
    )
    root.unlink()
    (tmp_path / "stage.lock").unlink()  # made by the checks above: the lock is ours
    (tmp_path / "stage.lock").mkdir()
    problem = runner.stage_problem(root)
    assert problem is not None and problem.startswith(
        f"cannot open the counting stage's lock {tmp_path / 'stage.lock'}"
    )


def test_counting_stage_waits_for_another_count(tmp_path: Path) -> None:
    """A second count (another process) waits for the stage, and says so once."""
    root = tmp_path / "stage"
    (tmp_path / "repo" / "bench").mkdir(parents=True)
    holder = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from bench.instructions import runner
        with runner.counting_stage(Path({str(tmp_path / "repo")!r}), Path({str(root)!r})):
            print("held", flush=True)
            sys.stdin.readline()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", holder],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "held"
        waits: list[Path] = []

        def release(lock: Path) -> None:
            waits.append(lock)
            proc.stdin.write("\n")  # let the holder finish; then the lock is ours
            proc.stdin.flush()

        with runner.counting_stage(tmp_path / "repo", root, wait=release) as stage:
            assert stage.src.is_dir()
        assert waits == [tmp_path / "stage.lock"]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)


# -- the decision -----------------------------------------------------------------------------


def test_aa_spread() -> None:
    assert aa_spread([1000.0]) == 0.0
    assert aa_spread([1000, 1002, 1001]) == pytest.approx(0.002 / 1.001)
    with pytest.raises(ValueError):
        aa_spread([])
    with pytest.raises(ValueError):
        aa_spread([0.0, 1.0])


@pytest.mark.parametrize(
    ("base", "cand", "spread", "verdict"),
    [
        ([1000.0], [1000.0], 0.0, "unchanged"),
        ([1000.0], [1009.0], 0.0, "unchanged"),  # below the 1 % tolerance
        ([1000.0], [1010.0], 0.0, "regression"),  # exactly 1 %: the tolerance is what counts
        ([1000.0], [990.0], 0.0, "improvement"),
        ([1000.0], [1011.0], 0.0, "regression"),
        ([1000.0], [1011.0], 0.001, "regression"),  # beyond 2 x 0.1 % too
        ([1000.0], [1011.0], 0.006, "inconclusive"),  # beyond the tolerance, within 2 x spread
        ([1000.0], [980.0], 0.001, "improvement"),
        ([1000.0, 1000.0, 1000.0], [1011.0, 1030.0, 1012.0], 0.0, "inconclusive"),  # noisy side
    ],
)
def test_decide(base: list[float], cand: list[float], spread: float, verdict: str) -> None:
    assert decide(base, cand, spread=spread).verdict == verdict


def test_decide_margin_and_errors() -> None:
    v = decide([1000.0], [1011.0], spread=0.001, tolerance=0.01)
    assert v.change == pytest.approx(0.011) and v.margin == pytest.approx(0.002)
    assert decide([1000.0], [1006.0], spread=0.0, tolerance=0.005).verdict == "regression"
    with pytest.raises(ValueError):
        decide([], [1.0], spread=0.0)
    with pytest.raises(ValueError):
        decide([1.0], [1.0], spread=-0.1)
    with pytest.raises(ValueError):
        decide([1.0], [1.0], spread=0.0, tolerance=0.0)


def test_load_spreads(tmp_path: Path) -> None:
    path = tmp_path / "aa.json"
    path.write_text(
        json.dumps(
            {
                "format": "samplemind-bench-instructions-aa",
                "benchmarks": {"b::t[x]": {"counts": [1.0, 1.0], "median": 1.0, "spread": 0.0}},
            }
        )
    )
    assert load_spreads(path) == {"b::t[x]": 0.0}
    path.write_text("{}")
    with pytest.raises(ValueError, match="not an instruction A/A"):
        load_spreads(path)


# -- missing tools ------------------------------------------------------------------------------


def test_envelope_reads_the_wall_clock_seam_per_encode(monkeypatch: pytest.MonkeyPatch) -> None:
    from samplemind_core import ChatResponse
    from samplemind_core._cache import envelope

    response = ChatResponse(text="hi", provider="ollama", model="m")
    monkeypatch.setattr(envelope, "wall_clock", lambda: 123.5)
    first = envelope.encode(response, 1, "json")
    assert envelope.decode(first)[0].metadata["cache"]["created_at"] == 123.5
    monkeypatch.setattr(envelope, "wall_clock", lambda: 2_000_000_000.25)
    second = envelope.encode(response, 1, "msgpack")
    assert envelope.decode(second)[0].metadata["cache"]["created_at"] == 2_000_000_000.25


async def test_counting_process_freezes_the_wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``_deterministic`` does to time: the cache's envelope and fakeredis see a constant."""
    import time

    import fakeredis

    from bench.instructions import plugin
    from samplemind_core import ChatResponse
    from samplemind_core._cache import envelope

    # let monkeypatch restore both after the test
    monkeypatch.setattr(time, "time", time.time)
    monkeypatch.setattr(envelope, "wall_clock", envelope.wall_clock)
    plugin._freeze_wall_clock()
    assert time.time() == plugin.FROZEN_WALL_CLOCK
    response = ChatResponse(text="hi", provider="ollama", model="m")
    raws = {envelope.encode(response, 1, "json") for _ in range(3)}
    assert len(raws) == 1
    assert (
        envelope.decode(raws.pop())[0].metadata["cache"]["created_at"] == plugin.FROZEN_WALL_CLOCK
    )
    client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    seconds, _micros = await client.time()
    assert seconds == int(plugin.FROZEN_WALL_CLOCK)
    await client.set("k", b"v", px=60_000)
    assert await client.get("k") == b"v"
    assert 0 < await client.pttl("k") <= 60_000
    await client.aclose()


def _fake_compiler(tmp_path: Path, stderr: str) -> Path:
    cc = tmp_path / "fakecc"
    cc.write_text(f"#!/bin/sh\necho '{stderr}' >&2\nexit 1\n")
    cc.chmod(cc.stat().st_mode | stat.S_IXUSR)
    return cc


def test_missing_jemalloc_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(_tools, "_LIB_DIRS", (str(tmp_path),))
    with pytest.raises(ToolMissing, match=r"libjemalloc\.so\.2 not found") as info:
        _tools.find_jemalloc()
    assert _tools.JEMALLOC_HINT in str(info.value)


def test_missing_valgrind_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissing, match="valgrind not found on PATH") as info:
        find_tools()
    assert APT_HINT in str(info.value)


def test_missing_compiler_and_header(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CC", "no-such-cc")
    with pytest.raises(ToolMissing, match="no C compiler"):
        build_shim(tmp_path / "cache")
    cc = _fake_compiler(tmp_path, "shim.c:2:10: fatal error: valgrind/callgrind.h: No such file")
    monkeypatch.setenv("CC", str(cc))
    with pytest.raises(ToolMissing, match=r"header valgrind/callgrind\.h is missing"):
        build_shim(tmp_path / "cache")
    cc = _fake_compiler(tmp_path, "internal compiler error")
    with pytest.raises(ToolMissing, match="could not build the callgrind shim"):
        build_shim(tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*.so"))  # nothing half-built is left


def test_cli_exits_2_without_valgrind(tmp_path: Path) -> None:
    """The real console script, valgrind hidden from PATH: exit 2, the apt hint, nothing run."""
    if not BENCH_SCRIPT.exists():
        pytest.skip(f"{BENCH_SCRIPT} not installed")
    out = tmp_path / "results"
    proc = subprocess.run(
        [
            str(BENCH_SCRIPT),
            "run",
            "--instructions",
            "--quick",
            "--suite",
            "router",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PATH": str(tmp_path)},
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert (
        "valgrind not found on PATH" in proc.stderr and "apt-get install -y valgrind" in proc.stderr
    )
    assert not out.exists()


@pytest.mark.valgrind
def test_cli_exits_2_when_the_stage_path_is_taken(tools: Tools, tmp_path: Path) -> None:
    """Something that is not a stage at the stage's path: exit 2 naming it, left untouched."""
    taken = tmp_path / f"samplemind-count-{os.getuid()}"
    taken.write_text("not ours")
    out = tmp_path / "results"
    proc = subprocess.run(
        [str(BENCH_SCRIPT), "run", "--instructions", "--quick", "--suite", "router", "--out", out],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"the counting stage {taken} exists and is not a folder" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert taken.read_text() == "not ours" and not out.exists()


def test_run_help_lists_instructions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    assert "--instructions" in capsys.readouterr().out


# -- under valgrind ---------------------------------------------------------------------------

COUNT_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path
    from bench.instructions._counter import Counter
    from bench.instructions._tools import load_shim

    shim = load_shim(Path(sys.argv[2]))
    assert shim.running_on_valgrind, "not under valgrind"
    counter = Counter(shim, Path(sys.argv[1]))

    def work(n):
        return sum(i * i for i in range(n))

    async def awork(n):
        return work(n)

    once = counter.count_sync(work, (200,), {}, 50)[0]
    twice = counter.count_sync(work, (400,), {}, 50)[0]
    setup = counter.count_async(awork, setup=lambda: (200,), concurrency=1, calls=20)
    per_call = asyncio.run(setup)[0]
    print(json.dumps([once.per_call, twice.per_call, per_call.per_call, once.overhead]))
    """
)


def _counted(tools: Tools, tmp_path: Path, name: str) -> list[float]:
    out = tmp_path / name
    out.mkdir()
    cmd = [
        tools.setarch,
        "-R",
        tools.valgrind,
        *runner.CALLGRIND_ARGS,
        f"--callgrind-out-file={out / 'callgrind.%p'}",
        f"--log-file={out / 'valgrind.log'}",
        sys.executable,
        "-c",
        COUNT_SCRIPT,
        str(out),
        str(tools.shim),
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, cwd=REPO, env=runner.counting_env(tools)
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not list(out.glob("callgrind.*.*")), "dumps are removed once read"
    values: list[float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return values


@pytest.mark.valgrind
@pytest.mark.slow
def test_counts_are_deterministic_and_scale(tools: Tools, tmp_path: Path) -> None:
    first = _counted(tools, tmp_path, "a")
    second = _counted(tools, tmp_path, "b")
    assert first == second  # two fresh processes, the same counts
    once, twice, with_setup, overhead = first
    assert 1.8 < twice / once < 2.2  # twice the loop, about twice the instructions
    assert with_setup == pytest.approx(once, rel=0.05)  # per-call regions: the setup is not counted
    assert overhead > 0


@pytest.mark.valgrind
@pytest.mark.slow
def test_plugin_refuses_outside_valgrind(tools: Tools, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(REPO / "bench" / "suites" / "test_router.py"),
            "-p",
            "no:xdist",
            "-p",
            "no:cacheprovider",
            f"--instructions={tmp_path}",
            f"--instructions-shim={tools.shim}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=cli.timed_run_env(),
    )
    assert proc.returncode == 4, proc.stdout[-2000:]  # pytest's usage error
    assert "counts only inside valgrind --tool=callgrind" in proc.stderr


@pytest.mark.valgrind
@pytest.mark.slow
def test_run_instructions_end_to_end(tools: Tools, counted_headlines: Path) -> None:
    """``samplemind-bench run --instructions``: counts land beside the wall-time stats
    (the session's shared counted run: ``tests/conftest.py``)."""
    out = counted_headlines
    data = read_suite_document(out / "router.json.gz")  # compressed once counted
    by_name = {b["name"]: b for b in data["benchmarks"]}
    healthy = by_name["test_route[chat-speed-healthy]"]
    open_ = by_name["test_route[chat-speed-one_open]"]
    for bench in (healthy, open_):
        info = bench["extra_info"]
        assert info["instructions"] > 100 and info["instructions_calls"] == 400
        assert info["instructions_tool"].startswith("valgrind")
        assert bench["stats"]["median"] > 0 and bench["stats"]["data"]  # wall time kept
    # the slow path (an open breaker reorders the chain) costs more than the healthy one
    assert open_["extra_info"]["instructions"] > healthy["extra_info"]["instructions"]
    fallback = by_name["test_fallback[mock-fail0]"]  # I/O-bound: wall time only
    assert "instructions" not in fallback["extra_info"]
    manifest = json.loads((out / "manifest.json").read_text())
    (router_run,) = [r for r in manifest["runs"] if r["suite"] == "router"]
    assert router_run["exit_code"] == 0
    assert json.loads((out / "instructions" / "router" / "counts.json").read_text())["counts"]


@pytest.mark.valgrind
@pytest.mark.slow
def test_counts_do_not_depend_on_the_checkout_path(
    tools: Tools, counted_pair: CountedPair, tmp_path: Path
) -> None:
    """The same code in two checkouts at paths of other lengths counts the same, to the
    instruction, through ``samplemind-bench run --instructions`` (a count once moved by
    a few instructions per call with the length of the checkout's path). The checkouts
    are the session's shared A/A pair (``tests/conftest.py``): the baseline's git worktree
    of ``gate --baseline-ref`` and this checkout."""
    from bench.harness.run import timed_run_env
    from tests.conftest import PAIR_PYTEST_ARGS, counted_run

    def count(tree: Path, out: Path) -> int:
        data = read_suite_document(out / "router.json.gz")
        log = (out / "logs" / "router-instructions.txt").read_text()
        assert f"(a copy of {tree})" in log  # this checkout's harness counted
        (bench,) = [b for b in data["benchmarks"] if b["name"] == "test_route[chat-speed-healthy]"]
        return int(bench["extra_info"]["instructions_total"])

    trees = counted_pair.trees
    assert len(str(trees[0])) != len(str(trees[1])), trees
    counts = [{count(trees[0], counted_pair.a)}, {count(trees[1], counted_pair.b)}]
    if not counts[0] & counts[1]:
        # Fresh processes of one checkout can still differ by a few hundred instructions
        # in a million (record 0620's residual spread: 1,291,112 vs 1,291,912 seen once in
        # CI). A count that depends on the checkout's path differs in every pair, so each
        # checkout counts once more (the gate's worktree, gone by now, is checked out again
        # at its path) and one count of each must then agree exactly.
        for i, tree in enumerate(trees):
            env = {**timed_run_env(), "PYTHONPATH": str(tree), "PWD": str(tree)}
            again = tmp_path / f"again-{i}"
            with _checked_out(tree, counted_pair.ref):
                counted_run(again, ["router"], PAIR_PYTEST_ARGS, tree, env)
            counts[i].add(count(tree, again))
    assert counts[0] & counts[1], counts


@contextlib.contextmanager
def _checked_out(tree: Path, ref: str) -> Iterator[None]:
    """``tree`` as it is when it exists (this checkout); else a detached git worktree of
    ``ref`` at ``tree`` for the duration."""
    if tree.exists():
        yield
        return
    git = ["git", "-C", str(REPO), "worktree"]
    subprocess.run([*git, "add", "--detach", str(tree), ref], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run([*git, "remove", "--force", str(tree)], check=False, capture_output=True)
        subprocess.run([*git, "prune"], check=False, capture_output=True)


# -- the report's pieces ------------------------------------------------------------------------


def test_summary_rows_headlines_and_markdown(tmp_path: Path) -> None:
    from bench.instructions import summary
    from bench.results import SuiteRun, write_manifest

    def bench(name: str, suite: str, variant: str, instructions: float | None) -> dict[str, object]:
        info: dict[str, object] = {"suite": suite, "variant": variant}
        if instructions is not None:
            info["instructions"] = instructions
        return {
            "name": name,
            "group": f"{suite}/x",
            "stats": {"data": [2e-6, 1e-6, 3e-6]},
            "extra_info": info,
        }

    (tmp_path / "cache.json").write_text(
        json.dumps(
            {
                "benchmarks": [
                    bench("test_cache_op[hit]", "cache", "hit-msgpack-l1_off", 420_000.0),
                    bench("test_cache_op[redis]", "cache", "hit-msgpack-l1_off-redis", None),
                ]
            }
        )
    )
    (tmp_path / "router.json").write_text(
        json.dumps({"benchmarks": [bench("test_route[c]", "router", "chat/speed/healthy", 3400.0)]})
    )
    runs = [SuiteRun("cache", "cache.json", 0, 1.0), SuiteRun("router", "router.json", 0, 1.0)]
    write_manifest(
        tmp_path, mode="mocked", quick=True, suites=["cache", "router"], runs=runs, repo=tmp_path
    )
    rows = summary.instruction_rows(tmp_path)
    assert [r["name"] for r in rows] == ["test_cache_op[hit]", "test_route[c]"]
    assert rows[0]["median_s"] == 2e-6
    figures = summary.headline_figures(rows)
    assert figures["instructions per cache hit (fakeredis, msgpack, L1 off)"] == 420_000.0
    assert figures["instructions per routing decision (chat/speed, healthy)"] == 3400.0
    assert figures["instructions per pipeline request (client-side CPU, mock)"] is None
    text = summary.markdown(rows)
    assert "| test_route[c] | 3,400.0 | 2.00 µs | 1.70 |" in text
    assert "per pipeline request (client-side CPU, mock): not counted" in text


def test_inject_work_patches_the_named_function_only(tmp_path: Path) -> None:
    import importlib.util

    from studies._inject import inject_work
    from studies.instructions_study import TARGETS

    (tmp_path / "m.py").write_text(
        textwrap.dedent(
            '''
            class C:
                async def get(self, x):
                    """Doc."""
                    return x + 1

            def f(
                x,
            ):
                return x * 2
            '''
        )
    )
    with pytest.raises(ValueError, match="iterations"):
        inject_work(tmp_path, "m.py", "C.get", 1000)  # would allocate ints
    inject_work(tmp_path, "m.py", "C.get", 200)
    inject_work(tmp_path, "m.py", "f", 0)
    text = (tmp_path / "m.py").read_text()
    assert text.count("in range(1000)") == 0
    assert text.count("for _smb_study_i in range(200):") == 1
    assert text.count("for _smb_study_i in range(0):") == 1
    spec = importlib.util.spec_from_file_location("m_injected", tmp_path / "m.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.f(3) == 6 and mod.C.get.__doc__ == "Doc."
    import asyncio

    assert asyncio.run(mod.C().get(1)) == 2
    with pytest.raises(ValueError, match=r"has no C\.nope"):
        inject_work(tmp_path, "m.py", "C.nope", 1)
    with pytest.raises(ValueError, match="iterations"):
        inject_work(tmp_path, "m.py", "f", -1)
    repo = Path(__file__).resolve().parents[1]
    for target in TARGETS:  # every target names a function that exists in this checkout
        copy = tmp_path / "repo" / target.module
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text((repo / target.module).read_text())
        inject_work(tmp_path / "repo", target.module, target.function, 10)
        compile(copy.read_text(), str(copy), "exec")


def test_benchmark_storage_exists_before_counting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(runner, "REPO", tmp_path)
    runner.ensure_benchmark_storage()
    runner.ensure_benchmark_storage()  # idempotent
    assert (tmp_path / ".benchmarks").is_dir()


@pytest.mark.valgrind
@pytest.mark.slow
def test_report_shows_counts_beside_time_from_a_real_run(
    tools: Tools, counted_headlines: Path, tmp_path: Path
) -> None:
    """A real small ``run --instructions`` (the session's shared one, ``tests/conftest.py``),
    then ``report``: chart, table, headline figures."""
    results, out = counted_headlines, tmp_path / "report"
    proc = run_main(cli.main, ["report", str(results), "--out", str(out)], cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    counts = {}
    for suite in ("cache", "router", "pipeline"):
        for b in read_suite_document(results / f"{suite}.json.gz")["benchmarks"]:
            if b["name"] == "test_fallback[mock-fail0]":
                continue  # in the shared run for the end-to-end test: I/O-bound, not counted
            counts[b["name"]] = b["extra_info"]["instructions"]
    expected = {
        "instructions per cache hit (fakeredis, msgpack, L1 off)": "test_cache_op[1KB-fakeredis-"
        "hit-msgpack-l1_off]",
        "instructions per L1 cache hit (msgpack)": "test_cache_op[1KB-fakeredis-hit-msgpack-l1_on]",
        "instructions per routing decision (chat/speed, healthy)": "test_route[chat-speed-healthy]",
        "instructions per pipeline request (client-side CPU, mock)": "test_request_cpu",
    }
    md = (out / "summary.md").read_text()
    page = (out / "index.html").read_text()
    assert "### Instructions per call (callgrind)" in md
    assert "<h2>Instructions per call (callgrind)</h2>" in page
    assert (out / "charts" / "instructions.png").stat().st_size > 0
    assert 'id="instructions"' in page
    for label, name in expected.items():
        figure = f"{counts[name]:,.0f}"
        assert f"- {label}: {figure}" in md
        assert f"<li><strong>{label}</strong>: {figure}</li>" in page
        assert f"| {name} | {counts[name]:,.1f} |" in md  # the table: count beside time
    assert "not counted" not in md
