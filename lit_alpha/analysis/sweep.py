"""Run a sweep of configs × seeds into one MLflow experiment, evaluate every run, draw the frontier.

``python -m lit_alpha sweep configs/a*.yaml configs/grpo*.yaml configs/rft.yaml --seeds 0 1 2
[--experiment frontier] [--n 256] [--splits val train] [--jobs 2] [--frontier] [-- extra overrides]``

For each config C and seed S (``--jobs J`` runs J of these chains at once, each logging to
``<frontier_out>/logs/<run>.log``; the default 1 runs them one after another in the terminal):

1. ``python -m lit_alpha fit --config C --seed_everything S --data.seed S`` into ``--experiment``
   with run name ``<C stem>-s<S>`` (skipped when a FINISHED run of that name exists; an unfinished
   one with a checkpoint is resumed with ``--ckpt_path last``);
2. ``python -m lit_alpha evaluate --config C --ckpt_path last --run_name <C stem>-s<S> --n N
   --split ...``: the per-problem tables go into that run (skipped when it already has them).

The base model is evaluated once first as run ``base`` (``--no_base`` skips it). Extra arguments
after ``--`` are passed to both ``fit`` and ``evaluate`` (e.g. ``--trainer.max_steps 50``).
The sweep is resumable: run the same command again after an interruption (or a failed run: the
other runs go on). ``--dry_run`` prints
the commands. ``--frontier`` runs :mod:`lit_alpha.analysis.frontier` on the experiment at the end.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, Sequence

from jsonargparse.typing import PositiveInt

from lit_alpha.analysis.frontier import EVAL_ARTIFACT_DIR

BASE_EVAL = "evaluate base"  # the step every other evaluation depends on (the target's samples)


def run_name(config: str | Path, seed: int) -> str:
    return f"{Path(config).stem}-s{seed}"


class Store:
    """What the experiment already holds (by run name), to skip finished work."""

    def __init__(self, tracking_uri: str, experiment: str) -> None:
        self.tracking_uri, self.experiment = tracking_uri, experiment

    def _client(self):
        from lit_alpha.training.tracking import store_client

        return store_client(self.tracking_uri, create=False)

    def runs(self, name: str) -> list:
        from lit_alpha.training.tracking import runs_named

        client = self._client()
        exp = client.get_experiment_by_name(self.experiment) if client is not None else None
        return [] if exp is None else runs_named(client, exp.experiment_id, name)

    def finished(self, name: str) -> bool:
        return any(r.info.status == "FINISHED" for r in self.runs(name))

    def started(self, name: str) -> bool:
        return bool(self.runs(name))

    def evaluated(self, name: str, splits: Sequence[str]) -> bool:
        client = self._client()
        for r in self.runs(name):
            have = {a.path for a in client.list_artifacts(r.info.run_id, EVAL_ARTIFACT_DIR)}
            if all(f"{EVAL_ARTIFACT_DIR}/eval_{s}.jsonl" in have for s in splits):
                return True
        return False


def plan(configs: Sequence[str], seeds: Sequence[int], experiment: str, n: int, splits: Sequence[str],
         extra: Sequence[str], store: Store | None, base: bool = True, python: str = sys.executable,
         eval_args: Sequence[str] = ()) -> list[tuple[str, list[str]]]:
    """The commands still to run, as ``(description, argv)``, in order."""
    exp_args = ["--trainer.logger.init_args.experiment_name", experiment]
    evaluate = [python, "-m", "lit_alpha", "evaluate", "--n", str(n), "--split", *splits, *eval_args]
    steps: list[tuple[str, list[str]]] = []
    if base and configs and not (store and store.evaluated("base", splits)):
        steps.append((BASE_EVAL, [*evaluate, "--config", str(configs[0]), "--run_name", "base",
                                        *exp_args, *extra]))
    for config in configs:
        for seed in seeds:
            name = run_name(config, seed)
            if not (store and store.finished(name)):
                fit = [python, "-m", "lit_alpha", "fit", "--config", str(config), "--seed_everything", str(seed),
                       "--data.seed", str(seed), *exp_args, "--trainer.logger.init_args.run_name", name, *extra]
                if store and store.started(name):
                    fit += ["--ckpt_path", "last"]
                steps.append((f"fit {name}", fit))
            if not (store and store.evaluated(name, splits)):
                steps.append((f"evaluate {name}", [*evaluate, "--config", str(config), "--ckpt_path", "last",
                                                   "--run_name", name, "--data.seed", str(seed), *exp_args, *extra]))
    return steps


def chains(steps: Sequence[tuple[str, list[str]]]) -> list[list[tuple[str, list[str]]]]:
    """Group the steps by run (``fit X`` then ``evaluate X``): runs are independent, a run's steps are not."""
    by_run: dict[str, list[tuple[str, list[str]]]] = {}
    for what, cmd in steps:
        by_run.setdefault(what.split(" ", 1)[1], []).append((what, cmd))
    return list(by_run.values())


