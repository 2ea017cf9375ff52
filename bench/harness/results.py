"""The results formats, defined once: every writer and reader of them goes through this module.

Results folder (``samplemind-bench run`` writes it; ``gate``, ``headline`` and ``reports`` read it):
``manifest.json`` plus one pytest-benchmark JSON file per suite::

    {"format": "samplemind-bench-results", "version": 1, "created": ISO-8601,
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
"""

from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from bench import vcs

__all__ = [
    "FORMAT",
    "INTERRUPTED_EXIT",
    "PROFILE_FORMAT",
    "PROFILE_VERSION",
    "SUPPORTED_VERSIONS",
    "VERSION",
    "IncompleteResultsError",
    "ResultsFormatError",
    "SuiteRun",
    "benchmark_key",
    "check_manifest",
    "check_profile",
    "commit_info",
    "environment",
    "finite_number",
    "incomplete_suites",
    "read_manifest",
    "require_complete",
    "suite_status",
    "write_manifest",
]

FORMAT: Final = "samplemind-bench-results"
VERSION: Final = 1
"""The version :func:`write_manifest` writes."""
SUPPORTED_VERSIONS: Final = frozenset({1})
"""The versions every reader accepts."""

PROFILE_FORMAT: Final = "samplemind-profile"
PROFILE_VERSION: Final = 1

_SUITE_DIR: Final = "bench/suites/"
_KEY_DIR: Final = "bench/"


class ResultsFormatError(ValueError):
    """A results folder or profile that is not of a supported format; names the file."""

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
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ResultsFormatError(
            path, f"{folder} is not a results folder: no manifest.json"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ResultsFormatError(path, f"not valid JSON: {exc}") from None
    return check_manifest(data, path)


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
