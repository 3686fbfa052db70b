"""Sampling throughput: lit_alpha's ``HFSampler`` vs a naive ``model.generate`` loop; step-time scaling.

::

    python benchmarks/bench_sampler.py --model countdown-tiny --prompts 32 --group-size 8 --repeats 3
    python benchmarks/bench_sampler.py --model /work/models/smollm2-135m-instruct --prompts 4 --repeats 2
    python benchmarks/bench_sampler.py --scaling --model countdown-tiny --prompts 32
    ~/.cache/lit_alpha/venv-vllm/bin/python benchmarks/bench_sampler.py --model DIR --precision bf16 --vllm

**Sampler comparison.** Both produce what the trainer needs from a rollout: B·G completions, their
token ids and texts, and per token the log-prob (and the full-vocabulary entropy) of π_θ at temperature
1. The naive loop is what one writes with ``transformers`` alone: ``model.generate(do_sample=True,
output_logits=True, return_dict_in_generate=True)`` on the B·G left-padded prompt rows, then
``log_softmax`` of the returned raw logits gathered at the drawn tokens, masked after the first EOS.
Same model, prompts (lit_alpha's Countdown training stream), group size, budget, temperature/top-p
(``top_k=0`` on generate, i.e. off), threads, precision (``--precision fp32 bf16``: bf16 is CPU
autocast with the weight-cast cache on, around every side's call, as the trainer's rollout runs
under bf16-mixed). Runs alternate (naive, lit_alpha, naive, ...) in one
process; completion tokens/s is the throughput (the two draw different random numbers, so their
completion lengths differ a little; tokens/s accounts for it).

**Scaling** (``--scaling``): full lit_alpha GRPO training steps (``lit_worker.py``, one process per
setting, so that its peak RSS is that setting's) for group sizes 4, 8, 16 at the default budget and
budgets 16, 32, 64 at group size 8: seconds per step (mean of the steps after the first) and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import PRECISIONS, BenchConfig, add_run_args, set_threads, train_records  # noqa: E402


def naive_generate(model, tokenizer, prompts: Sequence[str], n: int, max_new_tokens: int, temperature: float,
                   top_p: float, seed: int) -> dict[str, Any]:
    """B·n samples with ``model.generate`` and the trainer's per-token log-probs and entropies from its logits."""
    import torch
    from transformers import GenerationConfig

    ids = [tokenizer(p)["input_ids"] for p in prompts for _ in range(n)]
    width = max(len(i) for i in ids)
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    input_ids = torch.tensor([[pad] * (width - len(i)) + i for i in ids])  # [N, P] left-padded
    attention_mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids])
    config = GenerationConfig(do_sample=True, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                              top_k=0, pad_token_id=pad, eos_token_id=eos, bos_token_id=tokenizer.bos_token_id,
                              output_logits=True, return_dict_in_generate=True)
    torch.manual_seed(seed)
    model.eval()
    with torch.no_grad():
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config)
        gen = out.sequences[:, width:]  # [N, L]
        logp = torch.stack(out.logits, 1).float().log_softmax(-1)  # [N, L, V] π_θ at temperature 1
        lps = logp.gather(-1, gen.unsqueeze(-1)).squeeze(-1)  # [N, L]
        entropy = -(logp.exp() * logp).sum(-1)  # [N, L]
        is_eos = (gen == eos).long()
        mask = ((is_eos.cumsum(1) - is_eos) == 0).float()  # up to and including the first EOS
    texts = tokenizer.batch_decode(gen.masked_fill(mask == 0, pad).tolist(), skip_special_tokens=True)
    return {"logprobs": lps * mask, "entropy": entropy * mask, "mask": mask, "texts": texts}


def naive_generate_per_prompt(model, tokenizer, prompts: Sequence[str], n: int, max_new_tokens: int,
                              temperature: float, top_p: float, seed: int) -> dict[str, Any]:
    """The loop one writes first: :func:`naive_generate` once per prompt (its n samples as one batch),
    results concatenated (the shorter completions right-padded)."""
    import torch

    parts = [naive_generate(model, tokenizer, [p], n, max_new_tokens, temperature, top_p, seed + i)
             for i, p in enumerate(prompts)]
    width = max(part["mask"].shape[1] for part in parts)

    def cat(key: str) -> Any:
        return torch.cat([torch.nn.functional.pad(part[key], (0, width - part[key].shape[1])) for part in parts])

    return {"logprobs": cat("logprobs"), "entropy": cat("entropy"), "mask": cat("mask"),
            "texts": [t for part in parts for t in part["texts"]]}