def _run_chain(chain: list[tuple[str, list[str]]], log_dir: Path | None, total: int, index: dict[str, int],
               base_done: threading.Event | None = None) -> int:
    try:
        return _run_steps(chain, log_dir, total, index, base_done)
    finally:
        if base_done is not None and any(what == BASE_EVAL for what, _ in chain):
            base_done.set()  # also when it failed: the others then run without the divergence, as before


def _run_steps(chain, log_dir, total, index, base_done) -> int:
    for what, cmd in chain:
        if base_done is not None and what.startswith("evaluate ") and what != BASE_EVAL:
            base_done.wait()  # every evaluation scores the base's correct samples: its table must exist
        tag = f"[{index[what]}/{total}] {what}"
        if log_dir is None:
            print(f"{tag}: {shlex.join(cmd)}", flush=True)
            code = subprocess.call(cmd)
        else:
            log = log_dir / f"{what.split(' ', 1)[1]}.log"
            start = time.monotonic()
            print(f"{tag}: started (log: {log})", flush=True)
            with open(log, "a") as out:
                out.write(f"$ {shlex.join(cmd)}\n")
                out.flush()
                code = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT)
            print(f"{tag}: exit {code} after {time.monotonic() - start:.0f} s", flush=True)
        if code != 0:
            print(f"error: {tag} failed with exit code {code}; run the same sweep command again to resume",
                  file=sys.stderr)
            return code
    return 0


Split = Literal["val", "test", "train"]


def sweep(configs: list[str], seeds: list[int] = [0], experiment: str = "frontier",  # noqa: B006 - read only
          tracking_uri: str = "sqlite:///mlruns/mlflow.db", n: PositiveInt = 256,
          splits: list[Split] = ["val", "train"], num_problems: PositiveInt | None = None,  # noqa: B006
          jobs: PositiveInt = 1, no_base: bool = False, frontier: bool = False, frontier_out: str = "frontier",
          dry_run: bool = False, extra: list[str] = []) -> int:  # noqa: B006
    """Run a sweep of configs × seeds into one MLflow experiment, evaluate every run, draw the frontier.

    Args:
        configs: config files (given bare, as positional arguments: shell globs are expanded by the shell)
        seeds: the seeds of every config
        experiment: MLflow experiment of the whole sweep
        tracking_uri: where to look for finished runs (must match the configs' logger)
        n: evaluation samples per problem
        splits: the splits to evaluate
        num_problems: evaluate only the first N problems
        jobs: runs trained/evaluated at once (each run's model.num_threads threads)
        no_base: do not evaluate the base model
        frontier: draw the frontier at the end
        frontier_out: --out of python -m lit_alpha frontier
        dry_run: print the commands only
        extra: arguments for both fit and evaluate (what follows ``--`` on the command line)
    """
    for config in configs:
        if not Path(config).is_file():
            print(f"error: configs: {config!r} is not a file", file=sys.stderr)
            return 2
    eval_args = [] if num_problems is None else ["--num_problems", str(num_problems)]
    store = Store(tracking_uri, experiment)
    steps = plan(configs, seeds, experiment, n, splits, extra, store, base=not no_base, eval_args=eval_args)
    final = [("frontier", [sys.executable, "-m", "lit_alpha", "frontier", "--experiment", experiment,
                           "--tracking_uri", tracking_uri, "--splits", *splits,
                           "--out", frontier_out, "--group_seeds"])] if frontier else []
    total = len(steps) + len(final)
    index = {what: i for i, (what, _) in enumerate([*steps, *final], 1)}
    if not steps:
        print("nothing to do: every run is trained and evaluated")
    if dry_run:
        for what, cmd in [*steps, *final]:
            print(f"[{index[what]}/{total}] {what}: {shlex.join(cmd)}", flush=True)
        return 0
    log_dir = None
    if jobs > 1:
        log_dir = Path(frontier_out) / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
    code = run_chains(chains(steps), jobs, log_dir, total, index)
    return code if code else _run_chain(final, None, total, index)


def run_chains(runs: list[list[tuple[str, list[str]]]], jobs: int, log_dir: Path | None, total: int,
               index: dict[str, int]) -> int:
    """Run the chains ``jobs`` at a time (a chain's steps in order); the first failing exit code, else 0.
    Fits start at once, but every evaluation waits for ``evaluate base`` (if it is among the steps)."""
    base_done = threading.Event()
    if not any(what == BASE_EVAL for chain in runs for what, _ in chain):
        base_done.set()
    runs = sorted(runs, key=lambda c: all(what != BASE_EVAL for what, _ in c))  # the base's chain first
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        codes = list(pool.map(lambda c: _run_chain(c, log_dir, total, index, base_done), runs))
    return next((c for c in codes if c != 0), 0)
