"""The precision–coverage frontier: pass@k curves, the upper-right hull, bootstrap bands over
problems, paired-bootstrap significance, difficulty transitions, all from per-problem tables.

Input: the per-problem tables written by :mod:`lit_alpha.analysis.evaluate` (``eval/eval_<split>.jsonl``
artifacts of the runs of one MLflow experiment): one row per problem with ``problem_id``, ``n``
samples, ``c`` correct, the problem's ``numbers``/``target`` and diversity columns. Nothing is
re-sampled: every number below is a function of those counts.

* pass@k per problem is the unbiased ``1 − C(n−c,k)/C(n,k)``; a run's curve is its mean over problems.
* A *run* is one table; runs named ``<method>-s<seed>`` can be grouped (``group_seeds``): the
  group's per-problem pass@k is the mean over its seeds.
* Bootstrap over problems: ``B`` resamples of problem indices drawn once from ``seed``; the same
  resamples are used for every run, so differences between runs are *paired* (the problems are the
  same, drawn jointly). Intervals are percentile intervals; the two-sided p-value of a difference
  is ``2·min(P*(Δ < 0), P*(Δ > 0))`` over the resamples (ties at 0 count half; clipped to 1).
* The upper-right hull is the set of non-dominated (pass@1, pass@k) points (no other point is at
  least as good in both and better in one), sorted by pass@1: the best coverage reachable at each
  precision. Its bootstrap band is the pointwise percentile band of the staircase
  ``f(x) = max{pass@k_i : pass@1_i ≥ x}`` over resamples.
* The random guesser (uniform well-formed expressions over the numbers, :mod:`lit_alpha.tasks.countdown.guesser`)
  has an exact per-problem hit probability ``p``, so its per-problem pass@k is ``1 − (1 − p)^k``.
* Difficulty bins by fraction solved ``c/n``: unsolved (0), hard (0, 0.25], medium (0.25, 0.75],
  easy (0.75, 1]; the transition table counts problems by (bin under the base, bin after tuning).

``python -m lit_alpha frontier --experiment NAME [--k 256] [--out DIR]`` draws the figures, prints
the tables, writes everything to ``--out`` and logs it to a ``frontier`` run of the experiment.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

EVAL_ARTIFACT_DIR = "eval"
FRONTIER_RUN_NAME = "frontier"
KIND_TAG = "lit_alpha.kind"


# -- per-problem pass@k -----------------------------------------------------------------------

from lit_alpha.analysis.stats import (  # noqa: F401 - re-exported: the notebook and tests use them
    GUESSER,
    TARGET_COLUMNS,
    BIN_NAMES,
    DEFAULT_BIN_EDGES,
    default_ks,
    pass_at_k_per_problem,
    pass_at_k_matrix,
    guesser_matrix,
    guesser_hit_probabilities,
    shannon_entropy,
    simpson_index,
    RunResult,
    read_table,
    align,
    _subset,
    _SEED_SUFFIX,
    method_of,
    group_seeds,
    guesser_run,
    run_matrix,
    pass_at_k_curve,
    bootstrap_indices,
    bootstrap_means,
    percentile_interval,
    curve_with_band,
    PairedDifference,
    paired_bootstrap,
    significance_table,
    upper_right_hull,
    staircase,
    hull_band,
    difficulty_bins,
    transition_table,
    format_transition,
)


@dataclass
class Analysis:
    split: str
    runs: list[RunResult]  # aligned, guesser last if present
    ks: list[int]
    k: int
    idx: np.ndarray
    level: float
    reference: str | None

    def curves(self) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        return {r.name: curve_with_band(r, self.ks, self.idx, self.level) for r in self.runs}

    def points(self) -> dict[str, tuple[float, float, float, float, float, float]]:
        """name → (pass@1, lo, hi, pass@k, lo, hi)."""
        out = {}
        for r in self.runs:
            m = run_matrix(r, [1, self.k])
            mean = m.mean(0)
            lo, hi = percentile_interval(bootstrap_means(m, self.idx), self.level)
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
        return significance_table(self.models(), sorted({1, self.k}), self.idx, ref, self.level)

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
                boot = np.array([np.nanmean(v[i]) for i in self.idx])  # [B] over the same resamples
                lo, hi = np.nanpercentile(boot, [50 * (1 - self.level), 50 * (1 + self.level)])
                row.update({col: float(np.nanmean(v)), f"{col}_lo": float(lo), f"{col}_hi": float(hi)})
                row.setdefault("problems", int(np.isfinite(v).sum()))
            if row:
                rows.append({"run": r.name, **row})
        keys = list(dict.fromkeys(k for row in rows for k in row))  # every column in every row
        return [{k: row.get(k, float("nan")) for k in keys} for row in rows]


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
    if guesser:
        g = guesser_run(runs[0])
        if g is not None:
            runs = list(runs) + [g]
    names = [r.name for r in runs]
    if reference is not None and reference not in names:
        reference = None
    idx = bootstrap_indices(len(runs[0].problem_ids), num_boot, seed)
    return Analysis(split, list(runs), ks, k, idx, level, reference)


# -- figures ------------------------------------------------------------------------------
def _colors(names: Sequence[str]) -> dict[str, Any]:
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def plot_passk(analysis: Analysis, ax=None, title: str | None = None):
    """pass@k curves (k on a log axis) with bootstrap bands; the guesser dashed grey."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 5))
    colors = _colors([r.name for r in analysis.models()])
    for name, (mean, low, high) in analysis.curves().items():
        style = dict(color="0.4", ls="--") if name == GUESSER else dict(color=colors[name])
        ax.plot(analysis.ks, mean, marker="o", ms=3, label=name, **style)
        ax.fill_between(analysis.ks, low, high, alpha=0.15, color=style["color"], lw=0)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(title or f"pass@k on {analysis.split} ({len(analysis.runs[0].problem_ids)} problems, "
                          f"{int(analysis.level * 100)}% bootstrap bands)")
    ax.legend(fontsize=7, loc="lower right")
    return ax.figure


