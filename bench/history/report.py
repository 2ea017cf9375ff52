"""The trend page: ``DIR/index.html``, one self-contained file that opens offline.

Charts are embedded as PNG and the filter is a few lines of plain JavaScript in the page (no CDN,
no other file); without JavaScript every chart and index row is shown. From the top:

1. a summary (commits, machines, the store) and the "changes since REF" table (REF: ``--since``,
   default the first commit stored), each row linking to its chart;
2. the **index**: one row per benchmark x metric (its suite, the commits and runs behind it,
   its latest change point: direction, size, commit, confidence; or "no change over n commits";
   or "n commits: change points need at least k" when the series is too short to analyse),
   each row linking to its chart;
3. a **filter** (suite, metric, "changed only", a name search) that hides index rows and charts
   alike and says how many are shown;
4. the charts, in the index's order, each with its caption ABOVE it: commits in order on x, one
   line per machine through the median of each commit's runs, the runs of one commit drawn as
   their spread (min-max whisker, and the interquartile range as a thicker bar from 4 runs on),
   the within-run 95 % CI of the median as a band, dirty-tree runs as hollow markers, each
   change point as a dashed line labelled with its commit and ratio. A series with fewer
   commits than the detector needs (:data:`bench.history.changes.MIN_POINTS`) says so in its
   caption and on the chart; one with fewer than 2 commits gets the sentence and its value
   instead of a chart.

Charted: time and instruction counts of every benchmark; other metrics (``extra_info``
figures) only where they have a change point (the page says how many are left out).
Also writes ``DIR/changes.json`` (the same list as ``history changes --json``) and
``DIR/summary.md`` (the "changes since" table in Markdown, for a CI job summary).
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.history.changes import MIN_POINTS, Change
from bench.history.series import History, Series

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["ALWAYS_SHOWN", "render"]

ALWAYS_SHOWN = ("time", "instructions")
"""Metrics charted for every benchmark; the others only where they have a change point."""

_CSS = """
[hidden]{display:none!important}
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1200px;margin:1.5em auto;
padding:0 1em;color:#222}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.6em;
border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.2em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4;position:sticky;top:0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.worse{color:#b00020;font-weight:600}.better{color:#0a7d28;font-weight:600}
.moved{color:#6a3d9a;font-weight:600}.quiet{color:#666}.short{color:#8a5a00}
#filter{position:sticky;top:0;background:#fff;z-index:2;padding:.5em 0;border-bottom:1px solid #ddd;
display:flex;flex-wrap:wrap;gap:.4em 1.2em;align-items:center;font-size:.9em}
#filter label{white-space:nowrap}#shown{color:#555}
.index-wrap{max-height:28em;overflow:auto;border:1px solid #ddd}
.index-wrap table{margin:0;width:100%}
section.chart{margin:1.2em 0 2em;scroll-margin-top:4em}
section.chart h3{font-size:1em;margin:.2em 0}
section.chart p.caption{font-size:.85em;color:#444;margin:.1em 0 .4em}
p.note{font-size:.85em;color:#555}
img{max-width:100%}code{font-size:.9em}a{color:#0645ad}
.nochart{border:1px dashed #c9a227;background:#fffbe6;padding:.6em 1em;font-size:.9em}
"""

_JS = """
(function(){
  var suite=document.getElementById('f-suite'),metric=document.getElementById('f-metric'),
      changed=document.getElementById('f-changed'),text=document.getElementById('f-text'),
      shown=document.getElementById('shown');
  var rows=document.querySelectorAll('tr.bench'),charts=document.querySelectorAll('section.chart');
  function ok(el){
    var d=el.dataset,q=text.value.trim().toLowerCase();
    return (!suite.value||d.suite===suite.value)&&(!metric.value||d.metric===metric.value)&&
      (!changed.checked||d.changed==='1')&&(!q||d.name.indexOf(q)>=0);
  }
  function apply(){
    var n=0;
    rows.forEach(function(r){var v=ok(r);r.hidden=!v;if(v){n++;}});
    charts.forEach(function(c){c.hidden=!ok(c);});
    shown.textContent=n+' of '+rows.length+' series shown';
  }
  [suite,metric,changed].forEach(function(e){e.addEventListener('change',apply);});
  text.addEventListener('input',apply);
  document.getElementById('filter').hidden=false;
  apply();
})();
"""

_LOWER_IS_BETTER_SUFFIXES = ("_us", "_ms", "_ns", "_s", "_bytes", "_b")


def _lower_is_better(metric: str) -> bool | None:
    """True for costs (time, instructions, latencies), False for rates, None when unknown."""
    m = metric.lower()
    if m in ("time", "instructions") or "latency" in m or m.endswith(_LOWER_IS_BETTER_SUFFIXES):
        return True
    if any(w in m for w in ("rate", "gbps", "per_s", "rps", "throughput", "speedup", "ops")):
        return False
    return None


def _verdict(metric: str, ratio: float) -> tuple[str, str]:
    """(CSS class, words) of a change of ``ratio`` in ``metric``."""
    up = ratio > 1
    lower = _lower_is_better(metric)
    if metric == "time":
        words = "slower" if up else "faster"
    elif metric == "instructions":
        words = "more instructions" if up else "fewer instructions"
    else:
        words = "up" if up else "down"
    if lower is None:
        return "moved", words
    return ("worse" if up == lower else "better"), words


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


def _fmt(metric: str, value: float) -> str:
    factor, label = _scale(metric, [value])
    unit = label[label.rfind("(") + 1 : -1] if metric == "time" else ""
    return f"{value * factor:.4g} {unit}".strip()


@dataclass
class _Group:
    """One benchmark x metric (every machine's series): one index row, one chart."""

    suite: str
    benchmark: str
    params: str
    metric: str
    series: list[Series]

    @property
    def anchor(self) -> str:
        key = "\x00".join((self.suite, self.benchmark, self.params, self.metric))
        return "c-" + hashlib.sha1(key.encode()).hexdigest()[:12]  # an id, not security

    @property
    def commits(self) -> int:
        """Clean commits of the longest series (the one change detection saw most of)."""
        return max(len(s.index) for s in self.series)

    @property
    def runs(self) -> int:
        return sum(sum(s.runs) for s in self.series)

    @property
    def changes(self) -> list[Change]:
        return [c for s in self.series for c in s.changes]

    def latest(self, history: History) -> Change | None:
        found = self.changes
        if not found:
            return None
        return max(found, key=lambda c: (history.position(c.commit) or 0, abs(c.ratio - 1)))

    def status(self, history: History) -> tuple[str, str]:
        """(CSS class, HTML) of the index's "latest change" cell."""
        c = self.latest(history)
        if c is not None:
            cls, words = _verdict(self.metric, c.ratio)
            arrow = "▲" if c.ratio > 1 else "▼"
            where = f" on {_e(c.machine)}" if len(self.series) > 1 else ""
            return cls, (
                f"{arrow} ×{c.ratio:.3f} {_e(words)} at <code>{_e(_short(c.commit))}</code>"
                f"{where} (confidence {c.confidence:.2f})"
            )
        n = self.commits
        if n < MIN_POINTS:
            return "short", f"{n} commit(s): change points need at least {MIN_POINTS}"
        return "quiet", f"no change over {n} commits"


def _figure(history: History, group: _Group) -> Figure:
    """The chart of ``group`` (see the module docstring): a figure of its own, outside pyplot's
    registry: nothing to close, the garbage collector frees it."""
    # matplotlib here, not at import: a page without a chart (one commit, `history add`'s
    # imports) does not pay for it; no pyplot: its backend machinery is not needed to draw a PNG
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.9))
    ax = fig.subplots()
    metric = group.metric
    several = len(group.series) > 1
    allv = [v for s in group.series for v in s.run_high + s.run_low + s.dirty_value]
    factor, ylabel = _scale(metric, allv)
    spread_drawn = iqr_drawn = False
    for s in group.series:
        who = f"{s.machine_label}: " if several else ""
        (line,) = ax.plot(
            s.index,
            [v * factor for v in s.value],
            marker="o",
            ms=3.5,
            lw=1.2,
            label=f"{who}median of the runs on a commit",
        )
        colour = line.get_color()
        band = [
            (i, lo * factor, hi * factor)
            for i, lo, hi in zip(s.index, s.ci_low, s.ci_high, strict=True)
            if lo is not None and hi is not None
        ]
        if band:
            xs, los, his = zip(*band, strict=True)
            ax.fill_between(
                xs, los, his, color=colour, alpha=0.12, lw=0, label=f"{who}95 % CI within a run"
            )
        multi = [k for k, n in enumerate(s.runs) if n > 1]
        if multi:
            ax.vlines(
                [s.index[k] for k in multi],
                [s.run_low[k] * factor for k in multi],
                [s.run_high[k] * factor for k in multi],
                color=colour,
                lw=1,
                label="_nolegend_" if spread_drawn else "min–max of the runs on one commit",
            )
            ax.plot(  # the whiskers' caps, all in one call
                [s.index[k] for k in multi] * 2,
                [s.run_low[k] * factor for k in multi] + [s.run_high[k] * factor for k in multi],
                ls="none",
                marker="_",
                ms=7,
                color=colour,
            )
            spread_drawn = True
        quart = [k for k, n in enumerate(s.runs) if n >= 4]
        if quart:
            ax.vlines(
                [s.index[k] for k in quart],
                [s.run_q1[k] * factor for k in quart],
                [s.run_q3[k] * factor for k in quart],
                color=colour,
                lw=5,
                alpha=0.45,
                label="_nolegend_" if iqr_drawn else "interquartile range (4+ runs)",
            )
            iqr_drawn = True
        if s.dirty_index:
            ax.plot(
                s.dirty_index,
                [v * factor for v in s.dirty_value],
                ls="none",
                marker="o",
                mfc="none",
                color=colour,
                label=f"{who}dirty tree (not analysed)",
            )
        for c in s.changes:
            x = s.index[c.index]
            cls, _ = _verdict(metric, c.ratio)
            col = {"worse": "#b00020", "better": "#0a7d28"}.get(cls, "#6a3d9a")
            ax.axvline(x - 0.5, color=col, ls="--", lw=1)
            ax.annotate(
                f"{_short(c.commit)} ×{c.ratio:.3f}",
                (x - 0.5, 0.03),
                xycoords=("data", "axes fraction"),
                rotation=90,
                va="bottom",
                ha="right",
                fontsize=7,
                color=col,
            )
    if group.commits < MIN_POINTS:
        ax.text(
            0.99,
            0.95,
            f"{group.commits} commits: change points need at least {MIN_POINTS}",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=8,
            color="#8a5a00",
            bbox={"boxstyle": "round", "fc": "#fffbe6", "ec": "#c9a227"},
        )
    n = len(history.commits)
    step = max(1, n // 14)
    ticks = list(range(0, n, step))
    ax.set_xticks(ticks, [_short(history.commits[i]) for i in ticks], rotation=45, fontsize=7)
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_xlabel("commit (oldest → newest)", fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(
        fontsize=7,
        loc="upper left",
        bbox_to_anchor=(0.0, -0.3),
        ncol=2 if several else 3,  # machine labels are long
        frameon=False,
    )
    fig.tight_layout()
    return fig


def _chart(history: History, group: _Group) -> bytes:
    fig = _figure(history, group)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def _changes_table(changes: list[Change], anchors: dict[tuple[str, str], str]) -> str:
    if not changes:
        return "<p>No change points.</p>"
    head = (
        "<tr><th>benchmark</th><th>metric</th><th>machine</th><th>first commit</th>"
        "<th>ratio</th><th>before</th><th>after</th><th>confidence</th></tr>"
    )
    body = []
    for c in sorted(changes, key=lambda c: -abs(c.ratio - 1)):
        cls, words = _verdict(c.metric, c.ratio)
        anchor = anchors.get((c.benchmark, c.metric))
        name = _e(c.benchmark)
        if anchor:
            name = f'<a href="#{anchor}">{name}</a>'
        body.append(
            f"<tr><td>{name}</td><td>{_e(c.metric)}</td><td>{_e(c.machine)}</td>"
            f"<td><code>{_e(_short(c.commit))}</code></td>"
            f"<td class='{cls}'>×{c.ratio:.3f} {_e(words)}</td>"
            f"<td>{_e(_fmt(c.metric, c.level_before))}</td>"
            f"<td>{_e(_fmt(c.metric, c.level_after))}</td>"
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


def _data(g: _Group) -> str:
    return (
        f'data-suite="{_e(g.suite)}" data-metric="{_e(g.metric)}" '
        f'data-changed="{1 if g.changes else 0}" data-name="{_e(g.benchmark.lower())}"'
    )


def _options(values: list[str], everything: str) -> str:
    opts = [f'<option value="">{_e(everything)}</option>']
    opts += [f'<option value="{_e(v)}">{_e(v)}</option>' for v in values]
    return "".join(opts)


def _metric_order(metric: str) -> tuple[int, str]:
    return (ALWAYS_SHOWN.index(metric) if metric in ALWAYS_SHOWN else len(ALWAYS_SHOWN), metric)


def _index(history: History, shown: list[_Group]) -> str:
    head = (
        "<tr><th>suite</th><th>benchmark</th><th>metric</th><th>commits</th><th>runs</th>"
        "<th>latest change</th></tr>"
    )
    rows = []
    for g in shown:
        cls, status = g.status(history)
        rows.append(
            f'<tr class="bench" {_data(g)}><td>{_e(g.suite)}</td>'
            f'<td><a href="#{g.anchor}">{_e(g.benchmark)}</a></td><td>{_e(g.metric)}</td>'
            f'<td class="num">{g.commits}</td><td class="num">{g.runs}</td>'
            f'<td class="{cls}">{status}</td></tr>'
        )
    return (
        f'<div class="index-wrap"><table id="index"><thead>{head}</thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _section(history: History, g: _Group) -> str:
    cls, status = g.status(history)
    machines = len(g.series)
    n_changes = len(g.changes)
    caption = (
        f"{_e(g.suite)} · {g.commits} commit(s), {g.runs} run(s) · "
        + (f"{machines} machines" if machines > 1 else _e(g.series[0].machine_label))
        + f" · {n_changes} change point(s) · latest: <span class='{cls}'>{status}</span>"
    )
    title = f"{g.benchmark} — {g.metric}"
    head = (
        f'<section class="chart" id="{g.anchor}" {_data(g)}>'
        f"<h3>{_e(title)}</h3><p class='caption'>{caption}</p>"
    )
    if g.commits < 2:
        values = "; ".join(
            f"{_e(s.machine_label)}: {_e(_fmt(g.metric, v))} at "
            f"<code>{_e(_short(history.commits[i]))}</code>"
            for s in g.series
            for i, v in zip(s.index, s.value, strict=True)
        )
        dirty = sum(len(s.dirty_index) for s in g.series)
        extra = f" ({dirty} dirty-tree run(s) not analysed)" if dirty else ""
        return (
            f"{head}<div class='nochart'><b>{g.commits} commit(s): change points need at least "
            f"{MIN_POINTS}</b>, and a trend needs at least 2; no chart drawn{extra}. "
            f"Value: {values or 'none (dirty-tree runs only)'}.</div></section>"
        )
    png = base64.b64encode(_chart(history, g)).decode("ascii")
    return f'{head}<img src="data:image/png;base64,{png}" alt="{_e(title)}"></section>'


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
    by_key: dict[tuple[str, str, str, str], list[Series]] = {}
    for s in history.series:
        by_key.setdefault((s.suite, s.benchmark, s.params, s.metric), []).append(s)
    groups = [_Group(*k, series=v) for k, v in by_key.items()]
    shown = [g for g in groups if g.metric in ALWAYS_SHOWN or g.changes]
    hidden = len(groups) - len(shown)
    shown.sort(key=lambda g: (g.suite, g.benchmark, g.params, _metric_order(g.metric)))
    anchors = {(g.benchmark, g.metric): g.anchor for g in shown}
    suites = sorted({g.suite for g in shown})
    metrics = sorted({g.metric for g in shown}, key=_metric_order)
    n_changed = sum(1 for g in shown if g.changes)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>SampleMind benchmark history</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>SampleMind benchmark history</h1>",
        f"<p>{_e(runs_note)}; store {_e(db_label)}. Change points: PELT (ruptures) over each "
        f"series of at least {MIN_POINTS} commits (dirty-tree runs drawn hollow and left out). "
        "Ratio = new level / old level; a commit measured several times counts once, with the "
        "median of its runs, and is drawn with their spread.</p>",
        f"<h2>Changes since <code>{_e(_short(ref))}</code> ({len(recent)})</h2>",
        _changes_table(recent, anchors),
        '<p><a href="changes.json">changes.json</a></p>',
        f'<h2 id="index-title">Index: {len(shown)} series, {n_changed} with a change point</h2>',
        '<div id="filter" hidden>'
        f'<label>suite <select id="f-suite">{_options(suites, "all suites")}</select></label>'
        f'<label>metric <select id="f-metric">{_options(metrics, "all metrics")}</select>'
        "</label>"
        '<label><input type="checkbox" id="f-changed"> changed only</label>'
        '<label>name <input type="search" id="f-text" placeholder="e.g. blake3" size="18">'
        '</label><span id="shown"></span></div>',
        _index(history, shown),
    ]
    if hidden:
        parts.append(
            f'<p class="note">{hidden} other series (extra_info figures without a change '
            "point) are not charted: <code>samplemind-bench history changes --metric M</code> "
            "lists them.</p>"
        )
    parts.append("<h2>Charts</h2>")
    parts += [_section(history, g) for g in shown]
    parts.append(f"<script>{_JS}</script>")
    parts.append("</body></html>\n")
    out.mkdir(parents=True, exist_ok=True)
    (out / "changes.json").write_text(json.dumps([c.as_dict() for c in changes], indent=2) + "\n")
    (out / "summary.md").write_text(_markdown(ref, recent, runs_note))
    page = out / "index.html"
    page.write_text("\n".join(parts))
    return page
