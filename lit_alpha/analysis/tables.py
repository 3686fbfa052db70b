"""The frontier analysis of one split, from aligned per-problem results, and its tables as text.

:func:`analyse` aligns the runs on their shared problems, picks the ks and the frontier's k and draws
the bootstrap resamples once; :class:`Analysis` then gives the curves with bands, the (pass@1, pass@k)
points, the upper-right hull, paired significance, difficulty transitions and diversity/divergence rows.
Pure numpy (statistics in :mod:`lit_alpha.analysis.stats`); figures in :mod:`lit_alpha.analysis.figures`,
files and MLflow in :mod:`lit_alpha.analysis.frontier`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from lit_alpha.analysis.stats import (
    GUESSER,
    TARGET_COLUMNS,
    Bootstrap,
    PairedDifference,
    RunResult,
    align,
    curve_with_band,
    default_ks,
    group_seeds,
    guesser_run,
    significance_table,
    transition_table,
    upper_right_hull,
)
from lit_alpha.tasks.countdown.guesser import hit_probabilities as countdown_hit_probabilities

SUMMARY_KS = (1, 16, 256)  # the columns of the results summary (docs/results/summary_<split>.csv)


@dataclass
class Analysis:
    split: str
    runs: list[RunResult]  # aligned, guesser last if present
    ks: list[int]
    k: int
    boot: Bootstrap  # the resamples of the problems every interval uses
    reference: str | None

    @property
    def level(self) -> float:
        return self.boot.level

    def curves(self) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        return {r.name: curve_with_band(r, self.ks, self.boot) for r in self.runs}

    def points(self) -> dict[str, tuple[float, float, float, float, float, float]]:
        """name → (pass@1, lo, hi, pass@k, lo, hi)."""
        out = {}
        for r in self.runs:
            m = r.matrix([1, self.k])
            mean = m.mean(0)
            lo, hi = self.boot.interval(m)
            out[r.name] = (mean[0], lo[0], hi[0], mean[1], lo[1], hi[1])
        return out

    def models(self) -> list[RunResult]:
        return [r for r in self.runs if r.name != GUESSER]

    def hull(self) -> list[str]:
        models = self.models()
        pts = self.points()
        idx = upper_right_hull([(pts[r.name][0], pts[r.name][3]) for r in models])
        return [models[i].name for i in idx]

    def significance(self, all_pairs: bool = False) -> list[PairedDifference]:
        ref = None if all_pairs else self.reference
        return significance_table(self.models(), sorted({1, self.k}), self.boot, ref)

    def transitions(self) -> dict[str, np.ndarray]:
        if self.reference is None:
            return {}
        by = {r.name: r for r in self.models()}
        return {name: transition_table(by[self.reference], r) for name, r in by.items() if name != self.reference}

    def diversity_rows(self) -> list[dict[str, Any]]:
        rows = []
        for r in self.models():
            row = {"run": r.name, "problems": len(r.problem_ids), "n": int(r.n.min())}
            row.update({k: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
                        for k, v in r.diversity.items()})
            rows.append(row)
        return rows

    def target_rows(self) -> list[dict[str, Any]]:
        """Mean divergence to the target over the problems the base solves, with bootstrap intervals."""
        rows = []
        for r in self.models():
            row: dict[str, Any] = {}
            for col in TARGET_COLUMNS:
                v = r.diversity.get(col)
                if v is None or not np.isfinite(v).any():
                    continue
                lo, hi = self.boot.interval(v, np.nanmean)  # mean over the problems the base solves
                row.update({col: float(np.nanmean(v)), f"{col}_lo": float(lo), f"{col}_hi": float(hi)})
                row.setdefault("problems", int(np.isfinite(v).sum()))
            if row:
                rows.append({"run": r.name, **row})
        keys = list(dict.fromkeys(k for row in rows for k in row))  # every column in every row
        return [{k: row.get(k, float("nan")) for k in keys} for row in rows]


    def seed_rows(self, ks: Sequence[int] = SUMMARY_KS) -> list[dict[str, Any]]:
        """Per method with several seeds: the mean and the sample sd (ddof 1) *over seeds* of each seed's
        pass@k (mean over problems), distinct correct and KL to the target: the run-to-run spread that
        the bootstrap intervals over problems do not show. Empty when no run was grouped."""
        n_min = int(min(int(r.n.min()) for r in self.models())) if self.models() else 0
        rows = []
        for r in self.models():
            if len(r.members) < 2:
                continue
            per_seed: dict[str, list[float]] = {}
            for m in r.members:
                for k in ks:
                    if k <= n_min:
                        per_seed.setdefault(f"pass@{k}", []).append(float(m.matrix([k]).mean()))
                for col in ("distinct_correct", "fkl_to_target"):
                    v = m.diversity.get(col)
                    if v is not None and np.isfinite(v).any():
                        per_seed.setdefault(col, []).append(float(np.nanmean(v)))
            row: dict[str, Any] = {"method": r.name, "seeds": len(r.members)}
            for col, values in per_seed.items():
                if len(values) == len(r.members):
                    row[col], row[f"{col}_sd"] = float(np.mean(values)), float(np.std(values, ddof=1))
            rows.append(row)
        return rows

    def summary_rows(self, ks: Sequence[int] = SUMMARY_KS) -> list[dict[str, Any]]:
        """One row per method (and ``guesser``): ``method, seeds, pass@k… , distinct_correct,
        fkl_to_target``; fractions in [0, 1], means over problems (a grouped method: over its seeds);
        ``None`` (an empty CSV cell) where not defined: a k above the samples per problem, the
        guesser's diversity, a run without the divergence column."""
        n_min = int(min(int(r.n.min()) for r in self.models())) if self.models() else 0
        rows = []
        for r in self.runs:
            guesser = r.name == GUESSER
            row: dict[str, Any] = {"method": "guesser" if guesser else r.name,
                                   "seeds": None if guesser else max(len(r.members), 1)}
            for k in ks:
                row[f"pass@{k}"] = float(r.matrix([k]).mean()) if guesser or k <= n_min else None
            for col in ("distinct_correct", "fkl_to_target"):
                v = r.diversity.get(col)
                row[col] = float(np.nanmean(v)) if v is not None and np.isfinite(v).any() else None
            rows.append(row)
        return rows



