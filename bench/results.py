"""The results formats, defined once: every writer and reader of them goes through this module.

Results folder (``samplemind-bench run`` writes it; ``gate``, ``headline``, ``report``,
``history add`` and the instruction summary read it): ``manifest.json`` plus one
pytest-benchmark JSON file per suite, gzip-compressed since version 2 (``<suite>.json.gz``,
compact JSON, every raw sample kept; :func:`compress_suite_file`), plain ``<suite>.json`` in
version 1 folders, which are still read::

    {"format": "samplemind-bench-results", "version": 2, "created": ISO-8601,
     "mode": "mocked" | "live", "quick": bool, "suites": [...], "files": [...],
     "complete": bool,                                            # since 2026-12-06
     "environment": {"cpu", "cores", "python", "platform", "packages"},
     "commit": {"id", "dirty"},
     "runs": [{"suite", "file", "exit_code", "elapsed_s", "status",
               "conditions"}]}                                    # extension

``runs`` is an extension: per suite, pytest's exit code and the wall time, so
a consumer can tell a failed or partial suite from a complete one. Since 2026-12-06 each
entry also has ``"status"`` (``"completed"``: pytest ran to its end and wrote the suite's
file, its tests passed or not; ``"interrupted"``: stopped by Ctrl-C or a signal;
``"crashed"``: pytest ended otherwise or wrote no file), and the manifest has
``"complete"``: ``false`` while the run is going (the manifest is rewritten after each suite)
and after an interrupted run, ``true`` only once every suite of ``suites`` has run.
Since 2026-12-06 (later the same day) a suite's entry may also carry ``"conditions"``: load
average before and after, CPU time against wall time, steal, CPU frequency during the suite
(:mod:`bench.conditions`, which also reads them back; older entries have none: "environment
not recorded").

Completeness is judged in ONE place, :func:`incomplete_suites` (and :func:`require_complete`,
which every reader calls: ``report``, ``gate``, ``history add``, ``headline``). Folders written
before these fields existed are judged by the same rule from what they have: a suite of
``suites`` without an entry in ``runs`` (the run stopped before or during it) or with a
pytest exit code other than 0 (passed) or 1 (tests failed) is incomplete; a manifest without
``runs`` at all (written by hand or by other tools) cannot say, and is taken as complete.
:func:`check_manifest` is the one validation of a manifest (format, version, ``files`` names
inside the folder, ``environment`` an object); :func:`read_manifest` reads and checks one.

Profile (``samplemind-bench profile`` writes ``DIR/profile.json``; ``reports`` reads it):
``{"format": "samplemind-profile", "version": 1, ...}``, checked by :func:`check_profile`.

:func:`benchmark_key` is a benchmark's identity across runs (its pytest node id, with the suite
file named as in every results folder written so far: ``bench/test_<suite>.py``).

**The one reader** (since 2026-12-06): :func:`read_folder` reads a folder (manifest checks,
completeness, every listed suite file) and :func:`read_suite_file` one pytest-benchmark file,
plain or gzip (told apart by content), into typed records: :class:`ResultsFolder`,
:class:`SuiteFile`, :class:`Benchmark` (suite, name, key, group, params, raw samples, timer,
``extra_info``, pytest-benchmark's summary). One set of checks, one error: anything missing,
unreadable, empty, truncated or corrupt (gzip or JSON), foreign, of an unsupported version, a
benchmark without a name, ``stats`` or raw samples, a sample that is not a finite number >= 0,
``extra_info``/``params`` that is not an object, one benchmark twice, raises
:class:`ResultsFormatError` ``"{file}: {what is wrong}"``; every command prints that message and
exits 2. The headline figures computed from these records live in :mod:`bench.figures`.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import platform
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from bench import vcs
from samplemind_core import SampleMindError

__all__ = [
    "COMPRESSED_SUFFIX",
    "FORMAT",
    "INTERRUPTED_EXIT",
    "PROFILE_FORMAT",
    "PROFILE_VERSION",
    "SUPPORTED_VERSIONS",
    "VERSION",
    "Benchmark",
    "IncompleteResultsError",
    "ResultsFolder",
    "ResultsFormatError",
    "SuiteFile",
    "SuiteRun",
    "benchmark_key",
    "check_benchmark",
    "check_manifest",
    "check_profile",
    "commit_info",
    "compress_suite_file",
    "environment",
    "finite_number",
    "folder_size",
    "incomplete_suites",
    "read_folder",
    "read_manifest",
    "read_suite_document",
    "read_suite_file",
    "require_complete",
    "suite_name",
    "suite_status",
    "write_manifest",
]

FORMAT: Final = "samplemind-bench-results"
VERSION: Final = 2
"""The version :func:`write_manifest` writes: 2 since 2026-12-06 (suite files gzip-compressed,
``<suite>.json.gz``); version 1 folders (plain ``<suite>.json``) are read as before."""
SUPPORTED_VERSIONS: Final = frozenset({1, 2})
"""The versions every reader accepts."""

COMPRESSED_SUFFIX: Final = ".json.gz"
"""A suite file written by ``samplemind-bench run`` since version 2: compact pytest-benchmark
JSON, gzip-compressed (``zcat FILE`` shows it). Every reader reads both kinds by content."""
_GZIP_MAGIC: Final = b"\x1f\x8b"

PROFILE_FORMAT: Final = "samplemind-profile"
PROFILE_VERSION: Final = 1

_SUITE_DIR: Final = "bench/suites/"
_KEY_DIR: Final = "bench/"


class ResultsFormatError(SampleMindError, ValueError):
    """A results folder, suite file or profile that cannot be read: missing, corrupt, truncated,
    foreign or of an unsupported version. ``path`` is the offending file (or folder) and
    ``problem`` what is wrong with it; ``str()`` is ``"{path}: {problem}"``.

    The one error of every reader of results (``report``, ``gate``, ``headline``, ``history
    add``, the instruction summary); part of the project's exception tree (a
    :class:`~samplemind_core.SampleMindError`) and a :class:`ValueError`.
    """

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class IncompleteResultsError(ResultsFormatError):
    """A results folder whose run did not finish; ``incomplete`` maps suite -> why."""

    def __init__(self, path: Path | str, incomplete: dict[str, str]) -> None:
        self.incomplete = dict(incomplete)
        shown = ", ".join(f"{suite} ({why})" for suite, why in incomplete.items())
        folder = Path(path).parent if Path(path).name == "manifest.json" else Path(path)
        super().__init__(
            path,
            f"incomplete results folder {folder}: suite(s) {shown}; its figures are not "
            "judged. Run samplemind-bench run again (the suites that completed are in "
            "their files)",
        )


INTERRUPTED_EXIT: Final = 130
"""The exit status of ``samplemind-bench run`` stopped by Ctrl-C (128 + SIGINT)."""
_PYTEST_RAN_TO_END: Final = (0, 1, 5)  # passed, tests failed, none collected (2: interrupted)


def suite_status(exit_code: int, file: str | None, *, interrupted: bool = False) -> str:
    """``"completed"``, ``"interrupted"`` or ``"crashed"`` for one suite's pytest run."""
    if interrupted or exit_code == 2 or exit_code < 0:  # pytest's own Ctrl-C code; a signal
        return "interrupted"
    if exit_code in _PYTEST_RAN_TO_END and file is not None:
        return "completed"
    return "crashed"


