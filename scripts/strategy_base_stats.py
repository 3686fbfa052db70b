"""Base statistics of the strategy benchmark's embedded base, both arms, written beside the asset.

    python scripts/strategy_base_stats.py [--n 256] [--eval_seed 0] [--out eval/strategy-base]

For each arm (hidden: configs/strategy/task.yaml; control: configs/strategy/control.yaml) this runs
the project's evaluation of the base model (``python -m lit_alpha evaluate --config configs/a05.yaml
--config <arm config> --n N --no_mlflow --out <out>/<arm>``; the method config only completes the run
config, the base model is what is sampled), then computes the statistics of
:func:`lit_alpha.tasks.strategy.stats.base_statistics` from the table and stores them under
``base_statistics`` in ``lit_alpha/assets/strategy-tiny/training_info.json`` (and ``<out>/stats.json``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from lit_alpha.analysis.evaluate import evaluate
from lit_alpha.analysis.stats import read_table
from lit_alpha.tasks.strategy.stats import base_statistics
from lit_alpha.tasks.strategy.task import StrategyTask

REPO = Path(__file__).resolve().parents[1]
ARMS = {"hidden": "configs/strategy/task.yaml", "control": "configs/strategy/control.yaml"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--eval_seed", type=int, default=0)
    parser.add_argument("--out", default="eval/strategy-base")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--model", default=None, help="another model directory (default: strategy-tiny)")
    parser.add_argument("--num_problems", type=int, default=None, help="only the first N val problems")
    parser.add_argument("--info", default=str(REPO / "lit_alpha/assets/strategy-tiny/training_info.json"))
    args = parser.parse_args()
    result = {}
    for arm in args.arms:
        out = Path(args.out) / arm
        t0 = time.time()
        rc = evaluate(config=[str(REPO / "configs/a05.yaml"), str(REPO / ARMS[arm])], n=args.n, split=["val"],
                      eval_seed=args.eval_seed, out=str(out), no_mlflow=True, target="none",
                      num_problems=args.num_problems,
                      overrides=["--model.model", args.model] if args.model else [])
        if rc != 0:
            return rc
        rows = read_table(out / "eval_val.jsonl")
        stats = base_statistics(rows, StrategyTask(reveal=arm == "control"), ks=[k for k in (1, 8, 64, 256) if k <= args.n])
        stats["evaluation"] = {
            "command": f"python -m lit_alpha evaluate --config configs/a05.yaml --config {ARMS[arm]} --n {args.n} "
                       f"--eval_seed {args.eval_seed} --no_mlflow --target none --out {out}",
            "seconds": round(time.time() - t0, 1),
        }
        result[arm] = stats
        print(arm, json.dumps(stats["measured"], indent=1))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "stats.json").write_text(json.dumps(result, indent=2) + "\n")
    info_path = Path(args.info)
    if info_path.exists():
        info = json.loads(info_path.read_text())
        info.setdefault("base_statistics", {}).update(result)
        info_path.write_text(json.dumps(info, indent=2) + "\n")
        print(f"wrote base_statistics into {info_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
