"""Pretrain the embedded tiny bases of step-Countdown: traces with a controlled rate of slips, and a twin.

:func:`pretrain_steps` builds the char-level tokenizer and tiny Llama of
:mod:`lit_alpha.tasks.countdown.pretrain` (same builders, same training loop) and trains it on
TRAIN-split problems of :class:`~lit_alpha.tasks.countdown.steps.StepsTask`:
``<bos> prompt trace <eos>``, loss on ``trace <eos>``. The trace of a problem is the exact random
trace that defined its target (:func:`~lit_alpha.tasks.countdown.steps.random_trace`: a plan drawn
uniformly at each step, conditioned on reaching the target), rewritten with arithmetic slips at
``slip_rate`` per step (:func:`~lit_alpha.tasks.countdown.steps.slipped_trace`: a slipped step writes
a wrong result and the trace continues consistently from it). With ``slip_rate=0`` the same data
stream (same problems, same plans, same seed) gives the *twin* base: the reference with the skill
perfected.

The function evaluates the result on VAL (pass@k of the model at temperature 1, and the random
guesser), saves the model, the tokenizer and ``training_info.json`` to ``out``.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch

from lit_alpha.tasks.countdown.pretrain import build_model, build_tokenizer, evaluate_model, locals_args, train_lm
from lit_alpha.tasks.countdown.steps import StepsTask, format_steps, random_trace, slipped_trace


def trace_batch(task: StepsTask, rng: np.random.Generator, batch_size: int,
                slip_rate: float) -> tuple[list[str], list[str], int]:
    """``(prompts, traces, slipped steps)`` of ``batch_size`` TRAIN problems; every trace is the
    problem's defining trace with slips at ``slip_rate`` per step.

    The random numbers a batch uses do not depend on ``slip_rate`` (the slip draws come from a second
    stream seeded by the first), so a base and its twin see the same problems and plans."""
    prompts, traces, slipped = [], [], 0
    for _ in range(batch_size):
        record, trace = task.sample_solved("train", 0, rng)
        slip_rng = np.random.default_rng(int(rng.integers(2**63)))
        written = slipped_trace(trace, slip_rate, slip_rng)
        slipped += sum(not s.exact for s in written)
        prompts.append(task.prompt(record))
        traces.append(format_steps(written))
    return prompts, traces, slipped


def guesser_pass_at_k(task: StepsTask, records: Sequence, draws: int, seed: int,
                      ks: Sequence[int] = (1, 8, 64, 256)) -> dict[str, float]:
    """The random guesser: an exact random trace over all the numbers (:func:`random_trace`);
    Monte-Carlo acceptance rate p per problem, pass@k = 1-(1-p)^k averaged over problems."""
    rng = np.random.default_rng(seed)
    ps = np.array([np.mean([random_trace(r["numbers"], rng)[-1].c == r["target"] for _ in range(draws)])
                   for r in records])
    return {f"pass@{k}": float(np.mean(1 - (1 - ps) ** k)) for k in ks}


def groups_with_two(n: int, c: int, g: int = 8) -> float:
    """Probability that a group of ``g`` of a problem's ``n`` samples (``c`` correct), drawn without
    replacement, holds at least 2 correct ones (unbiased for a fresh group of ``g`` samples)."""
    if n < g:
        raise ValueError(f"need n >= g, got n={n}, g={g}")
    total = math.comb(n, g)
    return 1.0 - (math.comb(n - c, g) + c * math.comb(n - c, g - 1)) / total


def base_statistics(model, tok, task: StepsTask, records: Sequence, n: int, seed: int, max_new_tokens: int = 48,
                    batch_prompts: int = 8) -> dict:
    """The calibration statistics of a base on ``records`` with ``n`` samples each (T=1, top_p=1).

    Args:
        model: the causal LM (its mode is restored to train after sampling).
        tok: its tokenizer.
        task: the step-Countdown task (prompt format and verifier).
        records: the problems (e.g. the 200 VAL problems).
        n: samples per problem (>= 8).
        seed: the sampling seed (``torch.manual_seed``).
        max_new_tokens: generation length.
        batch_prompts: prompts per ``generate`` call.

    Returns:
        ``pass@k`` for k in 1, 8, 64, 256 (those <= n, unbiased); ``groups8_ge2``: the mean over problems
        of the chance that a group of 8 samples holds >= 2 correct; ``by_count``: pass@1 and pass@n per
        number count; ``reasons``: share of each verdict reason; ``eos_rate``; and
        :meth:`StepsTask.eval_metrics` (``slip_rate``, ``steps_per_sample``, ``distinct_plans``).
    """
    from lit_alpha.metrics.pass_at_k import pass_at_k_per_problem

    seen: dict[str, tuple] = {}

    def keep(record, texts, verdicts):
        seen[record["id"]] = (record, texts, [v.score for v in verdicts], [v.reason for v in verdicts])

    ks = tuple(k for k in (1, 8, 64, 256) if k <= n)
    result = evaluate_model(model, tok, task, records, n, batch_prompts, seed, max_new_tokens=max_new_tokens,
                            ks=ks, on_samples=keep)
    rows = [seen[r["id"]] for r in records]
    counts = [sum(score > 0 for score in row[2]) for row in rows]
    result["groups8_ge2"] = float(np.mean([groups_with_two(n, c) for c in counts]))
    by_count = {}
    for size in sorted({len(r["numbers"]) for r in records}):
        c = [ci for ci, r in zip(counts, records) if len(r["numbers"]) == size]
        by_count[str(size)] = {"problems": len(c),
                               "pass@1": float(pass_at_k_per_problem([n] * len(c), c, 1).mean()),
                               f"pass@{n}": float(pass_at_k_per_problem([n] * len(c), c, n).mean())}
    result["by_count"] = by_count
    reasons = Counter(reason.split(":")[0] for row in rows for reason in row[3])
    result["reasons"] = {k: v / (n * len(rows)) for k, v in reasons.most_common()}
    result.update(task.eval_metrics([row[0] for row in rows], [row[1] for row in rows], [row[2] for row in rows]))
    return result


def pretrain_steps(
    out: str | Path,
    slip_rate: float = 0.1,
    n_numbers: Sequence[int] = (3, 4),
    n_weights: Sequence[float] | None = None,
    max_number: int = 10,
    min_target: int = 1,
    max_target: int = 99,
    steps: int = 3000,
    batch_size: int = 64,
    lr: float = 2e-3,
    warmup: int = 100,
    weight_decay: float = 0.0,
    hidden: int = 128,
    layers: int = 4,
    heads: int = 4,
    max_positions: int = 96,
    max_new_tokens: int = 48,
    minutes: float = 60.0,
    seed: int = 0,
    eval_samples: int = 64,
    eval_problems: int = 200,
    eval_batch_prompts: int = 8,
    eval_every: int = 0,
    guesser_draws: int = 2000,
    threads: int = 1,
    dtype: Literal["float32", "float16"] = "float32",
) -> dict:
    """Build a tokenizer and a tiny Llama, pretrain on slipped step-Countdown traces, evaluate on VAL, save.

    Args:
        out: output directory (tokenizer, safetensors weights, generation config, training_info.json).
        slip_rate: probability that a step of a training trace writes a wrong result (0: the twin).
        n_numbers: number counts of the problem mixture (the task's ``n_numbers``).
        n_weights: mixture weights of the counts (None: equal).
        max_number: numbers are drawn from 1..max_number.
        min_target: smallest target.
        max_target: largest target.
        steps: optimizer steps (the cosine schedule length).
        batch_size: traces per step.
        lr: peak AdamW learning rate.
        warmup: linear warm-up steps.
        weight_decay: AdamW weight decay.
        hidden: hidden size (intermediate size is 4x).
        layers: transformer layers.
        heads: attention heads.
        max_positions: max_position_embeddings (prompt + trace + eos must fit).
        max_new_tokens: generation length of the evaluation and of the saved generation config.
        minutes: wall-clock cap on the training loop (stops early, logged, if reached).
        seed: seeds the weights, the data stream (problems, plans, slips) and evaluation sampling.
        eval_samples: samples per VAL problem for the final statistics (:func:`base_statistics`, sampling
            seed ``seed + 1000``, fresh: no training stream uses it; 0 skips evaluation; >= 8).
        eval_problems: how many VAL problems (the first ones) the final evaluation uses.
        eval_batch_prompts: prompts per ``generate`` call during evaluation.
        eval_every: every this many steps, pass@1 on 50 VAL problems x 8 samples (0: never).
        guesser_draws: Monte-Carlo draws per VAL problem for the random guesser.
        threads: torch intra-op threads.
        dtype: dtype of the saved weights.

    Returns:
        The ``training_info.json`` content: arguments, parameter count, loss, observed slip rate of
        the training traces, timings, and (when ``eval_samples``) the VAL statistics.
    """
    t_start = time.time()
    torch.set_num_threads(threads)
    out = Path(out)
    task = StepsTask(n_numbers=list(n_numbers), n_weights=None if n_weights is None else list(n_weights),
                     max_number=max_number, min_target=min_target, max_target=max_target, seed=0)
    tok = build_tokenizer(max_length=max_positions)
    model = build_model(tok, hidden, layers, heads, max_positions, seed)
    model.generation_config.max_new_tokens = max_new_tokens
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params:,} parameters; vocab {len(tok)}", flush=True)

    rng = np.random.default_rng([seed, 2])
    counted = {"slipped": 0, "steps": 0, "longest": 0}

    def next_batch() -> tuple[list[str], list[str]]:
        prompts, traces, slipped = trace_batch(task, rng, batch_size, slip_rate)
        counted["slipped"] += slipped
        counted["steps"] += sum(t.count("=") for t in traces)
        counted["longest"] = max(counted["longest"], *(len(p) + len(t) + 2 for p, t in zip(prompts, traces)))
        if counted["longest"] > max_positions:
            raise ValueError(f"max_positions={max_positions} is shorter than a training sequence "
                             f"({counted['longest']} tokens); raise it")
        return prompts, traces

    def quick_eval() -> dict[str, float]:
        return evaluate_model(model, tok, task, task.problems("val")[:50], 8, 50, seed,
                              max_new_tokens=max_new_tokens, ks=(1, 8))

    t_train = time.time()
    losses, history, step = train_lm(model, tok, next_batch, steps=steps, lr=lr, warmup=warmup,
                                     weight_decay=weight_decay, minutes=minutes, eval_every=eval_every,
                                     quick_eval=quick_eval)
    info: dict = {
        "args": {k: str(v) if isinstance(v, Path) else (list(v) if isinstance(v, tuple) else v)
                 for k, v in locals_args(pretrain_steps, locals()).items()},
        "params": n_params,
        "steps_done": step,
        "final_loss": float(np.mean(losses[-50:])),
        "train_s": round(time.time() - t_train, 1),
        "train_slip_rate": counted["slipped"] / max(1, counted["steps"]),
        "longest_train_sequence": counted["longest"],
        "quick_val_history": history,
        "task": {"class_path": "lit_alpha.tasks.StepsTask", "n_numbers": list(n_numbers),
                 "n_weights": None if n_weights is None else list(n_weights), "max_number": max_number,
                 "min_target": min_target, "max_target": max_target, "seed": 0},
    }
    if dtype != "float32":  # evaluate exactly the weights that are saved
        model.to(getattr(torch, dtype)).to(torch.float32)
    if eval_samples:
        val = task.problems("val")[:eval_problems]
        t_eval = time.time()
        ks = tuple(k for k in (1, 8, 64, 256) if k <= eval_samples)
        info["val_model"] = base_statistics(model, tok, task, val, eval_samples, seed + 1000,
                                            max_new_tokens, eval_batch_prompts)
        info["eval_s"] = round(time.time() - t_eval, 1)
        info["val_guesser"] = guesser_pass_at_k(task, val, guesser_draws, seed, ks)
        info["eval_protocol"] = (
            f"{len(val)} VAL problems x {eval_samples} samples, T=1.0, top_p=1.0, max_new_tokens="
            f"{max_new_tokens}, unbiased pass@k; guesser: {guesser_draws} random_trace draws/problem, 1-(1-p)^k")
        print(f"val model   {info['val_model']}\nval guesser {info['val_guesser']}", flush=True)
    info["wall_s"] = round(time.time() - t_start, 1)
    out.mkdir(parents=True, exist_ok=True)
    model.to(getattr(torch, dtype)).save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    (out / "training_info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"saved to {out} ({info['wall_s']:.0f}s)", flush=True)
    return info
