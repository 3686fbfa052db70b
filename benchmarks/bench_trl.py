"""GRPO training throughput: lit_alpha vs TRL's ``GRPOTrainer``, same work on both sides.

::

    python benchmarks/bench_trl.py --model countdown-tiny --steps 10 --repeats 2
    python benchmarks/bench_trl.py --model /work/models/smollm2-135m-instruct --steps 4 --repeats 2 \\
        --prompts-per-step 2 --group-size 8

Each repeat runs lit_alpha then TRL (alternating, so slow drifts of the machine hit both), each in a
fresh process (``lit_worker.py`` with this python, ``trl_worker.py`` with ``--trl-python``, built by
``setup_trl.sh``), and prints per side the medians over repeats of: sequences/s, completion
tokens/s, seconds per step split into sampling / verification / no-grad log-prob forwards (lit_alpha's
frozen base; TRL's reference, none at β=0) / the policy's forward / the rest of the update, the
process's peak RSS, and the lit_alpha/TRL ratios. The first ``--warmup-steps`` steps of every run are excluded (default 1).
What "same work" means, setting by setting, is in ``trl_worker.py``'s docstring and
``docs/performance.md``. ``--sides lit`` runs lit_alpha alone (no TRL needed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import PHASES, PRECISIONS, BenchConfig, WorkerResult, add_run_args, worker_env  # noqa: E402

DEFAULT_TRL_PYTHON = os.environ.get("LIT_ALPHA_TRL_PYTHON", "/work/venv-trl/bin/python")
SIDES = {"lit": ("lit_alpha", "lit_worker.py"), "trl": ("trl", "trl_worker.py")}
COLUMNS = [  # (summary key, header, format)
    ("seq_per_s", "seq/s", "{:.1f}"), ("tok_per_s", "tok/s", "{:.0f}"), ("step_s", "step s", "{:.3f}"),
    ("sample_s", "sample", "{:.3f}"), ("verify_s", "verify", "{:.3f}"), ("ref_fwd_s", "ref/base fwd", "{:.3f}"),
    ("policy_fwd_s", "policy fwd", "{:.3f}"), ("update_s", "update", "{:.3f}"),
    ("completion_len", "compl. len", "{:.1f}"), ("peak_rss_mb", "peak RSS MB", "{:.0f}"),
    ("first_step_s", "1st step s", "{:.2f}"), ("seq_per_cpu_s", "seq/CPU s", "{:.1f}"),
    ("step_cpu_s", "step CPU s", "{:.3f}"),
]
LIT_COLUMNS = [("logprob_mismatch", "lit_alpha logprob mismatch", "{:.2e}"),
               ("train_gflop_per_s", "lit_alpha train matmul GFLOP/s (wall)", "{:.1f}"),
               ("train_gflop_per_cpu_s", "per CPU second", "{:.1f}")]


def trl_available(python: str) -> bool:
    """Does ``python`` exist and import trl?"""
    if not (Path(python).exists() or shutil.which(python)):
        return False
    probe = subprocess.run([python, "-c", "import trl, datasets"], capture_output=True, env=worker_env(1))
    return probe.returncode == 0


def run_worker(side: str, cfg: BenchConfig, python: str, log_dir: Path, tag: str) -> WorkerResult:
    """Run one worker process to completion and load its result (its output goes to a log file)."""
    out = log_dir / f"{tag}.json"
    log = log_dir / f"{tag}.log"
    cmd = [python, str(HERE / SIDES[side][1]), "--config", cfg.to_json(), "--out", str(out)]
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=worker_env(cfg.threads), cwd=log_dir)
    if proc.returncode != 0:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"{SIDES[side][0]} worker failed (exit {proc.returncode}); log {log}:\n{tail}")
    return WorkerResult.load(str(out))


def median_summary(results: Sequence[WorkerResult]) -> dict[str, float]:
    """Per metric, the median over repeats of each run's mean over its measured steps."""
    summaries = [r.summary() for r in results]
    return {k: statistics.median(s[k] for s in summaries) for k in summaries[0]}


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """A markdown table: one row per side, then the ratio row when both sides ran."""
    header = "| side | " + " | ".join(h for _, h, _ in COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 1)]
    for side, s in rows.items():
        lines.append(f"| {side} | " + " | ".join(fmt.format(s[k]) for k, _, fmt in COLUMNS) + " |")
    if {"lit_alpha", "trl"} <= rows.keys():
        lit, trl = rows["lit_alpha"], rows["trl"]
        cells = []
        for key, _, _ in COLUMNS:
            if key in ("seq_per_s", "tok_per_s", "seq_per_cpu_s"):
                cells.append(f"**{lit[key] / trl[key]:.2f}×**")
            elif key in PHASES or key in ("step_s", "first_step_s", "peak_rss_mb", "completion_len", "step_cpu_s"):
                cells.append(f"{lit[key] / trl[key]:.2f}" if trl[key] > 0 else "–")
            else:
                cells.append("")
        lines.append("| lit_alpha / TRL | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, BenchConfig]:
    d = BenchConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=d.model, help="countdown-tiny or a local model directory")
    p.add_argument("--steps", type=int, default=d.steps, help="optimizer steps per run")
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps, help="first steps left out of the means")
    p.add_argument("--repeats", type=int, default=2, help="alternating lit_alpha/TRL pairs of runs")
    p.add_argument("--prompts-per-step", type=int, default=d.prompts_per_step)
    add_run_args(p)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--clip-eps", type=float, default=d.clip_eps)
    p.add_argument("--precision", nargs="+", choices=PRECISIONS, default=list(PRECISIONS),
                   help="fp32 and/or bf16 (lit_alpha bf16-mixed, TRL bf16=True); alternated within each repeat")
    p.add_argument("--sides", default="lit,trl", help="comma-separated: lit, trl")
    p.add_argument("--lit-python", default=sys.executable, help="python for the lit_alpha worker")
    p.add_argument("--trl-python", default=DEFAULT_TRL_PYTHON, help="python of the TRL environment")
    p.add_argument("--json-out", default=None, help="also write every run's result here")
    p.add_argument("--log-dir", default=None, help="keep worker logs and results here (default: a temp dir)")
    a = p.parse_args(argv)
    cfg = BenchConfig(model=a.model, steps=a.steps, warmup_steps=a.warmup_steps, prompts_per_step=a.prompts_per_step,
                      group_size=a.group_size, max_new_tokens=a.max_new_tokens, threads=a.threads, lr=a.lr,
                      clip_eps=a.clip_eps, temperature=a.temperature, top_p=a.top_p, seed=a.seed)
    return a, cfg


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """Returns ``{precision: {side: median summary}}``."""
    args, cfg = parse_args(argv)
    from lit_alpha.models import resolve_model_path

    cfg.model = resolve_model_path(cfg.model)  # both sides load the very same directory
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    unknown = set(sides) - SIDES.keys()
    if unknown or not sides:
        raise SystemExit(f"error: --sides: unknown {sorted(unknown)}; use lit, trl or lit,trl")
    if "trl" in sides and not trl_available(args.trl_python):
        print(f"TRL side skipped: {args.trl_python} cannot import trl (run benchmarks/setup_trl.sh)")
        sides.remove("trl")
    if not sides:
        return {}
    python = {"lit": args.lit_python, "trl": args.trl_python}
    log_dir = Path(args.log_dir or tempfile.mkdtemp(prefix="bench_trl_"))
    log_dir.mkdir(parents=True, exist_ok=True)
    precisions = list(dict.fromkeys(args.precision))
    print(f"config: {cfg.to_json()}\nrepeats: {args.repeats}, sides: {sides}, precisions: {precisions}, "
          f"logs: {log_dir}", flush=True)
    runs: dict[str, dict[str, list[WorkerResult]]] = {p: {SIDES[s][0]: [] for s in sides} for p in precisions}
    for r in range(args.repeats):
        for prec in precisions:  # alternate: fp32 lit, fp32 trl, bf16 lit, bf16 trl, fp32 lit, ...
            run_cfg = BenchConfig(**{**vars(cfg), "precision": prec})
            for side in sides:
                res = run_worker(side, run_cfg, python[side], log_dir, f"{side}_{prec}_{r}")
                s = res.summary()
                print(f"  repeat {r} {prec} {SIDES[side][0]:9s}: {s['step_s']:.3f} s/step, {s['tok_per_s']:.0f} "
                      f"tok/s, {s['seq_per_s']:.1f} seq/s, peak RSS {s['peak_rss_mb']:.0f} MB", flush=True)
                runs[prec][SIDES[side][0]].append(res)
    rows = {p: {name: median_summary(results) for name, results in by_side.items()} for p, by_side in runs.items()}
    versions = {name: results[0].versions for name, results in runs[precisions[0]].items()}
    print(f"\nversions: {json.dumps(versions)}")
    print(f"model: {cfg.model}; {cfg.prompts_per_step} prompts x {cfg.group_size} samples, "
          f"<= {cfg.max_new_tokens} new tokens, {cfg.steps} steps (first {cfg.warmup_steps} excluded), {cfg.threads} thread(s); "
          f"median of {args.repeats} run(s) per side; phases in s/step")
    for prec in precisions:
        print(f"\n{prec}:\n\n" + format_table(rows[prec]))
        if "lit_alpha" in rows[prec]:
            lit = rows[prec]["lit_alpha"]
            print("\n" + "; ".join(f"{h}: {fmt.format(lit[k])}" for k, h, fmt in LIT_COLUMNS))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"config": json.loads(cfg.to_json()), "summary": rows,
                       "runs": {p: {k: [r.summary() for r in v] for k, v in by_side.items()}
                                for p, by_side in runs.items()}}, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
