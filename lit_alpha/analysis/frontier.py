"""The precision–coverage frontier: pass@k curves, the upper-right hull, bootstrap bands over
problems, paired-bootstrap significance, difficulty transitions, all from per-problem tables.

Input: the per-problem tables written by :mod:`lit_alpha.analysis.evaluate` (``eval/eval_<split>.jsonl``
artifacts of the runs of one MLflow experiment): one row per problem with ``problem_id``, ``n``
samples, ``c`` correct, the problem's ``numbers``/``target`` and diversity columns. Nothing is
re-sampled: every number below is a function of those counts.

* pass@k per problem is the unbiased ``1 − C(n−c,k)/C(n,k)``; a run's curve is its mean over problems.
* A *run* is one table; runs named ``<method>-s<seed>`` can be grouped (``group_seeds``): the
  group's per-problem pass@k is the mean over its seeds.
* Bootstrap over problems (``scipy.stats.bootstrap``, percentile intervals): ``B`` resamples of problem
  indices drawn from ``seed``; the same resamples are used for every run, so differences between runs
  are *paired* (the problems are the same, drawn jointly). The two-sided p-value of a difference
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

import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from jsonargparse.typing import OpenUnitInterval, PositiveInt

from lit_alpha.analysis.stats import BIN_NAMES, RunResult, format_transition, read_table
from lit_alpha.analysis.tables import Analysis, analyse, format_points, format_rows, format_significance

EVAL_ARTIFACT_DIR = "eval"
FRONTIER_RUN_NAME = "frontier"
KIND_TAG = "lit_alpha.kind"


# -- files --------------------------------------------------------------------------------
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
    from lit_alpha.training.tracking import runs_named, store_client

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = store_client(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ValueError(f"no MLflow experiment named {experiment!r} in {tracking_uri}")
    found: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    artifact = f"{EVAL_ARTIFACT_DIR}/eval_{split}.jsonl"
    candidates = (runs_named(client, exp.experiment_id, None) if runs is None
                  else sorted((r for name in dict.fromkeys(runs) for r in runs_named(client, exp.experiment_id, name)),
                              key=lambda r: -(r.info.start_time or 0)))  # newest first, as one query would
    with tempfile.TemporaryDirectory() as tmp:
        for run in candidates:
            name = run.info.run_name or run.info.run_id
            if run.data.tags.get(KIND_TAG) == FRONTIER_RUN_NAME or name in found:
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

    from lit_alpha.analysis.figures import plot_frontier, plot_passk

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
            f"{analysis.boot.num_boot} bootstrap resamples, {int(analysis.level * 100)}% intervals ==",
            format_points(analysis)]
    def table(name: str, rows: Sequence[Mapping[str, Any]], title: str, shown: str | None = None) -> None:
        """``<name>_<split>.csv`` written and listed; the rows (or ``shown``) printed under ``title``."""
        _write_csv(out / f"{name}_{s}.csv", rows)
        files.append(out / f"{name}_{s}.csv")
        text.extend(["", title, shown if shown is not None else format_rows(rows)])

    hull = set(analysis.hull())
    point_rows = [{"run": name, "pass@1": x, "pass@1_lo": xl, "pass@1_hi": xh, f"pass@{analysis.k}": y,
                   f"pass@{analysis.k}_lo": yl, f"pass@{analysis.k}_hi": yh, "hull": name in hull}
                  for name, (x, xl, xh, y, yl, yh) in analysis.points().items()]
    _write_csv(out / f"points_{s}.csv", [{k: float(v) if isinstance(v, np.floating) else v for k, v in r.items()}
                                         for r in point_rows])
    files.append(out / f"points_{s}.csv")
    curve_rows = [{"run": name, **{f"pass@{k}": float(v) for k, v in zip(analysis.ks, mean)}}
                  for name, (mean, _, _) in analysis.curves().items()]
    table("passk", curve_rows, "pass@k:")
    sig = analysis.significance(all_pairs)
    table("significance", [r.__dict__ | {"significant": r.significant} for r in sig], "paired bootstrap (a − b):",
          format_significance(sig))
    table("diversity", analysis.diversity_rows(), "diversity (means over problems):")
    target = analysis.target_rows()
    if target:
        table("target", target, "divergence to the target p ∝ π_base·v (nats; problems the base solves):")
    table("summary", analysis.summary_rows(), "summary (one row per method; empty: not defined):")
    seeds = analysis.seed_rows()
    if seeds:
        table("seeds", seeds, "over seeds (mean and sd of each seed's value; methods with several seeds):")
    trans = analysis.transitions()
    if trans:
        rows = [{"tuned": name, "base_bin": BIN_NAMES[i], **{b: int(t[i, j]) for j, b in enumerate(BIN_NAMES)}}
                for name, t in trans.items() for i in range(4)]
        shown = "\n".join(f"{format_transition(t, analysis.reference, name)}\n" for name, t in trans.items())
        table("transitions", rows, "difficulty transitions (problems by fraction solved; rows base, columns tuned):",
              shown)
    (out / f"tables_{s}.txt").write_text("\n".join(text) + "\n")
    files.append(out / f"tables_{s}.txt")
    echo("\n".join(text))
    return files


def frontier(experiment: str = "lit_alpha", tracking_uri: str = "sqlite:///mlruns/mlflow.db",
             splits: list[str] = ["val", "train"], k: PositiveInt | None = None,  # noqa: B006 - read only
             runs: list[str] | None = None, reference: str = "base", all_pairs: bool = False,
             group_seeds: bool = False, num_boot: PositiveInt = 1000, seed: int = 0,
             level: OpenUnitInterval = 0.95, out: str = "frontier", no_mlflow: bool = False) -> int:
    """The precision–coverage frontier of an experiment: figures, tables and paired tests from its eval tables.

    Args:
        experiment: MLflow experiment to read
        tracking_uri: the MLflow store
        splits: splits to analyse (those without tables are skipped)
        k: coverage k of the frontier (default: the smallest n)
        runs: only these run names
        reference: run the transitions and significance compare to
        all_pairs: significance for every pair of runs
        group_seeds: average <method>-s<seed> runs per method
        num_boot: bootstrap resamples of the problems
        seed: seeds the bootstrap resamples
        level: confidence level of the intervals
        out: directory for PNGs and tables
        no_mlflow: do not log a frontier run
    """
    settings = dict(locals())
    files: list[Path] = []
    for split in splits:
        try:
            found = load_experiment(tracking_uri, experiment, split, runs)
        except ValueError as err:
            print(f"error: experiment: {err}", file=sys.stderr)
            return 2
        if not found:
            print(f"({split}: no run of {experiment!r} has an eval/eval_{split}.jsonl table; skipped)")
            continue
        try:
            analysis = analyse(found, split, k, num_boot, seed, level, reference, seeds_grouped=group_seeds)
        except ValueError as err:
            print(f"error: {split}: {err}", file=sys.stderr)
            return 2
        files += report(analysis, Path(out), all_pairs)
        print()
    if not files:
        print(f"error: experiment: no evaluation table in experiment {experiment!r}: run python -m lit_alpha "
              "evaluate first", file=sys.stderr)
        return 2
    if not no_mlflow:
        run_id = log_report(tracking_uri, experiment, files, settings)
        print(f"logged {len(files)} files to MLflow run {FRONTIER_RUN_NAME!r} ({run_id})")
    print(f"wrote {len(files)} files to {out}/")
    return 0


def log_report(tracking_uri: str, experiment: str, files: Sequence[Path], params: Mapping[str, Any]) -> str:
    """A new ``frontier`` run in the experiment with the files as artifacts (``frontier/``)."""
    from mlflow.entities import Param

    from lit_alpha.training.tracking import store_client

    client = store_client(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    run = client.create_run(exp.experiment_id, run_name=FRONTIER_RUN_NAME, tags={KIND_TAG: FRONTIER_RUN_NAME})
    client.log_batch(run.info.run_id, params=[Param(k, str(v)[:500]) for k, v in params.items()])
    for f in files:
        client.log_artifact(run.info.run_id, str(f), FRONTIER_RUN_NAME)
    client.set_terminated(run.info.run_id)
    return run.info.run_id