def incomplete_suites(manifest: dict[str, Any]) -> dict[str, str]:
    """The suites of ``manifest`` that did not complete, each with why (empty: complete).

    The one completeness rule (see the module docstring): a suite of ``suites`` with no
    entry in ``runs`` is "not run"; an entry whose ``status`` (or, in older folders, pytest
    exit code) says it did not run to its end is "interrupted" or "crashed"; ``"complete":
    false`` with every suite done (stopped after the last suite) is reported as "run".
    """
    runs = manifest.get("runs")
    if not isinstance(runs, list):
        return {} if manifest.get("complete") is not False else {"run": "did not finish"}
    by_suite = {r.get("suite"): r for r in runs if isinstance(r, dict)}
    out: dict[str, str] = {}
    for suite in manifest.get("suites") or []:
        entry = by_suite.get(suite)
        if entry is None:
            out[str(suite)] = "not run"
            continue
        status = entry.get("status")
        if status is None:  # written before "status" existed
            code = entry.get("exit_code")
            file = entry.get("file")
            status = (
                suite_status(code, file if isinstance(file, str) else None)
                if type(code) is int
                else "crashed"
            )
        if status != "completed":
            out[str(suite)] = str(status)
    if not out and manifest.get("complete") is False:
        out["run"] = "did not finish"
    return out


def require_complete(manifest: dict[str, Any], path: Path) -> dict[str, Any]:
    """``manifest`` if its run finished; else :class:`IncompleteResultsError` naming the
    folder of ``path`` and each incomplete suite. Every reader of results folders calls it."""
    missing = incomplete_suites(manifest)
    if missing:
        raise IncompleteResultsError(path, missing)
    return manifest


