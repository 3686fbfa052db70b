"""Golden comparison for behaviour-preserving changes: a seeded 5-step fit of every shipped config,
every logged metric at every step read back from the MLflow store, written to one JSON.

    python scripts/golden.py record OUT.json [--steps 5] [--jobs 2] [--only grpo,a05]
    python scripts/golden.py compare BEFORE.json AFTER.json [--tol 1e-6] [--rename old=new,...] [--only a,b]

``record`` runs ``python -m lit_alpha fit --config configs/<name>.yaml`` per config (``name`` is the
path under configs/ without ``.yaml``: ``a05``, ``lean/a025``; folder ``base.yaml`` files and configs
that need a GPU or a downloaded model are left out), each in its own
temporary directory (its own ``mlruns/`` store), with the config as shipped plus the same cheap
overrides before and after a change: ``--trainer.max_steps 5``, a tiny validation (few problems, few
samples) and no progress bar. Configs that cannot run on this machine are listed as skipped with the
reason. Wall-clock and memory figures (``perf/*_s``, ``perf/peak_rss_mb``) are left out: they are not
behaviour. ``compare`` exits 0 when both files hold the same configs, metrics and steps and every value
agrees to ``--tol`` (absolute, or relative for large values), else prints each difference and exits 1.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"

SKIP = {
    "gpu/fsdp_a05": "needs GPUs (accelerator: gpu, DecoderFSDP)",
    "gpu/vllm_a05": "needs a CUDA GPU and vLLM",
}
SKIP_FOLDERS = {"smollm2": "needs the converted SmolLM2 model (models/smollm2-135m-instruct)"}
#: metrics that measure the machine, not the run
VOLATILE = re.compile(r"^perf/(.*_s|peak_rss_mb|.*_mb)$")

COMMON = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
COUNTDOWN = ["--data.task.init_args.num_val", "8", "--data.val_samples", "4", "--data.eval_prompts_per_batch", "8"]


def random_model(out: Path) -> Path:
    """The tests' 2-layer random Llama (``tests/conftest.py:save_random_model``), saved under ``out``."""
    sys.path.insert(0, str(TESTS))
    from conftest import save_random_model

    return save_random_model(out)


def overrides(name: str, run_dir: Path, model_dir: Path) -> list[str]:
    """The command-line overrides for config ``name`` (identical before and after a change)."""
    if name.startswith("lean/"):  # the stand-in REPL and scripted sampler of tests/test_lean_fit.py
        project = run_dir / "lean-project"
        project.mkdir()
        (project / "lakefile.lean").write_text('import Lake\nrequire REPL from git "https://github.com/leanprover-community/repl"\n')
        return [
            "--model.model", str(model_dir), "--trainer.precision", "32-true",
            "--data.task.init_args.project_dir", str(project),
            "--data.task.init_args.repl_cmd", f"{sys.executable} {TESTS / 'lean_standin.py'}",
            "--data.task.init_args.workers", "1", "--data.task.init_args.memory_mb", "0",
            "--data.task.init_args.num_val", "2",
            "--data.sampler.class_path", "lean_fit_helpers.ScriptedLeanSampler",
            "--data.prompts_per_step", "2", "--data.n_samples", "4", "--data.val_samples", "4",
            "--data.eval_prompts_per_batch", "2", "--data.max_new_tokens", "4",
        ]
    if name.startswith("math/"):  # the example problem files of tests/data, a tiny random model
        return [
            "--model.model", str(model_dir), "--model.dtype", "float32",
            "--data.task.init_args.train_file", str(TESTS / "data" / "math_tiny_train.jsonl"),
            "--data.task.init_args.val_file", str(TESTS / "data" / "math_tiny_val.jsonl"),
            "--data.prompts_per_step", "2", "--data.n_samples", "4", "--data.val_samples", "2",
            "--data.eval_prompts_per_batch", "2", "--data.max_new_tokens", "8",
        ]
    return COUNTDOWN


