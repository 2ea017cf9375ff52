"""Persist: the results folder (``manifest.json`` + one pytest-benchmark JSON per suite).

Format (see /tmp/team/CONTRACT.md, "Results folder")::

    {"format": "samplemind-bench-results", "version": 1, "created": ISO-8601,
     "mode": "mocked" | "live", "quick": bool, "suites": [...], "files": [...],
     "environment": {"cpu", "cores", "python", "platform", "packages"},
     "commit": {"id", "dirty"},
     "runs": [{"suite", "file", "exit_code", "elapsed_s"}]}      # extension

``runs`` is an extension: per suite, pytest's exit code and the wall time, so
a consumer can tell a failed or partial suite from a complete one.
:func:`read_manifest` refuses other formats and versions with a clear error.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Final

__all__ = [
    "FORMAT",
    "VERSION",
    "SuiteRun",
    "commit_info",
    "environment",
    "read_manifest",
    "write_manifest",
]

FORMAT: Final = "samplemind-bench-results"
VERSION: Final = 1

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

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        sha = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
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
) -> dict[str, Any]:
    """Write ``out/manifest.json`` and return it."""
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "created": (created or datetime.now(UTC)).isoformat(),
        "mode": mode,
        "quick": quick,
        "suites": suites,
        "files": [r.file for r in runs if r.file is not None],
        "environment": environment(),
        "commit": commit_info(repo),
        "runs": [
            {
                "suite": r.suite,
                "file": r.file,
                "exit_code": r.exit_code,
                "elapsed_s": round(r.elapsed_s, 3),
            }
            for r in runs
        ],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_manifest(folder: Path) -> dict[str, Any]:
    """Load and check ``folder/manifest.json``; unknown formats or versions are refused."""
    path = folder / "manifest.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{folder} is not a results folder: no manifest.json") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} manifest")
    if data.get("version") != VERSION:
        raise ValueError(
            f"{path}: results format version {data.get('version')!r} is not supported "
            f"(this harness reads version {VERSION}); re-run samplemind-bench run"
        )
    return data
