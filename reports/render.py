"""Render the report: one self-contained ``index.html`` and a ``summary.md``.

The HTML page has no external resource and no script: the stylesheet is inline
and every chart is embedded as a ``data:image/png;base64`` URI, so the file opens
offline and can be mailed or attached as one file. Links to the SVG/PNG files,
``data.csv`` and the profile artefacts are relative to the output folder.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pandas as pd

from bench import figures as summary

from .claims import DOES_NOT_HOLD, HOLDS, MACHINE_LIMITED, Claim
from .data import Run

__all__ = ["ChartEntry", "ReportContent", "render_html", "render_markdown"]

VERDICT_MARK: Final = {HOLDS: "✅", DOES_NOT_HOLD: "❌", MACHINE_LIMITED: "⚠️"}
HTML_MARK: Final = {
    HOLDS: "✓",
    DOES_NOT_HOLD: "✗",
    MACHINE_LIMITED: "!",
}  # no emoji font needed (headless/CI browsers)


@dataclass(frozen=True)
class ChartEntry:
    """A drawn chart as the page shows it (PNG bytes + links relative to the output folder)."""

    name: str
    title: str
    caption: str
    png: bytes
    png_href: str
    svg_href: str


@dataclass(frozen=True)
class ReportContent:
    """Everything the page and the summary show, already computed."""

    run: Run
    claims: Sequence[Claim]
    charts: Sequence[ChartEntry]
    omitted: Sequence[tuple[str, str]]  # (title, reason)
    compared: Sequence[Run] = ()
    comparison: pd.DataFrame | None = None
    profile: Mapping[str, Any] | None = None
    profile_links: Sequence[tuple[str, str]] = field(default=())  # (label, href)
    instructions: Sequence[dict[str, Any]] = ()
    """Counted benchmarks (:func:`bench.figures.instruction_rows`); empty when the
    run has no instruction counts."""


def _run_line(run: Run) -> str:
    env, commit = run.environment, run.commit
    cid = str(commit.get("id") or "unknown")[:12]
    dirty = " (dirty)" if commit.get("dirty") else ""
    quick = "quick" if run.quick else "full"
    return (
        f"`{run.label}` · {run.mode or 'unknown mode'} · {quick} · commit {cid}{dirty} · "
        f"created {run.manifest.get('created', '?')} · {env.get('cpu', '?')}, {env.get('cores', '?')} cores, "
        f"Python {env.get('python', '?')}, {env.get('platform', '?')}"
    )


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _changes(content: ReportContent) -> tuple[list[str], list[str]]:
    comp = content.comparison
    if comp is None or comp.empty:
        return [], []
    added = sorted(comp[comp.status == "added"].key)
    removed = sorted(comp[comp.status == "removed"].key)
    return added, removed


def render_markdown(content: ReportContent, *, max_list: int = 20) -> str:
    """``summary.md``: the claims table and headline figures, small enough for a PR comment."""
    run = content.run
    lines = [
        f"## SampleMind benchmark report: {run.label}",
        "",
        _run_line(run),
        "",
        "### Claims",
        "",
    ]
    lines += ["| Claim | Measured here | Verdict | From |", "|---|---|---|---|"]
    for c in content.claims:
        mark = VERDICT_MARK.get(c.verdict, "➖")
        lines.append(
            f"| {_md_cell(c.claim)} | {_md_cell(c.measured)} | {mark} {c.verdict} | {_md_cell(c.source)} |"
        )
    lines += ["", "### Headline figures", ""]
    for ch in content.charts:
        lines.append(f"- **{ch.title}**: {ch.caption}")
    if content.instructions:
        lines += ["", summary.markdown(content.instructions, heading="###").rstrip("\n")]
    if content.omitted:
        lines += ["", "### Not charted", ""]
        lines += [f"- {title}: {reason}" for title, reason in content.omitted]
    if content.compared:
        base = content.compared[0].label
        added, removed = _changes(content)
        lines += ["", f"### Compared with `{base}`", ""]
        lines.append(
            f"- added ({len(added)}): " + (", ".join(f"`{k}`" for k in added[:max_list]) or "none")
        )
        lines.append(
            f"- removed ({len(removed)}): "
            + (", ".join(f"`{k}`" for k in removed[:max_list]) or "none")
        )
        if len(added) > max_list or len(removed) > max_list:
            lines.append(f"- (lists cut at {max_list}; see index.html)")
    lines.append("")
    return "\n".join(lines)


_CSS: Final = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1200px;padding:0 1rem;color:#222}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%;font-size:.9rem;margin:.5rem 0}
th,td{border:1px solid #ccc;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f3f3} .run{color:#555;font-size:.9rem}
td.v-holds{background:#e6f4ea} td.v-does-not-hold{background:#fce8e6} td.v-not-measured-here{background:#f1f1f1} td.v-machine-limited{background:#fff4d6}
figure{margin:1.5rem 0;border:1px solid #eee;padding:.5rem}
figure img{max-width:100%;height:auto;display:block}
figcaption{font-size:.9rem;margin-top:.3rem} .links{font-size:.8rem;color:#555}
code{background:#f6f6f6;padding:0 .2rem}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in df.columns)
    body = []
    for row in df.itertuples(index=False):
        cells = []
        for v in row:
            if isinstance(v, float):
                cells.append(f"<td>{v:.4g}</td>")
            else:
                cells.append(f"<td>{_e(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _profile_section(content: ReportContent) -> list[str]:
    prof = content.profile
    if prof is None:
        return []
    out = ["<h2>Profiles</h2>"]
    mem, cpu, leak = prof.get("memory") or {}, prof.get("cpu") or {}, prof.get("leak") or {}
    items = [
        f"requests replayed: {_e(prof.get('requests', '?'))}{' (quick mode)' if prof.get('quick') else ''}"
    ]
    if mem.get("status") == "ok":
        items.append(
            f"memray: peak {mem['peak_bytes'] / 2**20:.1f} MiB, {int(mem.get('total_allocations', 0)):,} allocations"
        )
    else:
        items.append(f"memray: {_e(mem.get('message', 'not run'))}")
    if leak.get("verdict"):
        items.append(f"leak check: {_e(leak['verdict'])} ({_e(leak.get('note', ''))})")
    if cpu.get("status") == "ok":
        items.append(f"py-spy: {int(cpu.get('samples', 0)):,} samples")
    else:
        fix = f" How to fix: {_e(cpu['how_to_fix'])}" if cpu.get("how_to_fix") else ""
        items.append(f"<strong>py-spy: {_e(cpu.get('message', 'not run'))}</strong>{fix}")
    out.append("<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>")
    if content.profile_links:
        links = " · ".join(
            f'<a href="{_e(h)}">{_e(label)}</a>' for label, h in content.profile_links
        )
        out.append(f"<p>Artefacts: {links}</p>")
    return out


def _instructions_section(content: ReportContent) -> list[str]:
    rows = content.instructions
    if not rows:
        return []
    out = ["<h2>Instructions per call (callgrind)</h2><ul>"]
    for label, value in summary.headline_figures(rows).items():
        shown = "not counted" if value is None else f"{value:,.0f}"
        out.append(f"<li><strong>{_e(label)}</strong>: {shown}</li>")
    out.append("</ul>")
    table = pd.DataFrame(
        [
            (
                r["suite"],
                r["name"],
                f"{r['instructions']:,.1f}",
                "n/a" if not r["median_s"] else f"{r['median_s'] * 1e6:,.2f} µs",
                "n/a" if not r["median_s"] else f"{r['instructions'] / (r['median_s'] * 1e9):.2f}",
            )
            for r in rows
        ],
        columns=["suite", "benchmark", "instructions/call", "median time", "instructions/ns"],
    )
    out.append(_table(table))
    out.append(
        '<p class="links">Counted by valgrind\'s callgrind (<code>samplemind-bench run '
        "--instructions</code>): the instructions of the benchmark body per call, on valgrind's "
        "emulated CPU (no SHA-NI or AVX-512), so instructions/ns is not the host's throughput.</p>"
    )
    return out


def render_html(content: ReportContent) -> str:
    """``index.html``: one file, no external resources, no scripts."""
    run = content.run
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>SampleMind benchmark report: {_e(run.label)}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>SampleMind benchmark report</h1>",
        f'<p class="run">{_e(_run_line(run).replace("`", ""))}</p>',
        "<h2>Claims of the optimisation plan, measured</h2>",
        "<table><thead><tr><th>Claim</th><th>Measured here</th><th>Verdict</th><th>From</th></tr></thead><tbody>",
    ]
    for c in content.claims:
        cls = "v-" + c.verdict.replace(" ", "-")
        mark = HTML_MARK.get(c.verdict, "–")
        parts.append(
            f"<tr><td>{_e(c.claim)}</td><td>{_e(c.measured)}</td>"
            f'<td class="{cls}">{mark} {_e(c.verdict)}</td><td>{_e(c.source)}</td></tr>'
        )
    parts.append("</tbody></table>")
    parts.append(
        '<p class="links">Verdicts are strict: a claim holds only where it holds at every measured point. '
        'Tidy data: <a href="data.csv">data.csv</a> · summary: <a href="summary.md">summary.md</a></p>'
    )
    parts.append("<h2>Headline figures</h2><ul>")
    parts += [
        f"<li><strong>{_e(ch.title)}</strong>: {_e(ch.caption)}</li>" for ch in content.charts
    ]
    parts.append("</ul><h2>Charts</h2>")
    for ch in content.charts:
        data = base64.b64encode(ch.png).decode("ascii")
        parts.append(
            f'<figure id="{_e(ch.name)}"><img src="data:image/png;base64,{data}" alt="{_e(ch.title)}">'
            f"<figcaption>{_e(ch.caption)} "
            f'<span class="links">(<a href="{_e(ch.svg_href)}">SVG</a>, <a href="{_e(ch.png_href)}">PNG</a>)</span>'
            "</figcaption></figure>"
        )
    if content.omitted:
        parts.append("<h3>Not charted</h3><ul>")
        parts += [f"<li>{_e(t)}: {_e(r)}</li>" for t, r in content.omitted]
        parts.append("</ul>")
    parts += _instructions_section(content)
    parts += _profile_section(content)
    if content.compared and content.comparison is not None:
        comp = content.comparison
        base = content.compared[0].label
        added, removed = _changes(content)
        parts.append(f"<h2>Compared with {_e(base)}</h2>")
        parts.append(f"<p>Added ({len(added)}): {_e(', '.join(added) or 'none')}</p>")
        parts.append(f"<p>Removed ({len(removed)}): {_e(', '.join(removed) or 'none')}</p>")
        common = comp[comp.status == "common"].sort_values(["run", "key"])
        if not common.empty:
            shown = common[["run", "key", "baseline_median_s", "median_s", "median_ratio"]]
            parts.append(
                "<details><summary>Median time ratios of common benchmarks (below 1 = faster)</summary>"
            )
            parts.append(_table(shown) + "</details>")
    env = run.environment
    raw_pkgs = env.get("packages")
    pkgs: Mapping[str, Any] = raw_pkgs if isinstance(raw_pkgs, Mapping) else {}
    parts.append("<h2>Environment</h2>")
    parts.append(
        _table(
            pd.DataFrame(
                sorted((str(k), str(v)) for k, v in pkgs.items()), columns=["package", "version"]
            )
        )
    )
    parts.append("</body></html>\n")
    return "\n".join(parts)