def plot_frontier(analysis: Analysis, ax=None, title: str | None = None):
    """Every run as a point (pass@1, pass@k) with bootstrap error bars, the upper-right hull and its
    bootstrap band, the guesser as a reference."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 5))
    pts = analysis.points()
    models = analysis.models()
    colors = _colors([r.name for r in models])
    for name, (x, xl, xh, y, yl, yh) in pts.items():
        color = "0.4" if name == GUESSER else colors[name]
        ax.errorbar([x], [y], xerr=[[x - xl], [xh - x]], yerr=[[y - yl], [yh - y]], fmt="x" if name == GUESSER else "o",
                    color=color, ms=6, capsize=2, lw=1, label=name)
    hull = analysis.hull()
    if hull:
        hx = np.asarray([pts[n][0] for n in hull])
        hy = np.asarray([pts[n][3] for n in hull])
        grid = np.linspace(0, max(pts[r.name][2] for r in models), 300)
        ax.plot(grid, staircase(np.stack([hx, hy], 1), grid), color="k", lw=1.2, zorder=0,
                label="upper-right hull")
        mats = [run_matrix(r, [1, analysis.k]) for r in models]
        low, high = hull_band(mats, analysis.idx, grid, analysis.level)
        ax.fill_between(grid, low, high, color="k", alpha=0.08, lw=0, label="hull bootstrap band")
    ax.set_xlabel("pass@1 (precision)")
    ax.set_ylabel(f"pass@{analysis.k} (coverage)")
    ax.grid(alpha=0.3)
    ax.set_title(title or f"precision–coverage frontier on {analysis.split}")
    ax.legend(fontsize=7, loc="lower right")
    return ax.figure


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
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    import csv

    with path.open("w", newline="") as f:
        if not rows:
            return
        keys = list(dict.fromkeys(k for row in rows for k in row))  # a column some runs lack is left empty
        w = csv.DictWriter(f, fieldnames=keys, restval="")
        w.writeheader()
        w.writerows(rows)


# -- MLflow -------------------------------------------------------------------------------
def load_experiment(tracking_uri: str, experiment: str, split: str = "val",
                    runs: Sequence[str] | None = None) -> list[RunResult]:
    """Every run of ``experiment`` that has an ``eval/eval_<split>.jsonl`` artifact (the latest such
    run of each name wins; ``frontier`` runs are skipped; ``runs`` keeps only these names)."""
    found = [RunResult.from_rows(name, rows, run_id)
             for name, (run_id, rows) in load_tables(tracking_uri, experiment, split, runs).items()]
    return sorted(found, key=lambda r: (r.name != "base", r.name))


def load_tables(tracking_uri: str, experiment: str, split: str = "val",
                runs: Sequence[str] | None = None) -> dict[str, tuple[str, list[dict[str, Any]]]]:
    """``{run name: (run id, table rows)}`` for the runs :func:`load_experiment` reads."""
    from mlflow.tracking import MlflowClient

    from lit_alpha.training.tracking import normalize_tracking_uri

    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = MlflowClient(normalize_tracking_uri(tracking_uri))
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ValueError(f"no MLflow experiment named {experiment!r} in {tracking_uri}")
    found: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    artifact = f"{EVAL_ARTIFACT_DIR}/eval_{split}.jsonl"
    with tempfile.TemporaryDirectory() as tmp:
        for run in client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=5000):
            name = run.info.run_name or run.info.run_id
            if run.data.tags.get(KIND_TAG) == FRONTIER_RUN_NAME or name in found:
                continue
            if runs is not None and name not in runs:
                continue
            names = {a.path for a in client.list_artifacts(run.info.run_id, EVAL_ARTIFACT_DIR)}
            if artifact not in names:
                continue
            local = client.download_artifacts(run.info.run_id, artifact, tmp)
            found[name] = (run.info.run_id, read_table(local))
    return found


def report(analysis: Analysis, out: Path, all_pairs: bool = False, echo=print) -> list[Path]:
    """Write the figures (PNG) and tables (CSV/TXT) of one split to ``out``; print the tables."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    files = []
    s = analysis.split
    for name, plot in [(f"frontier_{s}.png", plot_frontier), (f"passk_{s}.png", plot_passk)]:
        fig = plot(analysis)
        fig.tight_layout()
        fig.savefig(out / name, dpi=120)
        plt.close(fig)
        files.append(out / name)
    text = [f"== {s}: {len(analysis.runs[0].problem_ids)} problems, k={analysis.k}, "
            f"{analysis.idx.shape[0]} bootstrap resamples, {int(analysis.level * 100)}% intervals ==",
            format_points(analysis)]
    curve_rows = [{"run": name, **{f"pass@{k}": float(v) for k, v in zip(analysis.ks, mean)}}
                  for name, (mean, _, _) in analysis.curves().items()]
    _write_csv(out / f"passk_{s}.csv", curve_rows)
    files.append(out / f"passk_{s}.csv")
    text += ["", "pass@k:", format_rows(curve_rows)]
    sig = analysis.significance(all_pairs)
    sig_rows = [r.__dict__ | {"significant": r.significant} for r in sig]
    _write_csv(out / f"significance_{s}.csv", sig_rows)
    files.append(out / f"significance_{s}.csv")
    text += ["", "paired bootstrap (a − b):", format_significance(sig)]
    div = analysis.diversity_rows()
    _write_csv(out / f"diversity_{s}.csv", div)
    files.append(out / f"diversity_{s}.csv")
    text += ["", "diversity (means over problems):", format_rows(div)]
    target = analysis.target_rows()
    if target:
        _write_csv(out / f"target_{s}.csv", target)
        files.append(out / f"target_{s}.csv")
        text += ["", "divergence to the target p ∝ π_base·v (nats; problems the base solves):", format_rows(target)]
    trans = analysis.transitions()
    if trans:
        text += ["", "difficulty transitions (problems by fraction solved; rows base, columns tuned):"]
        rows = []
        for name, t in trans.items():
            text += [format_transition(t, analysis.reference, name), ""]
            rows += [{"tuned": name, "base_bin": BIN_NAMES[i], **{b: int(t[i, j]) for j, b in enumerate(BIN_NAMES)}}
                     for i in range(4)]
        _write_csv(out / f"transitions_{s}.csv", rows)
        files.append(out / f"transitions_{s}.csv")
    (out / f"tables_{s}.txt").write_text("\n".join(text) + "\n")
    files.append(out / f"tables_{s}.txt")
    echo("\n".join(text))
    return files


