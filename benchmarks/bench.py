"""The whole performance benchmark in one command: lit_alpha vs TRL's ``GRPOTrainer`` (same work), the
sampler vs naive ``generate`` loops, and how a step grows with group size and completion budget.

::

    bash benchmarks/setup_trl.sh                            # once: TRL in its own venv
    python benchmarks/bench.py                              # the embedded countdown-tiny model
    python benchmarks/bench.py --model /work/models/smollm2-135m-instruct   # a pretrained 135M model

Sizes come from a preset chosen by the model (``tiny`` for ``countdown-tiny``, ``pretrained``
otherwise; ``--preset`` picks one) and any of them can be overridden. The three parts are those of
``bench_trl.py`` and ``bench_sampler.py`` (see their docstrings and ``docs/performance.md``); this
script runs them in sequence on the same model and ends with the headline ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_sampler  # noqa: E402
import bench_trl  # noqa: E402
from common import BenchConfig  # noqa: E402

PRESETS: dict[str, dict[str, Any]] = {
    # the configs' batch (32 prompts x 8), learning rate and budget
    "tiny": dict(steps=10, repeats=3, prompts_per_step=32, group_size=8, max_new_tokens=32, lr=3e-4,
                 sampler_prompts=32, sampler_repeats=5, scaling=True),
    # a 135M model on 2 cores: a small batch; lr 1e-6 keeps both sides' completions at the base model's
    # lengths (at 3e-4 the two sides' random samples drive the model apart within a few steps)
    "pretrained": dict(steps=4, repeats=3, prompts_per_step=2, group_size=8, max_new_tokens=32, lr=1e-6,
                       sampler_prompts=4, sampler_repeats=3, scaling=False),
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="countdown-tiny", help="countdown-tiny or a local model directory")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None, help="default: by model (see above)")
    for name in ("steps", "repeats", "prompts_per_step", "group_size", "max_new_tokens", "sampler_prompts",
                 "sampler_repeats", "scaling_steps"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--scaling", action=argparse.BooleanOptionalAction, default=None,
                   help="the group-size/budget table (default: on for the tiny preset)")
    p.add_argument("--sides", default="lit,trl", help="TRL comparison sides: lit, trl or lit,trl")
    p.add_argument("--trl-python", default=bench_trl.DEFAULT_TRL_PYTHON)
    p.add_argument("--json-out", default=None, help="write every table's numbers here")
    a = p.parse_args(argv)
    preset = PRESETS[a.preset or ("tiny" if a.model == "countdown-tiny" else "pretrained")]
    for key, value in {**preset, "scaling_steps": 4}.items():
        if getattr(a, key) is None:
            setattr(a, key, value)
    return a


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    a = parse_args(argv)
    from lit_alpha.models import resolve_model_path

    model = resolve_model_path(a.model)
    out: dict[str, Any] = {}
    print("## 1. GRPO training: lit_alpha vs TRL GRPOTrainer, same work\n", flush=True)
    out["trl"] = bench_trl.main([
        "--model", model, "--steps", str(a.steps), "--repeats", str(a.repeats),
        "--prompts-per-step", str(a.prompts_per_step), "--group-size", str(a.group_size),
        "--max-new-tokens", str(a.max_new_tokens), "--lr", str(a.lr), "--threads", str(a.threads),
        "--sides", a.sides, "--trl-python", a.trl_python,
    ])
    cfg = BenchConfig(model=model, prompts_per_step=a.sampler_prompts, group_size=a.group_size,
                      max_new_tokens=a.max_new_tokens, threads=a.threads)
    print(f"\n## 2. Sampler: HFSampler vs naive generate loops ({a.sampler_prompts} prompts x {a.group_size}, "
          f"<= {a.max_new_tokens} new tokens, {a.sampler_repeats} measured batches, alternating)\n", flush=True)
    out["sampler"] = bench_sampler.compare_samplers(cfg, a.sampler_repeats)
    print("\n" + bench_sampler.format_sampler_table(out["sampler"]))
    if a.scaling:
        print(f"\n## 3. Scaling: full GRPO steps vs group size and budget ({a.prompts_per_step} prompts per "
              f"step, mean of {a.scaling_steps - 1} steps after the first)\n", flush=True)
        scale_cfg = BenchConfig(model=model, prompts_per_step=a.prompts_per_step, group_size=a.group_size,
                                max_new_tokens=a.max_new_tokens, threads=a.threads, lr=a.lr)
        out["scaling"] = bench_sampler.scaling(scale_cfg, sys.executable, a.scaling_steps)
        print("\n" + bench_sampler.format_scaling_table(out["scaling"]))
    print("\n## Headline\n")
    trl = out["trl"]
    if {"lit_alpha", "trl"} <= trl.keys():
        print(f"- lit_alpha / TRL training throughput: {trl['lit_alpha']['seq_per_s'] / trl['trl']['seq_per_s']:.2f}x "
              f"sequences/s, {trl['lit_alpha']['tok_per_s'] / trl['trl']['tok_per_s']:.2f}x completion tokens/s")
    ours = out["sampler"][bench_sampler.SIDES[2]]["tok_per_s"]
    for side in bench_sampler.SIDES[:2]:
        print(f"- HFSampler / {side}: {ours / out['sampler'][side]['tok_per_s']:.2f}x completion tokens/s")
    if a.json_out:
        Path(a.json_out).write_text(json.dumps({"args": vars(a), **out}, indent=1))
    return out


if __name__ == "__main__":
    main()
