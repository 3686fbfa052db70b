"""The whole performance benchmark in one command: lit_alpha vs TRL's ``GRPOTrainer`` (same work), the
sampler vs naive ``generate`` loops, and how a step grows with group size and completion budget.

::

    bash benchmarks/setup_trl.sh                            # once: TRL in its own venv
    python benchmarks/bench.py                              # the embedded countdown-tiny model
    python benchmarks/bench.py --model /work/models/smollm2-135m-instruct   # a pretrained 135M model

Sizes come from a preset chosen by the model (``tiny`` for ``countdown-tiny``, ``pretrained``
otherwise; ``--preset`` picks one) and any of them can be overridden. After measuring the core's
float32 and bf16 matmul peaks, every part runs at each ``--precision`` (``fp32 bf16`` by default).
The parts are those of ``bench_trl.py`` and ``bench_sampler.py`` (see their docstrings and
``docs/performance.md``); this script runs them in sequence on the same model and ends with the
headline ratios, wall and per CPU second.
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
from common import PRECISIONS, BenchConfig, matmul_peak_gflops  # noqa: E402

SIDE_BATCHED = bench_sampler.SIDES[1]

PRESETS: dict[str, dict[str, Any]] = {
    # the configs' batch (32 prompts x 8), learning rate and budget
    "tiny": dict(steps=10, warmup_steps=1, repeats=2, prompts_per_step=32, group_size=8, max_new_tokens=32, lr=3e-4,
                 sampler_prompts=32, sampler_repeats=3, scaling=True),
    # a 135M model on 2 cores: a small batch; lr 1e-6 keeps both sides' completions at the base model's
    # lengths (at 3e-4 the two sides' random samples drive the model apart within a few steps)
    # (one repeat: each step also records CPU time, which a shared machine does not inflate); 4 warm-up
    # steps: on this project's VM the first steps of both sides take 2-4x the later ones (first-touch memory)
    "pretrained": dict(steps=10, warmup_steps=4, repeats=1, prompts_per_step=2, group_size=8, max_new_tokens=32, lr=1e-6,
                       sampler_prompts=4, sampler_repeats=2, scaling=False),
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="countdown-tiny", help="countdown-tiny or a local model directory")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None, help="default: by model (see above)")
    for name in ("steps", "warmup_steps", "repeats", "prompts_per_step", "group_size", "max_new_tokens", "sampler_prompts",
                 "sampler_repeats", "scaling_steps"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--scaling", action=argparse.BooleanOptionalAction, default=None,
                   help="the group-size/budget table (default: on for the tiny preset)")
    p.add_argument("--sides", default="lit,trl", help="TRL comparison sides: lit, trl or lit,trl")
    p.add_argument("--precision", nargs="+", choices=PRECISIONS, default=list(PRECISIONS),
                   help="fp32 and/or bf16: every part at each (bf16: lit_alpha bf16-mixed, TRL bf16=True, "
                        "CPU autocast around both samplers); the scaling table runs at the first")
    p.add_argument("--trl-python", default=bench_trl.DEFAULT_TRL_PYTHON)
    p.add_argument("--per-prompt", action=argparse.BooleanOptionalAction, default=True,
                   help="also time the per-prompt generate loop (the slowest side of the sampler comparison)")
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
    precisions = list(dict.fromkeys(a.precision))
    out: dict[str, Any] = {}
    print(f"## 0. This core's matmul peak ({a.threads} thread(s), plain a @ b)\n", flush=True)
    out["peak_gflops"] = {prec: matmul_peak_gflops(prec, a.threads) for prec in PRECISIONS}
    for prec, shapes in out["peak_gflops"].items():
        print(f"- {prec}: peak {shapes['peak']:.0f} GFLOP/s (" +
              ", ".join(f"{k}: {v:.0f}" for k, v in shapes.items() if k != "peak") + ")")
    print("\n## 1. GRPO training: lit_alpha vs TRL GRPOTrainer, same work\n", flush=True)
    out["trl"] = bench_trl.main([
        "--model", model, "--steps", str(a.steps), "--warmup-steps", str(a.warmup_steps), "--repeats", str(a.repeats),
        "--prompts-per-step", str(a.prompts_per_step), "--group-size", str(a.group_size),
        "--max-new-tokens", str(a.max_new_tokens), "--lr", str(a.lr), "--threads", str(a.threads),
        "--sides", a.sides, "--trl-python", a.trl_python, "--precision", *precisions,
    ])
    cfg = BenchConfig(model=model, prompts_per_step=a.sampler_prompts, group_size=a.group_size,
                      max_new_tokens=a.max_new_tokens, threads=a.threads)
    print(f"\n## 2. Sampler: HFSampler vs naive generate loops ({a.sampler_prompts} prompts x {a.group_size}, "
          f"<= {a.max_new_tokens} new tokens, {a.sampler_repeats} measured batches, alternating)\n", flush=True)
    out["sampler"] = bench_sampler.compare_samplers(cfg, a.sampler_repeats, precisions, per_prompt=a.per_prompt)
    for prec, table in out["sampler"].items():
        print(f"\n{prec}:\n\n" + bench_sampler.format_sampler_table(table))
    out["decode_floor"] = bench_sampler.decode_floor(cfg, precisions)
    print("\n" + bench_sampler.format_floor(out["decode_floor"], out["sampler"]))
    if a.scaling:
        print(f"\n## 3. Scaling: full GRPO steps vs group size and budget ({a.prompts_per_step} prompts per "
              f"step, mean of {a.scaling_steps - 1} steps after the first, {precisions[0]})\n", flush=True)
        scale_cfg = BenchConfig(model=model, prompts_per_step=a.prompts_per_step, group_size=a.group_size,
                                max_new_tokens=a.max_new_tokens, threads=a.threads, lr=a.lr,
                                precision=precisions[0])
        out["scaling"] = bench_sampler.scaling(scale_cfg, sys.executable, a.scaling_steps)
        print("\n" + bench_sampler.format_scaling_table(out["scaling"]))
    out["headline"] = headline(out, precisions)
    print("\n## Headline\n\n" + "\n".join(out["headline"]["lines"]))
    if a.json_out:
        Path(a.json_out).write_text(json.dumps({"args": vars(a), **out}, indent=1))
    return out


def headline(out: dict[str, Any], precisions: Sequence[str]) -> dict[str, Any]:
    """Every ratio at each precision, and the training step's matmul rate against both peaks."""
    lines: list[str] = []
    ratios: dict[str, dict[str, float]] = {}
    peaks = {prec: out["peak_gflops"][prec]["peak"] for prec in PRECISIONS}
    for prec in precisions:
        r: dict[str, float] = {}
        trl = out["trl"].get(prec, {})
        if {"lit_alpha", "trl"} <= trl.keys():
            r["train_seq"] = trl["lit_alpha"]["seq_per_s"] / trl["trl"]["seq_per_s"]
            r["train_tok"] = trl["lit_alpha"]["tok_per_s"] / trl["trl"]["tok_per_s"]
            r["train_seq_cpu"] = trl["lit_alpha"]["seq_per_cpu_s"] / trl["trl"]["seq_per_cpu_s"]
            lines.append(f"- {prec}: lit_alpha / TRL training throughput: {r['train_seq']:.2f}x sequences/s, "
                         f"{r['train_tok']:.2f}x completion tokens/s, {r['train_seq_cpu']:.2f}x sequences per "
                         "CPU second (target 2x)")
            lit, other = trl["lit_alpha"], trl["trl"]
            rest = lit["step_s"] - lit["sample_s"]  # seconds per step of all but sampling
            if rest > 0:  # the same sequences per step on both sides
                r["train_seq_free_sampling"] = other["step_s"] / rest
                lines.append(f"- {prec}: with sampling free, lit_alpha / TRL could reach at most "
                             f"{r['train_seq_free_sampling']:.2f}x (TRL's step {other['step_s']:.2f} s against "
                             f"lit_alpha's {rest:.2f} s of scoring, forward, backward and update)")
        if "lit_alpha" in trl:
            lit = trl["lit_alpha"]
            rate = r["train_gflop_per_cpu_s"] = lit["train_gflop_per_cpu_s"]
            r["train_gflop_per_s"] = lit["train_gflop_per_s"]
            r["logprob_mismatch"] = lit["logprob_mismatch"]
            r["frac_fp32_peak"], r["frac_bf16_peak"] = rate / peaks["fp32"], rate / peaks["bf16"]
            lines.append(f"- {prec}: lit_alpha training step (forward, backward, update) matmuls {rate:.1f} GFLOP per "
                         f"CPU second = {rate / peaks['fp32']:.0%} of the fp32 peak ({peaks['fp32']:.0f}), "
                         f"{rate / peaks['bf16']:.0%} of the bf16 peak ({peaks['bf16']:.0f}); "
                         f"perf/logprob_mismatch {lit['logprob_mismatch']:.2e}")
        sampler = out["sampler"].get(prec, {})
        if sampler:
            ours = sampler[bench_sampler.SIDES[2]]["tok_per_s"]
            ours_cpu = sampler[bench_sampler.SIDES[2]]["tok_per_cpu_s"]
            for key, side in zip(("sampler_per_prompt", "sampler_batched"), bench_sampler.SIDES[:2]):
                if side not in sampler:
                    continue
                r[key] = ours / sampler[side]["tok_per_s"]
                r[key + "_cpu"] = ours_cpu / sampler[side]["tok_per_cpu_s"]
                target = " (target 3x)" if key == "sampler_batched" else ""
                lines.append(f"- {prec}: HFSampler / {side}: {r[key]:.2f}x completion tokens/s, "
                             f"{r[key + '_cpu']:.2f}x per CPU second{target}")
            floor = out.get("decode_floor", {}).get(prec)
            if floor and SIDE_BATCHED in sampler:
                r["sampler_ceiling_cpu"] = floor["floor_tok_per_s"] / sampler[SIDE_BATCHED]["tok_per_cpu_s"]
                r["sampler_frac_of_ceiling"] = ours_cpu / floor["floor_tok_per_s"]
                lines.append(f"- {prec}: the decode step's linear products alone allow at most "
                             f"{r['sampler_ceiling_cpu']:.2f}x {SIDE_BATCHED} per CPU second; HFSampler runs at "
                             f"{r['sampler_frac_of_ceiling']:.0%} of that ceiling")
        ratios[prec] = r
    if {"fp32", "bf16"} <= set(precisions):
        for name, key in (("training", "lit_alpha"),):
            t32, t16 = out["trl"].get("fp32", {}).get(key), out["trl"].get("bf16", {}).get(key)
            if t32 and t16:
                lines.append(f"- lit_alpha bf16 / fp32 {name} throughput: {t16['seq_per_s'] / t32['seq_per_s']:.2f}x, "
                             f"{t16['seq_per_cpu_s'] / t32['seq_per_cpu_s']:.2f}x per CPU second")
        s32, s16 = out["sampler"].get("fp32"), out["sampler"].get("bf16")
        if s32 and s16:
            side = bench_sampler.SIDES[2]
            lines.append(f"- HFSampler bf16 / fp32: {s16[side]['tok_per_s'] / s32[side]['tok_per_s']:.2f}x tokens/s, "
                         f"{s16[side]['tok_per_cpu_s'] / s32[side]['tok_per_cpu_s']:.2f}x per CPU second")
    return {"ratios": ratios, "peaks": peaks, "lines": lines}


if __name__ == "__main__":
    main()
