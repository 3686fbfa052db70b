"""Evaluate a checkpoint (or the base model) with many samples per problem; keep per-problem counts.

``python -m lit_alpha evaluate --config configs/a05.yaml [--ckpt_path PATH|last] [--split val]
[--n 256] [--run_id ID] [any --model./--data./--trainer. override]``

For every problem of the split (``train``: the task's fixed sample of training problems), draw
``n`` completions with the run's policy (temperature/top-p/max_new_tokens from ``data.*``), verify
them, and record one row per problem: ``problem_id``, the problem (``numbers``, ``target``),
``n``, ``c`` (correct), the canonical correct answers with their counts, the counts of all answers
(canonicalised; unparseable ones pooled as ``<invalid>``), distinct correct answers, and Shannon
entropy (nats) and Gini–Simpson index (``1 − Σp²``) of all answers and of the correct ones.
Nothing has to be re-sampled to recompute a metric: :mod:`lit_alpha.analysis.frontier` works from the table.

Outputs: ``<out>/eval_<split>.jsonl`` (the table) and ``eval_<split>_summary.json``; when the config
has an MLflow logger, both go to the run's ``eval/`` artifacts and the run gets the metrics
``eval/<split>/pass_at_<k>`` (k = 1, 2, 4, …, n), ``eval/<split>/distinct_correct``,
``eval/<split>/{answer,correct}_{entropy,simpson}``.

Which MLflow run: ``--run_id``; else the run that owns the checkpoint (``--ckpt_path last``: the
newest checkpoint of the latest run named like the config, or ``--run_name``; a path under
``<root>/<experiment id>/<run id>/checkpoints/`` names its run); else a new run (``base`` for the
base model, ``<config>-eval`` for a checkpoint outside the store).

Sampling is seeded by ``(--eval_seed, split, batch index)`` only, independent of the training seed,
so every run is evaluated on the same problems with the same random numbers (common random
numbers make paired comparisons tighter); keep ``--problems_per_batch`` fixed across runs (with the
default 1, problem i's samples depend on ``(--eval_seed, split, i)`` alone). Measured on the 2-core CPU
machine with countdown-tiny: 200 problems × 256 samples ≈ 2 minutes per split on one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np
from jsonargparse.typing import PositiveInt

from lit_alpha.errors import reported
from lit_alpha.metrics.target import target_divergences
from lit_alpha.analysis.frontier import EVAL_ARTIFACT_DIR, KIND_TAG
from lit_alpha.analysis.stats import TARGET_COLUMNS, read_table, shannon_entropy, simpson_index
from lit_alpha.metrics.pass_at_k import default_ks, pass_at_k_per_problem
from lit_alpha.verifiers.base import is_correct

INVALID = "<invalid>"


# -- the table ----------------------------------------------------------------------------
def problem_row(record: Mapping[str, Any], rewards: Sequence[float], answers: Sequence[str | None],
                reasons: Sequence[str] = (), samples: Sequence[str] = ()) -> dict[str, Any]:
    """One problem's row from its n verdicts (correct: ``is_correct(reward)``; ``answers`` canonical or None).
    ``samples``: each completion's token ids (``"id id id"``); the correct ones are kept with their
    counts as ``correct_samples``, exact samples of the target when the policy is the base model."""
    correct = Counter(a if a is not None else INVALID for r, a in zip(rewards, answers) if is_correct(r))
    every = Counter(a if a is not None else INVALID for a in answers)
    row: dict[str, Any] = {"problem_id": str(record["id"])}
    row.update({k: v for k, v in record.items() if k != "id"})
    row.update({
        "n": len(rewards),
        "c": int(sum(1 for r in rewards if is_correct(r))),
        "distinct_correct": len(correct),
        "answer_entropy": shannon_entropy(every.values()),
        "answer_simpson": simpson_index(every.values()),
        "correct_entropy": shannon_entropy(correct.values()),
        "correct_simpson": simpson_index(correct.values()),
        "correct_answers": dict(correct.most_common()),
        "answers": dict(every.most_common()),
    })
    if samples:
        row["correct_samples"] = dict(Counter(s for r, s in zip(rewards, samples) if is_correct(r)).most_common())
    if reasons:
        row["reasons"] = dict(Counter(str(r).split(":")[0] for r in reasons).most_common())
    return row


def summarize(rows: Sequence[Mapping[str, Any]], ks: Sequence[int] | None = None) -> dict[str, float]:
    """Mean unbiased pass@k over problems (k = 1, 2, 4, …, min n) and mean diversity columns."""
    n = np.asarray([r["n"] for r in rows])
    c = np.asarray([r["c"] for r in rows])
    ks = default_ks(int(n.min())) if ks is None else ks
    out = {f"pass_at_{k}": float(pass_at_k_per_problem(n, c, k).mean()) for k in ks}
    for col in ("distinct_correct", "answer_entropy", "answer_simpson", "correct_entropy", "correct_simpson"):
        out[col] = float(np.mean([r[col] for r in rows]))
    for col in TARGET_COLUMNS:  # over the problems the base solves (None elsewhere)
        values = [r[col] for r in rows if r.get(col) is not None]
        if values:
            out[col] = float(np.mean(values))
            out[f"{col}_problems"] = float(len(values))
    out["problems"] = float(len(rows))
    return out


def write_table(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(json.dumps(r, sort_keys=False) + "\n" for r in rows))
    os.replace(tmp, path)


# -- sampling -----------------------------------------------------------------------------
def evaluate_policy(rollout, records: Sequence[Mapping[str, Any]], n: int, split: str, eval_seed: int = 0,
                    problems_per_batch: int = 1, log=None) -> list[dict[str, Any]]:
    """Sample ``n`` completions for each record (in batches of whole problems) with the rollout's policy
    (a :class:`~lit_alpha.data.rollout.Rollout` with its models attached), verify them, return the rows."""
    import torch

    from lit_alpha.data.rollout import split_key
    from lit_alpha.metrics.target import completion_ids
    from lit_alpha.models.loading import eval_mode

    rows: list[dict[str, Any]] = []
    policy = rollout.models.policy
    with eval_mode(policy):  # the mode it found restored after, also on an exception
        start = time.perf_counter()
        for b, i in enumerate(range(0, len(records), problems_per_batch)):
            chunk = list(records[i : i + problems_per_batch])
            generator = rollout.generator(split_key(eval_seed, split, b))
            with torch.no_grad():
                batch = rollout.sample(policy, chunk, n, generator)
            rewards, answers = batch.rewards.tolist(), batch.answers or [None] * len(batch.rewards)
            reasons = batch.reasons or []
            samples = completion_ids(batch.input_ids, batch.completion_mask, batch.prompt_len)
            for j, record in enumerate(chunk):
                sl = slice(j * n, (j + 1) * n)
                rows.append(problem_row(record, rewards[sl], answers[sl], reasons[sl], samples[sl]))
            if log is not None and (len(rows) % 25 < len(chunk) or len(rows) == len(records)):
                log(f"  {split}: {len(rows)}/{len(records)} problems, {time.perf_counter() - start:.0f}s")
    return rows


# -- building the run's objects from its config ------------------------------------------
def _build(config_args: Sequence[str]):
    """``(cli, model, datamodule)`` from config files and overrides, as ``python -m lit_alpha`` would."""
    from lit_alpha.cli.lightning import TRAINER_DEFAULTS, LitAlphaCLI
    from lit_alpha.data.datamodule import RolloutDataModule
    from lit_alpha.module import AlphaModule

    import warnings

    warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
    cli = LitAlphaCLI(AlphaModule, RolloutDataModule, args=list(config_args), run=False,
                      save_config_callback=None, trainer_defaults=TRAINER_DEFAULTS,
                      subclass_mode_model=False, subclass_mode_data=False)
    return cli, cli.model, cli.datamodule


def load_checkpoint(module, ckpt_path: str | Path) -> int:
    """Load the policy weights of a lit_alpha checkpoint into ``module``; returns its global step."""
    import torch

    state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    weights = state.get("state_dict", state)
    missing, unexpected = module.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not k.startswith("base.")]
    if missing or unexpected:
        raise ValueError(f"ckpt_path {str(ckpt_path)!r}: does not match the model "
                         f"(missing {missing[:3]}, unexpected {list(unexpected)[:3]})")
    return int(state.get("global_step", 0))


def _logger_settings(cli) -> dict[str, Any] | None:
    logger = cli.config.trainer.get("logger")
    if logger is None or isinstance(logger, bool) or not hasattr(logger, "get"):
        return None
    init = logger.get("init_args")
    if init is None or "tracking_uri" not in init:
        return None
    return {k: init.get(k) for k in ("tracking_uri", "experiment_name", "run_name", "artifact_location")}


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


def run_config_args(config: Sequence[str], overrides: Sequence[str], experiment: str | None = None) -> list[str]:
    """The run's LightningCLI arguments: ``--config`` files, then the overrides."""
    args = [a for c in config for a in ("--config", c)] + list(overrides)
    return args + (["--trainer.logger.init_args.experiment_name", experiment] if experiment else [])


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lit_alpha evaluate``: :func:`evaluate` from the command line (``--print_config``: the
    resolved run config)."""
    from lit_alpha.cli.commands import parse_command

    kwargs, overrides = parse_command(evaluate, argv, "python -m lit_alpha evaluate", run_config=True,
                                      append=["config"])
    if kwargs.pop("print_config"):
        _build(run_config_args(kwargs["config"], overrides, kwargs["experiment"]) + ["--print_config"])
        return 0
    return evaluate(**kwargs, overrides=overrides)


def _evaluate(args: argparse.Namespace, overrides: list[str]) -> int:
    cli, module, dm = _build(run_config_args(args.config, overrides, args.experiment))
    try:
        return _run_evaluation(args, cli, module, dm)
    finally:
        dm.rollout.close()  # verification worker processes, if any


def _run_evaluation(args: argparse.Namespace, cli, module, dm) -> int:
    from lit_alpha.training.checkpoint import find_resume
    from lit_alpha.training.tracking import flatten, normalize_tracking_uri

    settings = None if args.no_mlflow else _logger_settings(cli)
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
            name = args.run_name or settings.get("run_name") or stem
            resume = find_resume(uri, settings["experiment_name"], name,
                                 cli.config.trainer.get("default_root_dir") or "mlruns")
            if resume is None:
                raise ValueError(f"ckpt_path last: no checkpoint of a run named {name!r} in experiment "
                                 f"{settings['experiment_name']!r}")
            ckpt, run_id = str(resume.ckpt_path), resume.run_id
        elif ckpt is not None:
            run_id = _run_of_checkpoint(client, exp_id, Path(ckpt))
        run_id = args.run_id or run_id
        if run_id is None:
            name = args.run_name or ("base" if ckpt is None else f"{stem}-eval")
            run = client.create_run(exp_id, run_name=name, tags={KIND_TAG: "eval"})
            run_id, created = run.info.run_id, True
            client.log_text(run_id, cli.parser.dump(cli.config, skip_none=False), "config.yaml")
            client.log_batch(run_id, params=[_param(k, v) for k, v in flatten(cli.config.as_dict()).items()
                                             if not k.startswith("config")][:1000])
            if ckpt is not None:
                client.set_tag(run_id, "lit_alpha.ckpt_path", str(ckpt))
    elif ckpt == "last":
        raise ValueError("ckpt_path last needs the config's MLflow logger")
    step = load_checkpoint(module, ckpt) if ckpt is not None else 0
    rollout = dm.rollout.attach(module.rollout_models())
    what = f"checkpoint {ckpt} (step {step})" if ckpt is not None else f"the base model {cli.config.model.get('model', '')}"
    print(f"evaluating {what}: {args.n} samples per problem", file=sys.stderr)
    out = Path(args.out) if args.out else None
    with tempfile.TemporaryDirectory() as tmp:
        directory = out or (Path(tmp) if client is not None else Path("eval"))
        for split in args.split:
            records = dm.task.problems(split)
            if args.num_problems is not None:
                records = records[: args.num_problems]
            t0 = time.perf_counter()
            rows = evaluate_policy(rollout, records, args.n, split, args.eval_seed, args.problems_per_batch,
                                   log=lambda m: print(m, file=sys.stderr))
            target = _target_rows(args, client, settings, split, rows, ckpt)
            if target is not None:
                alpha = args.alpha if args.alpha is not None else _run_alpha(module)
                div = target_divergences(module.policy, module.base, module.tokenizer, dm.task, records, target, alpha)
                for row in rows:
                    row.update({col: None for col in TARGET_COLUMNS} | div.get(row["problem_id"], {}))
            summary = summarize(rows)
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
    if client is not None:
        if created:
            client.set_terminated(run_id)
        print(f"logged to MLflow run {run_id}")
    return 0


def _run_alpha(module) -> float | None:
    """The run's α when its objective is α-DPG with a constant α, else None."""
    alpha = getattr(module.objective, "alpha", None)
    return float(alpha) if isinstance(alpha, (int, float)) else None


def _target_rows(args: argparse.Namespace, client, settings, split: str, rows, ckpt) -> list | None:
    """The table whose correct samples are samples of the target (None: no divergence columns)."""
    from lit_alpha.analysis.frontier import load_tables

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


if __name__ == "__main__":
    raise SystemExit(main())