SIDES = ("generate, one call per prompt", "generate, one batched call", "lit_alpha HFSampler")
VLLM_SIDE = "lit_alpha VLLMSampler"
PLAIN_SIDE = "lit_alpha HFSampler, fast kernels off"


def precision_context(precision: str):
    """``fp32``: nothing; ``bf16``: CPU autocast to bf16 (weight-cast cache on), the context the trainer's
    rollout samples in under ``bf16-mixed`` (``lit_alpha.training.precision.rollout_context``); both sides get it."""
    import contextlib

    import torch

    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=True)
    return contextlib.nullcontext()


def compare_samplers(cfg: BenchConfig, repeats: int, precisions: Sequence[str] = ("fp32",),
                     per_prompt: bool = True, vllm: bool = False,
                     plain_kernels: bool = False) -> dict[str, dict[str, dict[str, float]]]:
    """Alternate the two naive generate loops (``per_prompt=False``: the batched one only) and
    ``HFSampler`` on the same prompts, at each precision; ``{precision: {side: tokens/s etc.}}``
    (medians over the measured batches). ``vllm``: also ``VLLMSampler`` (in-process vLLM, the
    sampler's CPU build), whose engine holds one dtype, so only with one precision: its engine then
    runs in float32 or bfloat16 to match."""
    import torch

    from lit_alpha.models import load_policy
    from lit_alpha.sampling import HFSampler, SamplingParams
    from lit_alpha.tasks.countdown import COUNTDOWN4, CountdownTask

    set_threads(cfg.threads)
    model, tokenizer = load_policy(cfg.model)
    task = CountdownTask(**COUNTDOWN4)
    batches = train_records(BenchConfig(**{**vars(cfg), "steps": repeats + 1}))
    params = SamplingParams(temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens)
    sampler = HFSampler()
    naive_args = (cfg.group_size, cfg.max_new_tokens, cfg.temperature, cfg.top_p)
    runs = {
        SIDES[0]: lambda prompts, r: naive_generate_per_prompt(model, tokenizer, prompts, *naive_args, cfg.seed + r)["mask"],
        SIDES[1]: lambda prompts, r: naive_generate(model, tokenizer, prompts, *naive_args, cfg.seed + r)["mask"],
        SIDES[2]: lambda prompts, r: sampler.sample(model, tokenizer, prompts, cfg.group_size, params,
                                                    torch.Generator().manual_seed(cfg.seed + r)).completion_mask,
    }
    if not per_prompt:
        del runs[SIDES[0]]
    if plain_kernels:  # the same sampler without lit_alpha.sampling.kernels: what those kernels save
        plain = HFSampler(fast_kernels=False)
        runs[PLAIN_SIDE] = lambda prompts, r: plain.sample(model, tokenizer, prompts, cfg.group_size, params,
                                                           torch.Generator().manual_seed(cfg.seed + r)).completion_mask
    if vllm:
        if len(precisions) != 1:
            raise SystemExit("error: --vllm: give one --precision (the engine holds one dtype)")
        from lit_alpha.sampling.vllm import VLLMSampler

        longest = min(512, int(getattr(model.config, "max_position_embeddings", 512)))  # prompt + completion
        engine = VLLMSampler(dtype={"fp32": "float32", "bf16": "bfloat16"}[precisions[0]],
                             max_model_len=longest, enable_prefix_caching=True)
        runs[VLLM_SIDE] = lambda prompts, r: engine.sample(model, tokenizer, prompts, cfg.group_size, params,
                                                           torch.Generator().manual_seed(cfg.seed + r)).completion_mask
    times = {prec: {side: [] for side in runs} for prec in precisions}  # [(seconds, tokens, CPU seconds)]
    for r, records in enumerate(batches):  # batch 0 warms every side up and is not counted
        prompts = [task.prompt(rec) for rec in records]
        for prec in precisions:
            line = []
            for side, run in runs.items():
                t, c = time.perf_counter(), time.process_time()
                with precision_context(prec):
                    mask = run(prompts, r)
                elapsed, cpu = time.perf_counter() - t, time.process_time() - c
                if r > 0:
                    times[prec][side].append((elapsed, float(mask.sum()), cpu))
                line.append(f"{side} {elapsed:.3f} s")
            print(f"  batch {r}{' (warm-up)' if r == 0 else ''} {prec}: " + ", ".join(line), flush=True)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for prec, by_side in times.items():
        out[prec] = {}
        for side, runs_ in by_side.items():
            out[prec][side] = {
                "s_per_batch": statistics.median(t for t, _, _ in runs_),
                "tok_per_s": statistics.median(k / t for t, k, _ in runs_),
                "tok_per_cpu_s": statistics.median(k / c for _, k, c in runs_),
                "completion_len": statistics.fmean(k for _, k, _ in runs_) / (cfg.prompts_per_step * cfg.group_size),
            }
    return out


