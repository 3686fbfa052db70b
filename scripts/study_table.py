"""Print a markdown table of an experiment's runs: evaluation metrics and training diagnostics.

``python scripts/study_table.py --experiment small_alpha [--tracking_uri sqlite:///mlruns/mlflow.db]
[--split val] [--csv OUT.csv]``

One row per run (newest run of each name): pass@1/16/256, distinct correct answers and the forward KL
to the target from the run's ``eval/<split>/*`` metrics (written by ``python -m lit_alpha evaluate``),
and, for trained runs, training diagnostics averaged over the run's steps: ``train/ess_frac``,
``train/pseudo_reward_clip_frac``, ``train/z_mean``, ``train/zero_success_frac``, and the last
``train/reward_mean`` (mean of the last 20 steps), plus the run's wall time.
"""

from __future__ import annotations

import argparse
import csv
from typing import Sequence

import numpy as np

EVAL = ("pass_at_1", "pass_at_16", "pass_at_256", "distinct_correct", "fkl_to_target", "alpha_div_to_target")
TRAIN_MEAN = ("train/ess_frac", "train/pseudo_reward_clip_frac", "train/z_mean", "train/zero_success_frac")


def rows(tracking_uri: str, experiment: str, split: str) -> list[dict]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise SystemExit(f"error: experiment: no experiment named {experiment!r}")
    seen, out = set(), []
    for run in client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=5000):
        name = run.info.run_name
        if name in seen or f"eval/{split}/pass_at_1" not in run.data.metrics:
            continue
        seen.add(name)
        m = run.data.metrics
        row = {"run": name, **{k: m.get(f"eval/{split}/{k}") for k in EVAL}}
        for key in TRAIN_MEAN:
            hist = client.get_metric_history(run.info.run_id, key)
            row[key.split("/")[1]] = float(np.mean([h.value for h in hist])) if hist else None
        hist = client.get_metric_history(run.info.run_id, "train/reward_mean")
        row["reward_last20"] = float(np.mean([h.value for h in sorted(hist, key=lambda h: h.step)[-20:]])) if hist else None
        end = run.info.end_time or run.info.start_time
        row["train_min"] = round((end - run.info.start_time) / 60000, 1) if hist else None
        out.append(row)
    return sorted(out, key=lambda r: (r["run"] != "base", r["run"]))


def markdown(table: Sequence[dict]) -> str:
    cols = list(table[0])
    fmt = lambda v: "" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in table]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--experiment", required=True)
    p.add_argument("--tracking_uri", default="sqlite:///mlruns/mlflow.db")
    p.add_argument("--split", default="val")
    p.add_argument("--csv", default=None)
    a = p.parse_args(argv)
    table = rows(a.tracking_uri, a.experiment, a.split)
    if not table:
        print("no evaluated runs")
        return 1
    print(markdown(table))
    if a.csv:
        with open(a.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(table[0]))
            w.writeheader()
            w.writerows(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
