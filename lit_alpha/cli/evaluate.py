"""``python -m lit_alpha evaluate``: a checkpoint (or the base model) with many samples per problem,
its per-problem table (:mod:`lit_alpha.analysis.evaluate`) logged into the run's MLflow store.

``python -m lit_alpha evaluate --config configs/a05.yaml [--ckpt_path PATH|last] [--split val]
[--n 256] [--run_id ID] [any --model./--data./--trainer. override]``

Outputs: ``<out>/eval_<split>.jsonl`` (the table) and ``eval_<split>_summary.json``; when the config
has an MLflow logger, both go to the run's ``eval/`` artifacts and the run gets the metrics
``eval/<split>/pass_at_<k>`` (k = 1, 2, 4, …, n), ``eval/<split>/distinct_correct``,
``eval/<split>/{answer,correct}_{entropy,simpson}``, and the task's own diagnostics
(:meth:`~lit_alpha.tasks.base.Task.eval_metrics`, e.g. ``eval/<split>/strategy/neg``) when it has them.
The command ends with a short table of the split
(and of the base model's evaluation of it, when the experiment has one).

Which MLflow run: ``--run_id``; else the run that owns the checkpoint (``--ckpt_path last``: the
newest checkpoint of the latest run named like the config, or ``--run_name``; a path under
``<root>/<experiment id>/<run id>/checkpoints/`` names its run); else a new run (``base`` for the
base model, ``<config>-eval`` for a checkpoint outside the store).

Keep ``--problems_per_batch`` fixed across runs that are compared (with the default 1, problem i's
samples depend on ``(--eval_seed, split, i)`` alone). Measured on the 2-core CPU machine with
countdown-tiny: 200 problems × 256 samples ≈ 2 minutes per split on one thread.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal, Sequence

from jsonargparse.typing import PositiveInt

from lit_alpha.analysis.evaluate import evaluate_policy, summarize, write_table
from lit_alpha.analysis.frontier import EVAL_ARTIFACT_DIR, KIND_TAG, load_tables
from lit_alpha.analysis.stats import TARGET_COLUMNS, read_table
from lit_alpha.cli.commands import parse_command
from lit_alpha.cli.run import Run, build_run, run_config_args
from lit_alpha.errors import reported
from lit_alpha.metrics.report import end_table
from lit_alpha.metrics.target import target_divergences
from lit_alpha.tasks.base import has_eval_metrics
from lit_alpha.training.checkpoint import Resume, load_checkpoint
from lit_alpha.training.tracking import flatten, normalize_tracking_uri


def _experiment_id(client, name: str, artifact_location: str | None) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    if artifact_location and "://" not in artifact_location:
        Path(artifact_location).resolve().mkdir(parents=True, exist_ok=True)
        artifact_location = Path(artifact_location).resolve().as_uri()
    return client.create_experiment(name, artifact_location=artifact_location)


def _run_of_checkpoint(client, experiment_id: str, ckpt: Path) -> str | None:
    """The run id in ``.../<experiment id>/<run id>/checkpoints/x.ckpt`` if that run is in the store."""
    parts = ckpt.resolve().parts
    if len(parts) >= 4 and parts[-2] == "checkpoints" and parts[-4] == experiment_id:
        try:
            return client.get_run(parts[-3]).info.run_id
        except Exception:  # noqa: BLE001 - not a run of this store
            return None
    return None


Split = Literal["val", "test", "train"]


def evaluate(config: list[str], ckpt_path: str | None = None, split: list[Split] = ["val"],  # noqa: B006
             n: PositiveInt = 256, num_problems: PositiveInt | None = None, problems_per_batch: PositiveInt = 1,
             eval_seed: int = 0, run_id: str | None = None, run_name: str | None = None,
             experiment: str | None = None, out: str | None = None, no_mlflow: bool = False,
             target: str = "base", alpha: float | None = None, overrides: Sequence[str] = ()) -> int:
    """Evaluate a checkpoint (or the base model) with many samples per problem; keep per-problem counts.

    Other arguments (--model.*, --data.*, --trainer.*) are overrides of the run's config.

    Args:
        config: the run's config file(s) (--config A --config B, as for fit)
        ckpt_path: checkpoint to evaluate; 'last': newest of the latest run of this name; none: the base model
        split: the splits to evaluate
        n: samples per problem
        num_problems: only the first N problems of the split
        problems_per_batch: problems sampled together (1: n rows per forward; fastest for the tiny model on
            CPU, and each problem's random numbers then depend on its index only)
        eval_seed: seeds the evaluation samples
        run_id: log into this MLflow run
        run_name: run name (default: base, or the config's run)
        experiment: MLflow experiment (default: the config's)
        out: directory for the table files (default: a temp dir when logging to MLflow, else eval/)
        no_mlflow: only write the files
        target: samples of the target p ∝ π_base·v for the divergence columns: the name of the run whose
            eval table of the same split holds the base model's correct samples (default 'base'; evaluating
            the base model itself uses its own samples), a path to such an eval_<split>.jsonl, or 'none'
        alpha: α of the reported α-divergence to the target (default: the run's α-DPG α, if constant)
        overrides: run config overrides (``--model.x v`` ...)
    """
    args = argparse.Namespace(**{k: v for k, v in locals().items() if k != "overrides"})
    return reported(lambda: _evaluate(args, list(overrides)), name_type=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lit_alpha evaluate``: :func:`evaluate` from the command line (``--print_config``: the
    resolved run config)."""
    kwargs, overrides = parse_command(evaluate, argv, "python -m lit_alpha evaluate", run_config=True,
                                      append=["config"])
    if kwargs.pop("print_config"):
        build_run(run_config_args(kwargs["config"], overrides, kwargs["experiment"]) + ["--print_config"])
        return 0
    return evaluate(**kwargs, overrides=overrides)


def _evaluate(args: argparse.Namespace, overrides: list[str]) -> int:
    run = build_run(run_config_args(args.config, overrides, args.experiment))
    try:
        return _run_evaluation(args, run)
    finally:
        run.datamodule.rollout.close()  # verification worker processes, if any


def _run_evaluation(args: argparse.Namespace, run: Run) -> int:
    module, dm = run.module, run.datamodule
    settings = None if args.no_mlflow else run.logger
    stem = Path(args.config[0]).stem
    client = run_id = None
    created = False
    ckpt = args.ckpt_path
    if settings is not None:
        from mlflow.tracking import MlflowClient

        uri = normalize_tracking_uri(str(settings["tracking_uri"]))
        client = MlflowClient(uri)
        exp_id = _experiment_id(client, settings["experiment_name"], settings.get("artifact_location"))
        if ckpt == "last":
            resume = run.checkpoint(ckpt, args.run_name or settings.get("run_name") or stem)
            assert isinstance(resume, Resume)
            ckpt, run_id = str(resume.ckpt_path), resume.run_id
        elif ckpt is not None:
            run_id = _run_of_checkpoint(client, exp_id, Path(ckpt))
        run_id = args.run_id or run_id
        if run_id is None:
            name = args.run_name or ("base" if ckpt is None else f"{stem}-eval")
            mlflow_run = client.create_run(exp_id, run_name=name, tags={KIND_TAG: "eval"})
            run_id, created = mlflow_run.info.run_id, True
            client.log_text(run_id, run.config_yaml(), "config.yaml")
            client.log_batch(run_id, params=[_param(k, v) for k, v in flatten(run.config.as_dict()).items()
                                             if not k.startswith("config")][:1000])
            if ckpt is not None:
                client.set_tag(run_id, "lit_alpha.ckpt_path", str(ckpt))
    elif ckpt == "last":
        run.checkpoint(ckpt, None)  # raises: last needs the config's MLflow logger
    step = load_checkpoint(module, ckpt) if ckpt is not None else 0
    rollout = dm.rollout.attach(module.rollout_models())
    what = f"checkpoint {ckpt} (step {step})" if ckpt is not None else f"the base model {run.config.model.get('model', '')}"
    print(f"evaluating {what}: {args.n} samples per problem", file=sys.stderr)
    out = Path(args.out) if args.out else None
    tables: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        directory = out or (Path(tmp) if client is not None else Path("eval"))
        for split in args.split:
            records = dm.task.problems(split)
            if args.num_problems is not None:
                records = records[: args.num_problems]
            t0 = time.perf_counter()
            keep: list | None = [] if has_eval_metrics(dm.task) else None
            rows = evaluate_policy(rollout, records, args.n, split, args.eval_seed, args.problems_per_batch,
                                   log=lambda m: print(m, file=sys.stderr), keep=keep)
            target = _target_rows(args, client, settings, split, rows, ckpt)
            if target is not None:
                alpha = args.alpha if args.alpha is not None else _run_alpha(module)
                div = target_divergences(module.policy, module.base, module.tokenizer, dm.task, records, target, alpha)
                for row in rows:
                    row.update({col: None for col in TARGET_COLUMNS} | div.get(row["problem_id"], {}))
            summary = summarize(rows)
            if keep is not None:  # the task's own diagnostics (Task.eval_metrics)
                summary.update({k: float(v) for k, v in dm.task.eval_metrics(
                    records, [c for c, _ in keep], [r for _, r in keep]).items()})
            tables.append(_end_table(split, summary, rows, None if target is rows else target,
                                     "base" if ckpt is None else f"step {step}"))
            info = {"split": split, "n": args.n, "eval_seed": args.eval_seed, "ckpt_path": ckpt, "step": step,
                    "problems_per_batch": args.problems_per_batch, "seconds": time.perf_counter() - t0,
                    "temperature": dm.params.temperature, "top_p": dm.params.top_p,
                    "max_new_tokens": dm.params.max_new_tokens, "metrics": summary}
            table = directory / f"eval_{split}.jsonl"
            write_table(rows, table)
            (directory / f"eval_{split}_summary.json").write_text(json.dumps(info, indent=2) + "\n")
            print(f"{split}: " + ", ".join(f"{k} {v:.4g}" for k, v in summary.items()))
            if client is not None:
                from mlflow.entities import Metric

                now = int(time.time() * 1000)
                client.log_batch(run_id, metrics=[Metric(f"eval/{split}/{k}", float(v), now, step)
                                                  for k, v in summary.items()])
                client.log_artifact(run_id, str(table), EVAL_ARTIFACT_DIR)
                client.log_artifact(run_id, str(directory / f"eval_{split}_summary.json"), EVAL_ARTIFACT_DIR)
            if out is not None:
                print(f"wrote {table}")
    print("\n" + "\n\n".join(tables))
    if client is not None:
        if created:
            client.set_terminated(run_id)
        print(f"logged to MLflow run {run_id}; open it with: mlflow ui --backend-store-uri "
              f"{normalize_tracking_uri(str(settings['tracking_uri']))}")
    return 0


def _end_table(split: str, summary: dict[str, float], rows: Sequence[dict[str, Any]],
               base_rows: Sequence[dict[str, Any]] | None, label: str) -> str:
    """The split's short table; with the base model's table of the same problems, base against this."""
    lines: list[tuple[str, dict[str, float]]] = [(label, summary)]
    if base_rows is not None:
        ids = {r["problem_id"] for r in rows}
        same = [r for r in base_rows if r["problem_id"] in ids]
        if len(same) == len(rows):
            lines.insert(0, ("base", summarize(same)))
    return end_table(lines, title=f"{split}: {len(rows)} problems x {rows[0]['n'] if rows else 0} samples")


def _run_alpha(module) -> float | None:
    """The run's α when its objective is α-DPG with a constant α, else None."""
    alpha = getattr(module.objective, "alpha", None)
    return float(alpha) if isinstance(alpha, (int, float)) else None


def _target_rows(args: argparse.Namespace, client, settings, split: str, rows, ckpt) -> list | None:
    """The table whose correct samples are samples of the target (None: no divergence columns)."""
    spec = str(args.target)
    if spec.lower() == "none":
        return None
    if spec.endswith(".jsonl"):
        if not Path(spec).is_file():
            raise ValueError(f"target: no such file {spec!r}")
        return read_table(spec)
    if ckpt is None and (args.run_name or "base") == spec:
        return rows  # the base model itself: its own verified samples are the target's
    if client is None:
        print(f"note: no divergence to the target (no MLflow store to find run {spec!r} in)", file=sys.stderr)
        return None
    found = load_tables(str(settings["tracking_uri"]), settings["experiment_name"], split, runs=[spec])
    if spec not in found:
        print(f"note: no divergence to the target: no run {spec!r} with an eval_{split} table "
              f"(evaluate the base model first)", file=sys.stderr)
        return None
    return found[spec][1]


def _param(key: str, value: Any):
    from mlflow.entities import Param

    return Param(key, str(value)[:6000])