def finite_number(value: Any) -> float | None:
    """``value`` as a float when it is a finite JSON number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def benchmark_key(fullname: str) -> str:
    """A benchmark's identity across runs: ``bench/suites/test_x.py::t[p]`` and
    ``bench/test_x.py::t[p]`` (results written before the suites moved) are one benchmark.

    >>> benchmark_key("bench/suites/test_hashing.py::test_hash[blake3-64]")
    'bench/test_hashing.py::test_hash[blake3-64]'
    """
    if fullname.startswith(_SUITE_DIR):
        return _KEY_DIR + fullname.removeprefix(_SUITE_DIR)
    return fullname


PACKAGES: Final = (
    "samplemind-core",
    "pytest",
    "pytest-benchmark",
    "pytest-asyncio",
    "httpx",
    "httpx-aiohttp",
    "aiohttp",
    "h2",
    "redis",
    "fakeredis",
    "blake3",
    "xxhash",
    "orjson",
    "msgpack",
    "respx",
    "hypercorn",
)


@dataclass(frozen=True, slots=True)
class SuiteRun:
    """One suite's pytest run."""

    suite: str
    file: str | None
    exit_code: int
    elapsed_s: float
    status: str = ""
    """``"completed"``, ``"interrupted"`` or ``"crashed"`` (empty: from the exit code)."""
    conditions: dict[str, Any] | None = None
    """What the machine was doing during the suite (:mod:`bench.conditions`); None: not recorded."""

    @property
    def effective_status(self) -> str:
        return self.status or suite_status(self.exit_code, self.file)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """CPU, cores, Python, platform and the versions of the packages that shape the figures."""
    from importlib import metadata  # here, not at import: every reader imports this module

    packages: dict[str, str] = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "cpu": _cpu_name(),
        "cores": os.cpu_count() or 1,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": packages,
    }


def commit_info(repo: Path) -> dict[str, Any]:
    """``{"id": sha, "dirty": bool}``; both ``None`` outside a git checkout."""

    try:
        sha = vcs.git(repo, "rev-parse", "HEAD", timeout=10)
        dirty = bool(vcs.git(repo, "status", "--porcelain", "--untracked-files=no", timeout=10))
    except vcs.GitError:
        return {"id": None, "dirty": None}
    return {"id": sha, "dirty": dirty}


def write_manifest(
    out: Path,
    *,
    mode: str,
    quick: bool,
    suites: list[str],
    runs: list[SuiteRun],
    repo: Path,
    created: datetime | None = None,
    complete: bool | None = None,
) -> dict[str, Any]:
    """Write ``out/manifest.json`` and return it.

    ``complete`` (default: every suite of ``suites`` has completed) is ``False`` while a run
    is going; only a suite that completed has its file listed in ``files``.
    """
    done = {r.suite for r in runs if r.effective_status == "completed"}
    if complete is None:
        complete = all(s in done for s in suites)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "created": (created or datetime.now(UTC)).isoformat(),
        "mode": mode,
        "quick": quick,
        "suites": suites,
        "complete": complete,
        "files": [r.file for r in runs if r.file is not None and r.suite in done],
        "environment": environment(),
        "commit": commit_info(repo),
        "runs": [
            {
                "suite": r.suite,
                "file": r.file,
                "exit_code": r.exit_code,
                "elapsed_s": round(r.elapsed_s, 3),
                "status": r.effective_status,
                **({} if r.conditions is None else {"conditions": r.conditions}),
            }
            for r in runs
        ],
    }
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "manifest.json.tmp"  # a reader (or a Ctrl-C) never sees half a manifest
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(out / "manifest.json")
    return manifest