def task_guesser(records: Sequence[Mapping[str, Any]]):
    """The random guesser's per-problem hit probabilities for the task these problem records come
    from, or None when the task has no guesser (Countdown's records carry ``numbers`` and ``target``)."""
    if records and "numbers" in records[0] and "target" in records[0]:
        return countdown_hit_probabilities
    return None

def analyse(runs: Sequence[RunResult], split: str = "val", k: int | None = None, num_boot: int = 1000,
            seed: int = 0, level: float = 0.95, reference: str | None = "base", guesser: bool = True,
            seeds_grouped: bool = False) -> Analysis:
    """Align runs on their shared problems, choose ks (1, 2, 4, … up to the smallest n) and the
    frontier's k (default: the smallest n), draw the bootstrap resamples once."""
    if not runs:
        raise ValueError("no runs to analyse")
    runs = align(runs)
    n_min = int(min(int(r.n.min()) for r in runs))
    k = n_min if k is None else int(k)
    if not 1 <= k <= n_min:
        raise ValueError(f"k must be in [1, {n_min}] (the fewest samples per problem of any run), got {k}")
    ks = sorted(set(default_ks(n_min)) | {k})
    if seeds_grouped:
        runs = group_seeds(runs)
    hit_probabilities = task_guesser(runs[0].records) if guesser else None
    if hit_probabilities is not None:
        g = guesser_run(runs[0], hit_probabilities)
        if g is not None:
            runs = list(runs) + [g]
    names = [r.name for r in runs]
    if reference is not None and reference not in names:
        reference = None
    boot = Bootstrap(len(runs[0].problem_ids), num_boot, seed, level)
    return Analysis(split, list(runs), ks, k, boot, reference)


# -- tables as text -----------------------------------------------------------------------
def format_points(analysis: Analysis) -> str:
    hull = set(analysis.hull())
    lines = [f"{'run':<24}{'pass@1':>18}{'pass@' + str(analysis.k):>18}  hull"]
    for name, (x, xl, xh, y, yl, yh) in analysis.points().items():
        lines.append(f"{name:<24}{x:>8.3f} [{xl:.3f},{xh:.3f}]{y:>6.3f} [{yl:.3f},{yh:.3f}]  {'*' if name in hull else ''}")
    return "\n".join(lines)


def format_significance(rows: Sequence[PairedDifference]) -> str:
    lines = [f"{'a':<20}{'b':<20}{'k':>5}{'a−b':>9}{'CI low':>9}{'CI high':>9}{'p':>8}  sig"]
    for r in rows:
        lines.append(f"{r.a:<20}{r.b:<20}{r.k:>5}{r.diff:>9.3f}{r.low:>9.3f}{r.high:>9.3f}{r.p_value:>8.3f}  "
                     f"{'*' if r.significant else ''}")
    return "\n".join(lines)


def format_rows(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "(none)"
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) + 2 for c in cols}
    lines = ["".join(f"{c:>{widths[c]}}" for c in cols)]
    lines += ["".join(f"{_fmt(r.get(c)):>{widths[c]}}" for c in cols) for r in rows]
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else "" if v is None else str(v)
