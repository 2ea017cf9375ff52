"""``samplemind-bench report RESULTS_DIR... [--out DIR] [--profile DIR]``.

Reads one or more results folders; the LAST one is the run the page is about
(claims, charts, summary), earlier ones are compared against it (benchmarks
added or removed, median ratios). Writes into ``--out`` (default: ``reports/out``
in the repository, git-ignored):

* ``index.html``: one self-contained page (images embedded, no external files needed);
* ``summary.md``: claims table + headline figures (and, for a run with instruction counts,
  the instructions per call beside time), for a CI job summary or PR comment;
* ``data.csv``: the tidy frame of every run (one row per benchmark × parameters × metric);
* ``charts/NAME.png`` and ``charts/NAME.svg`` for every chart drawn;
* ``profile/``: copies of the profile artefacts (flame graphs, speedscope JSON) when a
  profile is given with ``--profile DIR`` or found beside the results
  (``RESULTS_DIR/profile.json`` or ``RESULTS_DIR/profile/profile.json``);
* ``.samplemind-report``: the list of files this build wrote. The next build into the same
  folder removes those (stale charts must not linger) and nothing else: ``--out`` may be a
  results folder, its ``profile/`` included.

Exit status: 0 on success, 2 when an input is missing, corrupt or of an unknown format
(the message names the file) or the output folder cannot be written.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from bench.results import PROFILE_FORMAT

    from .data import Run


def __getattr__(name: str) -> Any:
    """``PROFILE_FORMAT`` of :mod:`bench.results`, imported when first asked for."""
    if name == "PROFILE_FORMAT":
        from bench.results import PROFILE_FORMAT

        return PROFILE_FORMAT
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_OUT",
    "PROFILE_FORMAT",
    "WRITTEN_LIST",
    "build_report",
    "find_profile",
    "load_profile",
    "main",
]

DEFAULT_OUT: Final = Path(__file__).resolve().parent / "out"
WRITTEN_LIST: Final = ".samplemind-report"
"""In the output folder: the files the last build wrote (relative paths, one a line)."""


def load_profile(path: Path) -> dict[str, Any]:
    """Read ``profile.json`` (a file or the folder holding it), refusing unknown formats."""
    from bench.results import ResultsFormatError, check_profile

    from ._errors import ReportInputError

    file = path / "profile.json" if path.is_dir() else path
    if not file.is_file():
        raise ReportInputError(
            file, "profile.json not found (make one with samplemind-bench profile --out DIR)"
        )
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportInputError(file, f"corrupt profile JSON ({exc})") from exc
    try:
        doc = check_profile(doc, file)
    except ResultsFormatError as exc:
        raise ReportInputError(file, exc.problem) from None
    return doc


def find_profile(run: Run) -> Path | None:
    """A profile beside the results: ``RESULTS_DIR/profile.json`` or ``RESULTS_DIR/profile/``."""
    for cand in (run.path / "profile.json", run.path / "profile" / "profile.json"):
        if cand.is_file():
            return cand
    return None


def _copy_profile_artefacts(
    profile: Mapping[str, Any], src: Path, out: Path, written: list[Path]
) -> list[tuple[str, str]]:
    links: list[tuple[str, str]] = []
    dest = out / "profile"

    def copy(f: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / f.name
        if target.resolve() != f.resolve():  # --out is the results folder: already in place
            shutil.copyfile(f, target)
            written.append(target)

    for section in ("memory", "cpu"):
        arts = (profile.get(section) or {}).get("artefacts") or {}
        for label, rel in sorted(arts.items()):
            f = src / str(rel)
            if not f.is_file() or f.suffix == ".bin":  # memray captures stay where they are (large)
                continue
            copy(f)
            links.append((f"{section}: {label} ({f.name})", f"profile/{f.name}"))
    if (src / "profile.json").is_file():
        copy(src / "profile.json")
        links.append(("profile.json (figures)", "profile/profile.json"))
    return links


def _remove_previous_build(out: Path) -> None:
    """Remove the files the previous build listed in ``WRITTEN_LIST``, and only those."""
    listing = out / WRITTEN_LIST
    try:
        names = listing.read_text(encoding="utf-8").splitlines()
    except (FileNotFoundError, UnicodeDecodeError):
        return
    root = out.resolve()
    for name in names:
        f = (out / name).resolve()
        if name and f.is_relative_to(root) and f != root and f.is_file():
            f.unlink()
    for sub in ("charts", "profile"):
        d = out / sub
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
    listing.unlink()


def build_report(
    results: list[Path], out: Path, profile_path: Path | None = None
) -> dict[str, Path]:
    """Build the whole report; returns the main output files by name."""
    # pandas, matplotlib and scipy load here, not at import: `report --help` stays fast.
    from bench.figures import instruction_rows

    from .charts import Chart, Omitted, build_charts, save_chart
    from .claims import evaluate_claims
    from .data import compare_runs, load_runs, tidy
    from .render import ChartEntry, ReportContent, render_html, render_markdown
    from .streams import stream_charts, stream_claims

    runs = load_runs(results)
    run = runs[-1]
    prof_file = profile_path if profile_path is not None else find_profile(run)
    profile = load_profile(prof_file) if prof_file is not None else None

    out.mkdir(parents=True, exist_ok=True)
    _remove_previous_build(out)  # stale charts must not linger; nothing else is touched
    written: list[Path] = []

    entries: list[ChartEntry] = []
    omitted: list[tuple[str, str]] = []
    # one figure open at a time: each chart is drawn when the loop asks for it, and saved
    # (and closed) before the next
    for res in itertools.chain.from_iterable(
        f(run, profile) for f in (build_charts, stream_charts)
    ):
        if isinstance(res, Omitted):
            omitted.append((res.title, res.reason))
            continue
        assert isinstance(res, Chart)
        png, svg = save_chart(res, out / "charts")
        written += [png, svg]
        entries.append(
            ChartEntry(
                res.name,
                res.title,
                res.caption,
                png.read_bytes(),
                f"charts/{res.name}.png",
                f"charts/{res.name}.svg",
            )
        )

    links: list[tuple[str, str]] = []
    if profile is not None and prof_file is not None:
        src = prof_file if prof_file.is_dir() else prof_file.parent
        links = _copy_profile_artefacts(profile, src, out, written)

    content = ReportContent(
        run=run,
        claims=[*evaluate_claims(run), *stream_claims(run)],
        charts=entries,
        omitted=omitted,
        compared=runs[:-1],
        comparison=compare_runs(runs) if len(runs) > 1 else None,
        profile=profile,
        profile_links=links,
        instructions=instruction_rows(run.records),
    )
    files = {
        "index.html": out / "index.html",
        "summary.md": out / "summary.md",
        "data.csv": out / "data.csv",
    }
    files["index.html"].write_text(render_html(content), encoding="utf-8")
    files["summary.md"].write_text(render_markdown(content), encoding="utf-8")
    tidy(runs).to_csv(files["data.csv"], index=False, float_format="%.6g", lineterminator="\n")
    written += files.values()
    (out / WRITTEN_LIST).write_text(
        "".join(f"{f.relative_to(out).as_posix()}\n" for f in written), encoding="utf-8"
    )
    return files


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="samplemind-bench report",
        description="Build index.html, summary.md, data.csv and charts from results folders "
        "(the last folder is reported on, earlier ones are compared against it).",
    )
    p.add_argument("results", nargs="+", type=Path, metavar="RESULTS_DIR")
    p.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})"
    )
    p.add_argument(
        "--profile", type=Path, default=None, help="a folder written by samplemind-bench profile"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from ._errors import ReportInputError  # here, not at import: `report --help` stays fast

    try:
        files = build_report(list(args.results), args.out, args.profile)
    except ReportInputError as exc:
        print(f"samplemind-bench report: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        where = exc.filename or args.out
        print(
            f"samplemind-bench report: error: {where}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 2
    print(f"report written to {files['index.html'].parent}")
    for name, path in files.items():
        print(f"  {name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