def check_manifest(doc: Any, path: Path) -> dict[str, Any]:
    """``doc`` if it is a supported manifest; else :class:`ResultsFormatError` naming ``path``.

    Checked: a JSON object of this format and a supported version; ``files`` a list of file
    names inside the folder (no absolute paths, no ``..``); ``environment`` (when present) an
    object whose ``packages`` is an object.
    """
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        fmt = doc.get("format") if isinstance(doc, dict) else None
        raise ResultsFormatError(
            path, f"not a {FORMAT} manifest (unknown format {fmt!r}; expected {FORMAT!r})"
        )
    version = doc.get("version")
    if type(version) is not int or version not in SUPPORTED_VERSIONS:
        raise ResultsFormatError(
            path,
            f"unsupported results version {version!r} (unknown format version {version!r}, not "
            f"supported: this harness reads version(s) {', '.join(map(str, sorted(SUPPORTED_VERSIONS)))}; "
            "re-run samplemind-bench run, or upgrade samplemind-core to read newer results)",
        )
    files = doc.get("files")
    if not isinstance(files, list):
        raise ResultsFormatError(path, '"files" must be a list of file names')
    for name in files:
        if (
            not isinstance(name, str)
            or not name
            or Path(name).is_absolute()
            or ".." in Path(name).parts
        ):
            raise ResultsFormatError(
                path,
                f"'files' entry {name!r} is not a file name in the folder "
                "(it must not point outside the results folder)",
            )
    env = doc.get("environment")
    if env is not None:
        if not isinstance(env, dict):
            raise ResultsFormatError(path, "'environment' is not an object")
        if not isinstance(env.get("packages") or {}, dict):
            raise ResultsFormatError(path, "'environment.packages' is not an object")
    return doc


def read_manifest(folder: Path) -> dict[str, Any]:
    """Load and check ``folder/manifest.json`` (:func:`check_manifest`)."""
    path = folder / "manifest.json"
    return check_manifest(_load_json(path, what="manifest.json", missing=_NO_MANIFEST)[0], path)


_NO_MANIFEST: Final = (
    "missing: no manifest.json, so not a samplemind-bench results folder (write one with "
    "samplemind-bench run --out DIR)"
)


def _load_json(
    path: Path, *, what: str = "file", missing: str = "file not found"
) -> tuple[Any, bytes]:
    """The JSON document of ``path`` (plain or gzip-compressed, told apart by content) and its
    JSON text, or :class:`ResultsFormatError` naming ``path``: the one set of file checks of
    every reader."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ResultsFormatError(path, missing) from None
    except IsADirectoryError:
        raise ResultsFormatError(path, f"is a folder, not a {what}") from None
    except OSError as exc:
        raise ResultsFormatError(path, f"cannot be read ({exc.strerror or exc})") from None
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError; EOF: cut
            raise ResultsFormatError(path, f"corrupt or truncated gzip data ({exc})") from None
    if not raw.strip():
        raise ResultsFormatError(path, "file is empty")
    try:
        return json.loads(raw), raw
    except json.JSONDecodeError as exc:
        raise ResultsFormatError(
            path, f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    except UnicodeDecodeError as exc:
        raise ResultsFormatError(path, f"not valid JSON (not UTF-8 text: {exc.reason})") from None
    except RecursionError:  # "[[[[..." nested beyond the parser's recursion limit
        raise ResultsFormatError(path, "not valid JSON (nested too deeply)") from None


def suite_name(file_name: str) -> str:
    """The suite a suite file holds, from its name.

    >>> suite_name("router.json.gz"), suite_name("router.json"), suite_name("x/cache.json")
    ('router', 'router', 'cache')
    """
    name = Path(file_name).name
    for suffix in (COMPRESSED_SUFFIX, ".json"):
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return Path(name).stem


@dataclass(frozen=True, slots=True)
class Benchmark:
    """One benchmark of a suite file, checked (:func:`read_suite_file`).

    ``samples`` are pytest-benchmark's raw samples (``stats.data``): seconds per call, one per
    round, finite and >= 0, never empty (a benchmark without them is refused when read).
    """

    path: Path
    """The suite file it was read from."""
    suite: str
    """The suite of that file (:func:`suite_name`)."""
    name: str
    fullname: str
    """Its identity across runs (:func:`benchmark_key` of pytest's node id)."""
    group: str
    """pytest-benchmark's group ("" when it has none)."""
    params: Mapping[str, Any]
    param: str
    samples: tuple[float, ...]
    extra_info: Mapping[str, Any]
    """The suite's own figures (``benchmark.extra_info``), as written."""
    timer: str
    """pytest-benchmark's timer (``options.timer``), e.g. ``perf_counter``; "" if unknown."""
    stats: Mapping[str, Any] = field(default_factory=dict)
    """pytest-benchmark's summary of the samples (min, median, rounds, ...; without ``data``)."""

    @property
    def key(self) -> str:
        """Same as :attr:`fullname`: the benchmark across runs."""
        return self.fullname

    def numeric_extra(self) -> dict[str, float]:
        """Every finite numeric ``extra_info`` figure (booleans, strings and lists excluded)."""
        out: dict[str, float] = {}
        for k, v in self.extra_info.items():
            n = finite_number(v)
            if n is not None:
                out[str(k)] = n
        return out


@dataclass(frozen=True, slots=True)
class SuiteFile:
    """One checked pytest-benchmark JSON file (``<suite>.json`` or ``<suite>.json.gz``)."""

    path: Path
    suite: str
    benchmarks: tuple[Benchmark, ...]
    machine_info: Mapping[str, Any]
    commit_info: Mapping[str, Any]
    content: bytes = field(repr=False, default=b"")
    """The JSON text (decompressed): what :mod:`bench.history` hashes into a run's identity,
    so a version-1 folder keeps the identity it had."""


def check_benchmark(doc: Any, path: Path, *, index: int = 0) -> Benchmark:
    """One entry of a pytest-benchmark file's ``benchmarks`` list, checked (the checks of
    :func:`read_suite_file`), as a :class:`Benchmark` of the suite named by ``path``; ``index``
    names an entry without a name. Else :class:`ResultsFormatError` naming ``path``."""
    path = Path(path)
    suite = suite_name(path.name)
    i = index
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str) or not doc["name"]:
        raise ResultsFormatError(path, f"benchmark #{i} has no name")
    name: str = doc["name"]
    stats = doc.get("stats")
    if not isinstance(stats, dict):
        raise ResultsFormatError(path, f"benchmark {name!r} has no 'stats' object")
    data = stats.get("data")
    if data is None or data == []:
        raise ResultsFormatError(
            path,
            f"benchmark {name!r} has no raw samples (stats.data); write results with "
            "samplemind-bench run (or pytest --benchmark-json, which includes them)",
        )
    if not isinstance(data, list):
        raise ResultsFormatError(path, f"benchmark {name!r}: stats.data is not a list")
    samples: list[float] = []
    for v in data:
        n = finite_number(v)
        if n is None or n < 0:
            raise ResultsFormatError(
                path,
                f"benchmark {name!r}: stats.data holds {v!r} (samples are finite seconds >= 0)",
            )
        samples.append(n)
    extra = doc.get("extra_info")
    if extra is None:
        extra = {}
    if not isinstance(extra, dict):
        raise ResultsFormatError(path, f"benchmark {name!r}: extra_info is not an object")
    params = doc.get("params")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ResultsFormatError(path, f"benchmark {name!r}: params is not an object")
    options = doc.get("options")
    timer = options.get("timer") if isinstance(options, dict) else None
    return Benchmark(
        path=path,
        suite=suite,
        name=name,
        fullname=benchmark_key(str(doc.get("fullname") or name)),
        group=str(doc.get("group") or ""),
        params=params,
        param=str(doc.get("param") or ""),
        samples=tuple(samples),
        extra_info=extra,
        timer=str(timer) if timer else "",
        stats={k: v for k, v in stats.items() if k != "data"},
    )