def read_store(run_dir: Path) -> dict[str, dict[str, float]]:
    """Every metric of the one run in ``run_dir/mlruns``: ``{metric: {step: value}}`` (volatile ones left out)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{(run_dir / 'mlruns' / 'mlflow.db').resolve()}")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    if len(runs) != 1:
        raise RuntimeError(f"{run_dir}: expected one MLflow run, found {len(runs)}")
    run = runs[0]
    if run.info.status != "FINISHED":
        raise RuntimeError(f"{run_dir}: run status {run.info.status}")
    out: dict[str, dict[str, float]] = {}
    for key in sorted(run.data.metrics):
        if VOLATILE.match(key):
            continue
        history = client.get_metric_history(run.info.run_id, key)
        steps: dict[str, float] = {}
        for m in sorted(history, key=lambda m: (m.step, m.timestamp)):
            tag = str(m.step)
            while tag in steps:  # the same step logged twice: keep both, in order
                tag += "'"
            steps[tag] = m.value
        out[key] = steps
    return out


def run_config(name: str, steps: int, model_dir: Path, keep: bool) -> dict[str, Any]:
    """Fit config ``name`` for ``steps`` steps in a fresh directory; its metrics, or the failure."""
    run_dir = Path(tempfile.mkdtemp(prefix=f"golden_{name.replace('/', '_')}_"))
    cmd = [sys.executable, "-m", "lit_alpha", "fit", "--config", str(ROOT / "configs" / f"{name}.yaml"),
           "--trainer.max_steps", str(steps), *COMMON, *overrides(name, run_dir, model_dir)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=run_dir, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-3000:]
        print(f"[{name}] FAILED rc={proc.returncode} ({took:.0f}s) in {run_dir}\n{tail}", flush=True)
        return {"error": f"rc={proc.returncode}", "tail": tail}
    metrics = read_store(run_dir)
    print(f"[{name}] ok: {len(metrics)} metrics ({took:.0f}s)", flush=True)
    if not keep:
        subprocess.run(["rm", "-rf", str(run_dir)], check=False)
    return {"metrics": metrics, "command": cmd[3:]}


def config_names() -> list[str]:
    """Every shipped config as ``path under configs/ without .yaml``, folder bases left out."""
    configs = ROOT / "configs"
    return sorted(str(p.relative_to(configs).with_suffix("")) for p in configs.rglob("*.yaml")
                  if not (p.name == "base.yaml" and p.parent != configs))


def record(args: argparse.Namespace) -> int:
    names = config_names()
    skip = {**SKIP, **{n: SKIP_FOLDERS[n.split("/")[0]] for n in names if n.split("/")[0] in SKIP_FOLDERS}}
    if args.only:
        wanted = set(args.only.split(","))
        names = [n for n in names if n in wanted]
    todo = [n for n in names if n not in skip]
    with tempfile.TemporaryDirectory(prefix="golden_model_") as tmp:
        model_dir = random_model(Path(tmp) / "random_llama")
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            results = dict(zip(todo, pool.map(lambda n: run_config(n, args.steps, model_dir, args.keep), todo)))
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip())
    doc = {"commit": commit, "dirty": dirty, "steps": args.steps,
           "skipped": {n: skip[n] for n in names if n in skip}, "configs": results}
    Path(args.out).write_text(json.dumps(doc, indent=1, sort_keys=True))
    failed = [n for n, r in results.items() if "error" in r]
    print(f"wrote {args.out}: {len(results) - len(failed)} configs recorded, {len(failed)} failed {failed}, "
          f"skipped {sorted(doc['skipped'])}")
    return 1 if failed else 0


def close(a: float, b: float, tol: float) -> bool:
    """``a`` and ``b`` equal to ``tol`` (absolute, or relative to the larger magnitude); NaN equals NaN."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def differences(before: dict[str, Any], after: dict[str, Any], tol: float) -> list[str]:
    """Every way ``after`` differs from ``before`` (configs, metric names, steps, values beyond ``tol``)."""
    out: list[str] = []
    bc, ac = before["configs"], after["configs"]
    for name in sorted(set(bc) | set(ac)):
        if name not in ac or name not in bc:
            out.append(f"{name}: only in {'before' if name in bc else 'after'}")
            continue
        b, a = bc[name], ac[name]
        if "error" in b or "error" in a:
            out.append(f"{name}: failed ({', '.join(w for w, r in (('before', b), ('after', a)) if 'error' in r)})")
            continue
        bm, am = b["metrics"], a["metrics"]
        for key in sorted(set(bm) | set(am)):
            if key not in am or key not in bm:
                out.append(f"{name} {key}: only in {'before' if key in bm else 'after'}")
                continue
            if set(bm[key]) != set(am[key]):
                out.append(f"{name} {key}: steps {sorted(bm[key])} vs {sorted(am[key])}")
                continue
            for step in sorted(bm[key], key=lambda s: (int(s.rstrip("'")), s)):
                x, y = bm[key][step], am[key][step]
                if not close(x, y, tol):
                    out.append(f"{name} {key} step {step}: {x!r} vs {y!r} (diff {y - x:.3g})")
    return out


def compare(args: argparse.Namespace) -> int:
    before, after = (json.loads(Path(p).read_text()) for p in (args.a, args.b))
    renames = dict(pair.split("=", 1) for pair in args.rename.split(",") if pair)
    before["configs"] = {renames.get(k, k): v for k, v in before["configs"].items()}
    before["skipped"] = {renames.get(k, k): v for k, v in before.get("skipped", {}).items()}
    if args.only:
        wanted = set(args.only.split(","))
        for doc in (before, after):
            doc["configs"] = {k: v for k, v in doc["configs"].items() if k in wanted}
            doc["skipped"] = {k: v for k, v in doc.get("skipped", {}).items() if k in wanted}
    diffs = differences(before, after, args.tol)
    values = sum(len(s) for c in before["configs"].values() for s in c.get("metrics", {}).values())
    for line in diffs:
        print(line)
    if before.get("skipped") != after.get("skipped"):
        print(f"note: skipped differ: {before.get('skipped')} vs {after.get('skipped')}")
    print(f"{'AGREE' if not diffs else 'DIFFER'}: {len(before['configs'])} configs, {values} logged values, "
          f"{len(diffs)} differences (tol {args.tol:g}); {args.a} ({before.get('commit', '?')[:8]}) vs "
          f"{args.b} ({after.get('commit', '?')[:8]})")
    return 0 if not diffs else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    rec = sub.add_parser("record", help="fit every shipped config for a few steps; write its metrics")
    rec.add_argument("out")
    rec.add_argument("--steps", type=int, default=5)
    rec.add_argument("--jobs", type=int, default=2, help="configs fitted at once")
    rec.add_argument("--only", default="", help="comma-separated config names (default: all)")
    rec.add_argument("--keep", action="store_true", help="keep each run's directory (its MLflow store)")
    cmp = sub.add_parser("compare", help="check two recordings agree")
    cmp.add_argument("a")
    cmp.add_argument("b")
    cmp.add_argument("--tol", type=float, default=1e-6)
    cmp.add_argument("--rename", default="", help="old=new,...: configs of BEFORE that moved (lean_a025=lean/a025)")
    cmp.add_argument("--only", default="", help="comma-separated config names: compare these only")
    args = parser.parse_args(argv)
    return record(args) if args.cmd == "record" else compare(args)


if __name__ == "__main__":
    sys.exit(main())