def decode_floor(cfg: BenchConfig, precisions: Sequence[str] = ("fp32",), repeats: int = 5) -> dict[str, dict[str, float]]:
    """CPU seconds of one decode step's linear products alone, at ``B·G`` rows (every row running):
    ``{precision: {"generate_s", "hfsampler_s", "floor_tok_per_s"}}``.

    Each ``nn.Linear`` of the model (the output head included) runs once on a ``[B·G, 1, in]`` input, as
    ``generate`` runs it (``F.linear``, under the precision's autocast) and as ``HFSampler`` does (bf16:
    weights packed once, ``lit_alpha.sampling.kernels``). With every other op of the step free, a sampler
    built on these products emits at most ``B·G / hfsampler_s`` tokens per CPU second: the ceiling of its
    speed-up over a measured ``generate``, whatever else it optimises."""
    import contextlib

    import torch

    from lit_alpha.models import load_policy
    from lit_alpha.sampling.kernels import packed_linears

    set_threads(cfg.threads)
    model, _ = load_policy(cfg.model)
    rows = cfg.prompts_per_step * cfg.group_size
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    g = torch.Generator().manual_seed(0)
    inputs = [torch.randn(rows, 1, m.in_features, generator=g) for m in linears]

    def step() -> float:
        c = time.process_time()
        for m, x in zip(linears, inputs):
            m(x)
        return time.process_time() - c

    out: dict[str, dict[str, float]] = {}
    with torch.no_grad():
        for prec in precisions:
            res = {}
            for key, kernels in (("generate_s", contextlib.nullcontext), ("hfsampler_s", lambda: packed_linears(model, rows))):
                with precision_context(prec), kernels():
                    step()  # warm-up (and the weight-cast cache)
                    res[key] = statistics.median(step() for _ in range(repeats))
            res["floor_tok_per_s"] = rows / res["hfsampler_s"]
            out[prec] = res
    return out


def format_floor(floor: dict[str, dict[str, float]], sampler: dict[str, dict[str, dict[str, float]]]) -> str:
    """Markdown, with its heading: per precision, the decode step's linear products and what they leave
    for a sampler."""
    lines = ["The decode step's linear products alone (the ceiling of any sampler on these kernels):", "",
             "| precision | linear products per decode step, as generate runs them (CPU ms) | as HFSampler runs "
             "them | ceiling tokens/CPU s (products only) | HFSampler tokens/CPU s, % of ceiling | "
             "ceiling / generate one batched call |", "|---|---|---|---|---|---|"]
    for prec, f in floor.items():
        res = sampler.get(prec, {})
        ours, gen = res.get(SIDES[2], {}).get("tok_per_cpu_s"), res.get(SIDES[1], {}).get("tok_per_cpu_s")
        frac = f"{ours:.0f}, {ours / f['floor_tok_per_s']:.0%}" if ours else ""
        ceiling = f"**{f['floor_tok_per_s'] / gen:.2f}×**" if gen else ""
        lines.append(f"| {prec} | {f['generate_s'] * 1e3:.1f} | {f['hfsampler_s'] * 1e3:.1f} | "
                     f"{f['floor_tok_per_s']:.0f} | {frac} | {ceiling} |")
    return "\n".join(lines)


def scaling(cfg: BenchConfig, python: str, steps: int) -> list[dict[str, float]]:
    """Full GRPO steps (``lit_worker.py``) per (group size, budget) setting, one process each."""
    from bench_trl import run_worker

    settings = [(g, cfg.max_new_tokens) for g in (4, 8, 16)] + [(8, L) for L in (16, 64)] + [(8, 32)]
    settings = list(dict.fromkeys(settings))  # (8, default budget) once
    log_dir = Path(tempfile.mkdtemp(prefix="bench_scaling_"))
    rows = []
    for g, budget in sorted(settings, key=lambda s: (s[1] != cfg.max_new_tokens, s)):
        run_cfg = BenchConfig(**{**vars(cfg), "group_size": g, "max_new_tokens": budget, "steps": steps})
        res = run_worker("lit", run_cfg, python, log_dir, f"scaling_g{g}_l{budget}").summary()
        rows.append({"group_size": g, "max_new_tokens": budget, **res})
        print(f"  G={g:2d} L={budget:3d}: {res['step_s']:.3f} s/step, peak RSS {res['peak_rss_mb']:.0f} MB", flush=True)
    return rows