def read_suite_document(path: Path) -> dict[str, Any]:
    """The whole pytest-benchmark JSON document of ``path`` (plain or gzip-compressed), for a
    writer that changes it (the instruction counts merged into ``extra_info``); checked like
    :func:`read_suite_file` (which it returns the document of), so a bad file is refused
    with the same :class:`ResultsFormatError` before anything is written."""
    doc, _ = _load_json(Path(path), what="pytest-benchmark JSON file")
    _check_suite(doc, Path(path))
    assert isinstance(doc, dict)
    return doc


def _check_suite(doc: Any, path: Path) -> tuple[Benchmark, ...]:
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
        raise ResultsFormatError(
            path,
            "not a pytest-benchmark JSON file (no 'benchmarks' list); write it with "
            "samplemind-bench run or pytest --benchmark-json",
        )
    benches: list[Benchmark] = []
    seen: set[str] = set()
    for i, raw in enumerate(doc["benchmarks"]):
        b = check_benchmark(raw, path, index=i)
        if b.fullname in seen:
            raise ResultsFormatError(path, f"benchmark {b.fullname!r} appears twice")
        seen.add(b.fullname)
        benches.append(b)
    return tuple(benches)


def read_suite_file(path: Path) -> SuiteFile:
    """Read and check one pytest-benchmark JSON file, plain or gzip-compressed.

    Refused with :class:`ResultsFormatError` naming the file: missing, unreadable, empty,
    corrupt or truncated gzip or JSON, no ``benchmarks`` list, a benchmark without a name, a
    ``stats`` object or raw samples, a sample that is not a finite number >= 0, ``extra_info``
    or ``params`` that is not an object, one benchmark twice.
    """
    path = Path(path)
    doc, content = _load_json(path, what="pytest-benchmark JSON file")
    benches = _check_suite(doc, path)
    machine, commit = doc.get("machine_info"), doc.get("commit_info")
    return SuiteFile(
        path=path,
        suite=suite_name(path.name),
        benchmarks=benches,
        machine_info=machine if isinstance(machine, dict) else {},
        commit_info=commit if isinstance(commit, dict) else {},
        content=content,
    )