def main(argv: Sequence[str] | None = None) -> int:
    from lit_alpha.cli.commands import ArgParser

    parser = ArgParser(prog="python -m lit_alpha frontier", description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", default="lit_alpha", help="MLflow experiment to read")
    parser.add_argument("--tracking_uri", default="sqlite:///mlruns/mlflow.db")
    parser.add_argument("--splits", nargs="+", default=["val", "train"],
                        help="splits to analyse (those without tables are skipped)")
    parser.add_argument("--k", type=int, default=None, help="coverage k of the frontier (default: the smallest n)")
    parser.add_argument("--runs", nargs="+", default=None, help="only these run names")
    parser.add_argument("--reference", default="base", help="run the transitions and significance compare to")
    parser.add_argument("--all_pairs", action="store_true", help="significance for every pair of runs")
    parser.add_argument("--group_seeds", action="store_true", help="average <method>-s<seed> runs per method")
    parser.add_argument("--num_boot", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="seeds the bootstrap resamples")
    parser.add_argument("--level", type=float, default=0.95)
    parser.add_argument("--out", default="frontier", help="directory for PNGs and tables")
    parser.add_argument("--no_mlflow", action="store_true", help="do not log a frontier run")
    args = parser.parse_args(argv)
    out = Path(args.out)
    files: list[Path] = []
    for split in args.splits:
        try:
            runs = load_experiment(args.tracking_uri, args.experiment, split, args.runs)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        if not runs:
            print(f"({split}: no run of {args.experiment!r} has an eval/eval_{split}.jsonl table; skipped)")
            continue
        try:
            analysis = analyse(runs, split, args.k, args.num_boot, args.seed, args.level, args.reference,
                               seeds_grouped=args.group_seeds)
        except ValueError as err:
            print(f"error: {split}: {err}", file=sys.stderr)
            return 2
        files += report(analysis, out, args.all_pairs)
        print()
    if not files:
        print(f"error: no evaluation table in experiment {args.experiment!r}: run python -m lit_alpha evaluate first",
              file=sys.stderr)
        return 2
    if not args.no_mlflow:
        run_id = log_report(args.tracking_uri, args.experiment, files, vars(args))
        print(f"logged {len(files)} files to MLflow run {FRONTIER_RUN_NAME!r} ({run_id})")
    print(f"wrote {len(files)} files to {out}/")
    return 0


def log_report(tracking_uri: str, experiment: str, files: Sequence[Path], params: Mapping[str, Any]) -> str:
    """A new ``frontier`` run in the experiment with the files as artifacts (``frontier/``)."""
    from mlflow.tracking import MlflowClient

    from lit_alpha.training.tracking import normalize_tracking_uri

    client = MlflowClient(normalize_tracking_uri(tracking_uri))
    exp = client.get_experiment_by_name(experiment)
    run = client.create_run(exp.experiment_id, run_name=FRONTIER_RUN_NAME, tags={KIND_TAG: FRONTIER_RUN_NAME})
    from mlflow.entities import Param

    client.log_batch(run.info.run_id, params=[Param(k, str(v)[:500]) for k, v in params.items()])
    for f in files:
        client.log_artifact(run.info.run_id, str(f), FRONTIER_RUN_NAME)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


if __name__ == "__main__":
    raise SystemExit(main())