def format_sampler_table(res: dict[str, dict[str, float]]) -> str:
    """Markdown: one row per sampler, with HFSampler's tokens/s speed-up over each generate loop."""
    ours = res[SIDES[2]]
    lines = ["| sampler | s/batch | completion tokens/s | tokens/CPU s | compl. len | HFSampler speed-up (tokens/s) "
             "| (tokens/CPU s) |", "|---|---|---|---|---|---|---|"]
    for side, r in res.items():
        ratio = "" if side == SIDES[2] else f"**{ours['tok_per_s'] / r['tok_per_s']:.2f}×**"
        cpu = "" if side == SIDES[2] else f"{ours['tok_per_cpu_s'] / r['tok_per_cpu_s']:.2f}×"
        if side == VLLM_SIDE:  # HFSampler's speed-up over vLLM (< 1: vLLM is the faster one)
            ratio, cpu = ratio.replace("**", ""), cpu
        lines.append(f"| {side} | {r['s_per_batch']:.3f} | {r['tok_per_s']:.0f} | {r['tok_per_cpu_s']:.0f} | "
                     f"{r['completion_len']:.1f} | {ratio} | {cpu} |")
    return "\n".join(lines)


def format_scaling_table(rows: list[dict[str, float]]) -> str:
    """Markdown: one row per (group size, budget) setting."""
    lines = ["| group size | max new tokens | s/step | sample | ref/base fwd | policy fwd | update | compl. len | "
             "tok/s | peak RSS MB |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['group_size']} | {r['max_new_tokens']} | {r['step_s']:.3f} | {r['sample_s']:.3f} | "
                     f"{r['ref_fwd_s']:.3f} | {r['policy_fwd_s']:.3f} | {r['update_s']:.3f} | "
                     f"{r['completion_len']:.1f} | {r['tok_per_s']:.0f} | {r['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    d = BenchConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=d.model)
    p.add_argument("--prompts", type=int, default=d.prompts_per_step, help="prompts per batch (B)")
    add_run_args(p)
    p.add_argument("--repeats", type=int, default=3, help="measured batches per side (after one warm-up)")
    p.add_argument("--precision", nargs="+", choices=PRECISIONS, default=list(PRECISIONS),
                   help="sampler comparison at fp32 and/or bf16 (CPU autocast)")
    p.add_argument("--no-per-prompt", action="store_true", help="leave out the per-prompt generate loop")
    p.add_argument("--json-out", default=None, help="write the sampler figures here")
    p.add_argument("--plain-kernels", action="store_true",
                   help="also HFSampler with fast_kernels=False (what the packed weights, GQA and reserved cache save)")
    p.add_argument("--vllm", action="store_true", help="also VLLMSampler (run with the vLLM venv's python, "
                   "scripts/test_vllm.sh builds it; one --precision)")
    p.add_argument("--scaling", action="store_true", help="the step-time/memory table instead")
    p.add_argument("--steps", type=int, default=3, help="--scaling: training steps per setting (first excluded)")
    a = p.parse_args(argv)
    from lit_alpha.models import resolve_model_path

    cfg = BenchConfig(model=resolve_model_path(a.model), prompts_per_step=a.prompts, group_size=a.group_size,
                      max_new_tokens=a.max_new_tokens, threads=a.threads, temperature=a.temperature,
                      top_p=a.top_p, seed=a.seed)
    shape = f"{cfg.prompts_per_step} prompts x {cfg.group_size} samples, <= {cfg.max_new_tokens} new tokens"
    if a.scaling:
        rows = scaling(cfg, sys.executable, a.steps)
        print(f"\nmodel: {cfg.model}; {cfg.prompts_per_step} prompts per step, {cfg.threads} thread(s); "
              f"full GRPO steps, mean of {a.steps - 1} after the first\n")
        print(format_scaling_table(rows))
        return
    print(f"model: {cfg.model}; {shape}; {a.repeats} measured batches, alternating", flush=True)
    res = compare_samplers(cfg, a.repeats, list(dict.fromkeys(a.precision)), per_prompt=not a.no_per_prompt,
                           vllm=a.vllm, plain_kernels=a.plain_kernels)
    for prec, table in res.items():
        print(f"\n{prec}:\n\n" + format_sampler_table(table))
    floor = decode_floor(cfg, list(res))
    print("\n" + format_floor(floor, res))
    if a.json_out:
        Path(a.json_out).write_text(json.dumps({**res, "decode_floor": floor}, indent=1))


if __name__ == "__main__":
    main()
