"""The trend page: ``DIR/index.html`` (one self-contained file: charts embedded as PNG, no scripts).

One chart per benchmark and metric (time and instruction counts: every benchmark that has
them; other metrics, e.g. ``extra_info`` figures: those with a change point):
commits in order on x, the median with its 95 % CI band, one line per machine, dirty-tree runs as
hollow markers, and each change point as a dashed line labelled with its commit and ratio. Above
the charts, a "changes since REF" table (REF: ``--since``, default the first commit stored).
Also writes ``DIR/changes.json`` (the same list as ``history changes --json``) and
``DIR/summary.md`` (the "changes since" table in Markdown, for a CI job summary).
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from bench.history.changes import Change
from bench.history.series import History, Series

__all__ = ["ALWAYS_SHOWN", "render"]

ALWAYS_SHOWN = ("time", "instructions")
"""Metrics charted for every benchmark; the others only where they have a change point."""

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:left}th{background:#f4f4f4}
td.up{color:#b00020}td.down{color:#0a7d28}figure{margin:1.5em 0}img{max-width:100%}
figcaption{font-size:.85em;color:#555}code{font-size:.9em}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _short(commit: str) -> str:
    return commit if commit.startswith("run:") else commit[:8]


def _scale(metric: str, values: list[float]) -> tuple[float, str]:
    if metric != "time":
        return 1.0, metric
    top = max(values) if values else 0.0
    for factor, unit in ((1e9, "ns"), (1e6, "µs"), (1e3, "ms")):
        if top * factor < 1000:
            return factor, f"median time per call ({unit})"
    return 1.0, "median time per call (s)"


def _chart(history: History, group: list[Series]) -> bytes:
    fig, ax = plt.subplots(figsize=(9, 3.8))
    allv = [v for s in group for v in s.value + s.dirty_value]
    factor, ylabel = _scale(group[0].metric, allv)
    for s in group:
        (line,) = ax.plot(
            s.index, [v * factor for v in s.value], marker="o", ms=3, lw=1.2, label=s.machine_label
        )
        band = [
            (i, lo * factor, hi * factor)
            for i, lo, hi in zip(s.index, s.ci_low, s.ci_high, strict=True)
            if lo is not None and hi is not None
        ]
        if band:
            xs, los, his = zip(*band, strict=True)
            ax.fill_between(xs, los, his, color=line.get_color(), alpha=0.2, lw=0)
        if s.dirty_index:
            ax.plot(
                s.dirty_index,
                [v * factor for v in s.dirty_value],
                ls="none",
                marker="o",
                mfc="none",
                color=line.get_color(),
                label=f"{s.machine_label} (dirty tree)",
            )
        for c in s.changes:
            x = s.index[c.index]
            ax.axvline(x - 0.5, color="#b00020" if c.ratio > 1 else "#0a7d28", ls="--", lw=1)
            ax.annotate(
                f"{_short(c.commit)} ×{c.ratio:.3f}",
                (x - 0.5, 0.03),
                xycoords=("data", "axes fraction"),
                rotation=90,
                va="bottom",
                ha="right",
                fontsize=7,
                color="#b00020" if c.ratio > 1 else "#0a7d28",
            )
    n = len(history.commits)
    step = max(1, n // 12)
    ticks = list(range(0, n, step))
    ax.set_xticks(ticks, [_short(history.commits[i]) for i in ticks], rotation=45, fontsize=7)
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_xlabel("commit (oldest → newest)")
    ax.set_ylabel(ylabel, fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.32), ncol=2, frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _changes_table(changes: list[Change]) -> str:
    if not changes:
        return "<p>No change points.</p>"
    head = (
        "<tr><th>benchmark</th><th>metric</th><th>machine</th><th>first commit</th>"
        "<th>ratio</th><th>before</th><th>after</th><th>confidence</th></tr>"
    )
    body = []
    for c in sorted(changes, key=lambda c: -abs(c.ratio - 1)):
        cls = "up" if c.ratio > 1 else "down"
        body.append(
            f"<tr><td>{_e(c.benchmark)}</td><td>{_e(c.metric)}</td><td>{_e(c.machine)}</td>"
            f"<td><code>{_e(_short(c.commit))}</code></td><td class='{cls}'>×{c.ratio:.3f}</td>"
            f"<td>{c.level_before:.4g}</td><td>{c.level_after:.4g}</td>"
            f"<td>{c.confidence:.3f}</td></tr>"
        )
    return f"<table><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"


def _markdown(ref: str, recent: list[Change], note: str) -> str:
    lines = [f"## Benchmark history: changes since `{_short(ref)}` ({len(recent)})", "", note, ""]
    if recent:
        lines += [
            "| benchmark | metric | machine | first commit | ratio | confidence |",
            "|---|---|---|---|---|---|",
        ]
        for c in sorted(recent, key=lambda c: -abs(c.ratio - 1)):
            name = c.benchmark.replace("|", "\\|")
            lines.append(
                f"| {name} | {c.metric} | {c.machine} | `{_short(c.commit)}` | "
                f"×{c.ratio:.3f} | {c.confidence:.3f} |"
            )
    else:
        lines.append("No change points.")
    return "\n".join(lines) + "\n"


def render(history: History, out: Path, *, since: str | None = None, db_label: str = "") -> Path:
    """Write ``out/index.html``, ``out/changes.json`` and ``out/summary.md``; returns the HTML path.

    ``since``: a commit on the history's axis (full id or unique prefix); ``ValueError`` if not.
    """
    start = 0
    if since is not None:
        found = history.position(since)
        if found is None:
            raise ValueError(f"--since {since}: no such commit in the history")
        start = found
    changes = history.changes()
    recent = [c for c in changes if (history.position(c.commit) or 0) > start]
    ref = history.commits[start] if history.commits else "(empty)"
    runs_note = (
        f"{len(history.commits)} commits, {len({s.machine for s in history.series})} machine(s)"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>SampleMind benchmark history</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>SampleMind benchmark history</h1>",
        f"<p>{_e(runs_note)}; store {_e(db_label)}. Change points: PELT (ruptures) over each "
        "series (dirty-tree runs drawn hollow and left out). Ratio = new level / old level.</p>",
        f"<h2>Changes since <code>{_e(_short(ref))}</code> ({len(recent)})</h2>",
        _changes_table(recent),
        '<p><a href="changes.json">changes.json</a></p>',
        "<h2>Trends</h2>",
    ]
    groups: dict[tuple[str, str, str, str], list[Series]] = {}
    for s in history.series:
        groups.setdefault((s.suite, s.benchmark, s.params, s.metric), []).append(s)
    shown = [(k, g) for k, g in groups.items() if k[3] in ALWAYS_SHOWN or any(s.changes for s in g)]
    shown.sort(key=lambda kg: (not any(s.changes for s in kg[1]), kg[0]))
    for (_suite, bench, _params, metric), group in shown:
        png = base64.b64encode(_chart(history, group)).decode("ascii")
        n_changes = sum(len(s.changes) for s in group)
        title = f"{bench} — {metric}"
        parts.append(
            f'<figure><img src="data:image/png;base64,{png}" alt="{_e(title)}">'
            f"<figcaption>{_e(title)}: {n_changes} change point(s)</figcaption></figure>"
        )
    parts.append("</body></html>\n")
    out.mkdir(parents=True, exist_ok=True)
    (out / "changes.json").write_text(json.dumps([c.as_dict() for c in changes], indent=2) + "\n")
    (out / "summary.md").write_text(_markdown(ref, recent, runs_note))
    page = out / "index.html"
    page.write_text("\n".join(parts))
    return page
