"""The gate's report: verdicts as a terminal table, JSON and Markdown, and the exit code."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bench.gate.evaluate import CANNOT_TELL, Verdict

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_NOT_COMPARABLE",
    "EXIT_PASS",
    "EXIT_REGRESSION",
    "GateReport",
]

EXIT_PASS = 0
EXIT_REGRESSION = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_COMPARABLE = 3


_ORDER: dict[str, int] = {
    "regressed": 0,
    "inconclusive": 1,
    "not comparable": 2,
    "improved": 3,
    "insufficient data": 4,
    "added": 5,
    "removed": 6,
    "unchanged": 7,
}


def _fails(v: Verdict) -> bool:
    """Whether this verdict alone fails the gate (exit 1)."""
    return v.status in ("regressed", "insufficient data") or (
        v.status == "inconclusive" and v.blocking
    )


@dataclass(slots=True)
class GateReport:
    """Everything the gate decided, renderable as a terminal table, JSON and Markdown."""

    verdicts: list[Verdict]
    env_differences: list[str]
    ignore_env: bool
    baseline_sources: list[str]
    candidate_sources: list[str]
    settings: dict[str, str]
    note: str = ""

    @property
    def comparable(self) -> bool:
        compared = any(v.status not in ("added", "removed") for v in self.verdicts)
        return compared and (self.ignore_env or not self.env_differences)

    @property
    def compared(self) -> int:
        """How many benchmark metrics were judged (improved, unchanged, regressed, inconclusive)."""
        judged = ("improved", "unchanged", "regressed", "inconclusive")
        return sum(v.status in judged for v in self.verdicts)

    @property
    def not_comparable_verdicts(self) -> list[Verdict]:
        """Wall-time verdicts of suites whose run conditions differ beyond the floor."""
        return [v for v in self.verdicts if v.status == "not comparable"]

    @property
    def exit_code(self) -> int:
        """3 when the machines differ; else 2 when nothing was compared (and no wall time was
        found not comparable); else 1 when a judged figure fails (exact figures are judged
        whatever the load); else 3 when wall time was not comparable; else 0."""
        if not self.comparable:
            return EXIT_NOT_COMPARABLE
        if not self.compared and not self.not_comparable_verdicts:
            return EXIT_BAD_INPUT
        if any(_fails(v) for v in self.verdicts):
            return EXIT_REGRESSION
        if self.not_comparable_verdicts:
            return EXIT_NOT_COMPARABLE
        return EXIT_PASS

    @property
    def outcome(self) -> str:
        """PASS, REGRESSION, INSUFFICIENT DATA or INCONCLUSIVE (exit 1 without a regression),
        NOTHING COMPARED (exit 2) or NOT COMPARABLE (exit 3)."""
        code = self.exit_code
        if code == EXIT_REGRESSION and not any(v.status == "regressed" for v in self.verdicts):
            if any(v.status == "insufficient data" for v in self.verdicts):
                return "INSUFFICIENT DATA"
            return "INCONCLUSIVE"
        return {
            EXIT_PASS: "PASS",
            EXIT_REGRESSION: "REGRESSION",
            EXIT_BAD_INPUT: "NOTHING COMPARED",
            EXIT_NOT_COMPARABLE: "NOT COMPARABLE",
        }[code]

    def _explanation(self) -> str:
        """Why a gate without a regression did not pass, and which inconclusive verdicts it
        accepted (empty otherwise)."""
        outcome = self.outcome
        if outcome == "NOTHING COMPARED":
            return (
                "NOTHING COMPARED: no benchmark metric had enough data on both sides "
                "(see 'why'); a gate that compared nothing does not pass"
            )
        parts = []
        n = self.counts().get("insufficient data", 0)
        if n:
            parts.append(
                f"{n} comparison(s) lack data (see 'why'): insufficient data fails the gate; "
                "a rule with skip = true accepts a benchmark metric that has none"
            )
        n = sum(v.status == "inconclusive" and v.blocking for v in self.verdicts)
        if n:
            parts.append(
                f"{n} comparison(s) inconclusive (a change beyond the tolerance but within the "
                'measured A/A noise): fails the gate; on_inconclusive = "pass" in the rule '
                "accepts it"
            )
        n = sum(v.status == "inconclusive" and not v.blocking for v in self.verdicts)
        if n:
            parts.append(
                f'{n} comparison(s) inconclusive and accepted (on_inconclusive = "pass"): '
                "these benchmarks are too noisy to gate at their tolerance (see 'why')"
            )
        return "; ".join(parts)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for v in self.verdicts:
            out[v.status] = out.get(v.status, 0) + 1
        return out

    def _why_not_comparable(self) -> str:
        if self.env_differences and not self.ignore_env:
            return (
                "environments differ: "
                + "; ".join(self.env_differences)
                + " (use --ignore-env to compare anyway)"
            )
        if self.not_comparable_verdicts and self.comparable:
            parts = []
            by_reason: dict[str, list[str]] = {}
            cannot_tell = []
            for v in self.not_comparable_verdicts:
                if v.reason.startswith(CANNOT_TELL):
                    cannot_tell.append(v)
                    continue
                suite = v.group.split("/", 1)[0] or v.key
                suites = by_reason.setdefault(v.reason.removeprefix("run conditions differ: "), [])
                if suite not in suites:
                    suites.append(suite)
            if by_reason:
                n = len(self.not_comparable_verdicts) - len(cannot_tell)
                shown = "; ".join(f"{', '.join(s)}: {why}" for why, s in by_reason.items())
                parts.append(
                    f"the runs' conditions differ beyond what the between-run floor covers, "
                    f"so the wall time of {n} benchmark metric(s) was not judged ({shown})"
                )
            if cannot_tell:
                e = cannot_tell[0]
                parts.append(
                    f"{len(cannot_tell)} wall-time change(s) beyond the tolerance but within the "
                    f"between-run floor of separate runs on this machine, e.g. {e.name} "
                    f"{e.metric} {'' if e.between_change is None else f'{e.between_change:+.0%}'}"
                    f" within +-{e.floor or 0:.0%}: one run a side cannot tell them from load"
                )
            return (
                "; ".join(parts)
                + ". Use --baseline-ref REF (both sides run interleaved in one job) or "
                "--instructions (instruction counts, immune to load); exact figures were judged"
            )
        return "no benchmark is present in both baseline and candidate"

    def sorted_verdicts(self) -> list[Verdict]:
        return sorted(self.verdicts, key=lambda v: (_ORDER[v.status], v.group, v.name, v.metric))

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": "samplemind-gate-verdicts",
            "version": 1,
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "comparable": self.comparable,
            "wall_time_comparable": not self.not_comparable_verdicts,
            "env_differences": self.env_differences,
            "ignore_env": self.ignore_env,
            "baseline": self.baseline_sources,
            "candidate": self.candidate_sources,
            "settings": self.settings,
            "note": self.note,
            "counts": self.counts(),
            "verdicts": [v.as_dict() for v in self.sorted_verdicts()],
        }

    def _rows(self) -> list[list[str]]:
        rows = []
        for v in self.sorted_verdicts():
            ci = (
                f"±{v.margin:.2%} noise"
                if v.margin is not None
                else ""
                if v.ci_low is None or v.ci_high is None or v.test == "exact"
                else f"[{v.ci_low:.3f}, {v.ci_high:.3f}]"
            )
            rows.append(
                [
                    v.status,
                    v.name,
                    v.metric,
                    _fmt(v.metric, v.baseline),
                    _fmt(v.metric, v.candidate),
                    "" if v.ratio is None else f"{v.ratio:.3f}",
                    ci,
                    "" if v.p_adjusted is None else f"{v.p_adjusted:.2g}",
                    f"{v.n_baseline}/{v.n_candidate}",
                    v.reason,
                ]
            )
        return rows

    _HEAD = (
        "status",
        "benchmark",
        "metric",
        "baseline",
        "candidate",
        "ratio",
        "CI",
        "p adj",
        "n",
        "why",
    )

    def to_table(self) -> str:
        rows = [list(self._HEAD), *self._rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self._HEAD))]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
            for r in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        head = f"gate: {self.outcome}  " + ", ".join(
            f"{n} {s}" for s, n in sorted(self.counts().items())
        )
        tail = [f"  {k}: {val}" for k, val in self.settings.items()]
        if not self.comparable or self.not_comparable_verdicts:
            head += "\n  NOT COMPARABLE: " + self._why_not_comparable()
        elif self.env_differences:
            head += "\n  environments differ (ignored): " + "; ".join(self.env_differences)
        if self._explanation():
            head += "\n  " + self._explanation()
        if self.note:
            head += "\n  " + self.note
        return "\n".join([head, *lines, "settings:", *tail])

    def to_markdown(self) -> str:
        icon = {
            "PASS": "✅",
            "REGRESSION": "❌",
            "INSUFFICIENT DATA": "❌",
            "INCONCLUSIVE": "❌",
            "NOTHING COMPARED": "⚠️",
            "NOT COMPARABLE": "⚠️",
        }[self.outcome]
        out = [f"## Performance gate: {icon} {self.outcome}", ""]
        out.append(
            ", ".join(f"**{n}** {s}" for s, n in sorted(self.counts().items())) or "no benchmarks"
        )
        out.append("")
        if not self.comparable or self.not_comparable_verdicts:
            out += [f"**Not comparable:** {self._why_not_comparable()}", ""]
        elif self.env_differences:
            out += [
                "Environments differ (ignored with `--ignore-env`): "
                + "; ".join(self.env_differences),
                "",
            ]
        if self._explanation():
            out += [self._explanation(), ""]
        if self.note:
            out += [self.note, ""]
        out.append("| " + " | ".join(self._HEAD) + " |")
        out.append("|" + "---|" * len(self._HEAD))
        for r in self._rows():
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
        out += ["", "<details><summary>settings</summary>", ""]
        out += [f"- {k}: `{val}`" for k, val in self.settings.items()]
        out += ["", "</details>", ""]
        return "\n".join(out)


def _fmt(metric: str, value: float | None) -> str:
    if value is None:
        return ""
    if not math.isfinite(value):
        return str(value)
    if metric == "instructions":
        return f"{value:,.1f}"
    if metric == "time":
        for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
            if abs(value) >= scale:
                return f"{value / scale:.3g} {unit}"
        return f"{value / 1e-9:.3g} ns"
    return f"{value:.4g}"