@dataclass(frozen=True, slots=True)
class ResultsFolder:
    """A checked results folder: its manifest and every suite file it lists."""

    path: Path
    manifest: dict[str, Any]
    files: tuple[SuiteFile, ...]
    not_read: dict[str, str] = field(default_factory=dict)
    """Suites of a finished run that crashed (suite -> why), when ``allow_crashed`` let the
    folder through; their files (if any) are not read."""

    @property
    def benchmarks(self) -> Iterator[Benchmark]:
        """Every benchmark, file by file in the manifest's order."""
        return (b for f in self.files for b in f.benchmarks)

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"


def read_folder(path: Path, *, allow_crashed: bool = False) -> ResultsFolder:
    """Read and check a results folder (or its ``manifest.json``) and every suite file it lists.

    The one reader of results folders: :func:`read_manifest`, :func:`require_complete` (an
    incomplete run is refused), then :func:`read_suite_file` for each file of ``files``; a
    benchmark in two files is refused. ``allow_crashed`` (``history add``): a run that finished
    but whose suite crashed is read without that suite (``not_read``); one that was stopped is
    still refused. Anything wrong raises :class:`ResultsFormatError` naming the file.
    """
    folder = Path(path)
    if folder.name == "manifest.json" and folder.is_file():
        folder = folder.parent
    if not folder.is_dir():
        raise ResultsFormatError(folder, "not a results folder (no such directory)")
    manifest_path = folder / "manifest.json"
    manifest = read_manifest(folder)
    not_read: dict[str, str] = {}
    if allow_crashed:
        not_read = incomplete_suites(manifest)
        if manifest.get("complete") is False or any(w != "crashed" for w in not_read.values()):
            require_complete(manifest, manifest_path)
    else:
        require_complete(manifest, manifest_path)
    if not manifest["files"]:
        raise ResultsFormatError(manifest_path, "'files' is empty: no suite file to read")
    files: list[SuiteFile] = []
    where: dict[str, Path] = {}
    for name in manifest["files"]:
        sf = read_suite_file(folder / name)
        for b in sf.benchmarks:
            if b.fullname in where:
                raise ResultsFormatError(
                    sf.path, f"benchmark {b.fullname!r} is also in {where[b.fullname].name}"
                )
            where[b.fullname] = sf.path
        files.append(sf)
    return ResultsFolder(folder, manifest, tuple(files), not_read)


def compress_suite_file(path: Path) -> Path:
    """Rewrite the pytest-benchmark JSON ``path`` (``<suite>.json``) as ``<suite>.json.gz``:
    the same document, compact (no indentation) and gzip-compressed, checked by reading it
    back; the plain file is removed. Returns the new path.

    Lossless: every sample and figure is kept bit for bit (floats written with Python's
    shortest round-trip repr), so every verdict and figure read from it is the one the plain
    file gives. Deterministic (gzip header without time or name).
    """
    doc = json.loads(path.read_bytes())
    text = json.dumps(doc, separators=(",", ":")).encode()
    target = path.with_name(suite_name(path.name) + COMPRESSED_SUFFIX)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(gzip.compress(text, compresslevel=9, mtime=0))
    if gzip.decompress(tmp.read_bytes()) != text:  # never lose a figure
        tmp.unlink()
        raise ResultsFormatError(path, "compressed copy does not read back equal; kept as is")
    tmp.replace(target)
    path.unlink()
    return target


def folder_size(folder: Path) -> int:
    """Bytes of every file under ``folder`` (the run's size on disk, logs included)."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def check_profile(doc: Any, path: Path) -> dict[str, Any]:
    """``doc`` if it is a supported ``profile.json``; else :class:`ResultsFormatError`."""
    if not isinstance(doc, dict) or doc.get("format") != PROFILE_FORMAT:
        raise ResultsFormatError(
            path, f"not a samplemind profile (format must be {PROFILE_FORMAT!r})"
        )
    if doc.get("version") != PROFILE_VERSION:
        raise ResultsFormatError(
            path,
            f"unsupported profile version {doc.get('version')!r} "
            f"(this builder reads {PROFILE_VERSION})",
        )
    return doc
