"""Build and pretrain the embedded base model of the strategy benchmark, from nothing.

The base is a tiny char-level Llama (:mod:`lit_alpha.models.tiny`) trained on UNFILTERED attempts for
TRAIN-split digit strings: ``<bos> prompt attempt <eos>``, loss on ``attempt <eos>``. An attempt picks
a strategy from the task's ``prior`` (an SFT model's habits, whatever is accepted) and writes its
result with each digit independently slipped, with probability ``slip``, to one of the 9 other digits
(the transferable skill the base executes unreliably). A fraction ``reveal_frac`` of the prompts are
the control arm's (``48213|cpy,neg>``), the rest the hidden arm's (``48213>``); the attempt never
depends on the revealed set, so one model is the base of both arms and the arms differ only in their
prompts.

``pretrain(out=...)`` writes the tokenizer, the weights (safetensors) and ``training_info.json``
(arguments, loss, wall time, a quick validation check of both arms). The shipped
``lit_alpha/assets/strategy-tiny`` is its output with default arguments; everything is seeded, and a
rerun on the same machine and torch version gives the same weights.
"""

from __future__ import annotations

import inspect
import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from lit_alpha.models.tiny import build_char_tokenizer, build_tiny_llama
from lit_alpha.tasks.countdown.pretrain import train_lm
from lit_alpha.tasks.strategy.task import StrategyTask
from lit_alpha.verifiers.strategy import TRANSFORMS

ALPHABET = "0123456789:>|,abcdefghijklmnopqrstuvwxyz"
"""Every character a prompt or attempt of the benchmark uses (and the rest of the lower-case letters)."""


def slipped(result: str, slip: float, rng: np.random.Generator) -> str:
    """``result`` with each digit replaced, with probability ``slip``, by a uniform other digit."""
    out = []
    for d in result:
        if rng.random() < slip:
            other = int(rng.integers(9))
            out.append(str(other if other < int(d) else other + 1))
        else:
            out.append(d)
    return "".join(out)


def attempt(task: StrategyTask, digits: str, slip: float, rng: np.random.Generator) -> str:
    """One unfiltered attempt: a strategy from ``task.prior``, its result with digit slips."""
    names = task.names
    name = names[int(rng.choice(len(names), p=[task.prior[n] for n in names]))]
    return f"{name}:{slipped(TRANSFORMS[name](digits), slip, rng)}"


@torch.no_grad()
def quick_eval(model, tok, task: StrategyTask, records: Sequence[dict], n: int, seed: int,
               max_new_tokens: int = 12) -> dict[str, float]:
    """pass@1 and :meth:`StrategyTask.eval_metrics` of ``n`` samples (T=1) per record via ``generate``."""
    model.eval()
    torch.manual_seed(seed)
    completions, rewards = [], []
    for r in records:
        enc = tok([task.prompt(r)], return_tensors="pt")
        out = model.generate(**enc, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                             num_return_sequences=n, max_new_tokens=max_new_tokens)
        texts = tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        completions.append(texts)
        rewards.append([v.score for v in task.verifier.verify_batch([r] * n, texts)])
    model.train()
    result = {"pass@1": float(np.mean(rewards))}
    result.update(task.eval_metrics(records, completions, rewards))
    return result


def pretrain(
    out: str,
    steps: int = 3000,
    seed: int = 0,
    slip: float = 0.05,
    reveal_frac: float = 0.5,
    length: int = 5,
    prior: dict[str, float] | None = None,
    rates: dict[str, float] | None = None,
    batch_size: int = 64,
    lr: float = 3e-3,
    warmup: int = 100,
    hidden: int = 64,
    layers: int = 3,
    heads: int = 4,
    max_positions: int = 48,
    eval_problems: int = 50,
    eval_samples: int = 32,
    threads: int = 1,
) -> dict:
    """Pretrain the strategy benchmark's base on unfiltered, slipped attempts; save it to ``out``.

    Args:
        out: output directory (tokenizer, safetensors weights, generation config, training_info.json).
        steps: optimizer steps (AdamW, linear warm-up then cosine decay to 0).
        seed: seeds the weights, the data stream and the quick evaluation.
        slip: per-digit slip probability of the training attempts.
        reveal_frac: fraction of training prompts in the control arm's form (accepted set shown).
        length: digits per problem (the task's ``length``).
        prior: the strategy mixture of the attempts (default: the task's ``DEFAULT_PRIOR``).
        rates: acceptance rates (default: the task's; only the control-arm prompts depend on them).
        batch_size: sequences per step.
        lr: peak learning rate.
        warmup: linear warm-up steps.
        hidden: hidden size (intermediate size 4x).
        layers: transformer layers.
        heads: attention heads.
        max_positions: ``max_position_embeddings``.
        eval_problems: VAL problems of the quick check at the end (per arm; 0 skips it).
        eval_samples: samples per problem of the quick check.
        threads: torch intra-op threads.

    Returns:
        The contents of ``training_info.json``.
    """
    args = {k: v for k, v in locals().items() if k in inspect.signature(pretrain).parameters}
    t_start = time.time()
    torch.set_num_threads(threads)
    hidden_task = StrategyTask(length=length, prior=prior, rates=rates)
    reveal_task = StrategyTask(length=length, prior=prior, rates=rates, reveal=True)
    tok = build_char_tokenizer(ALPHABET, model_max_length=max_positions)
    model = build_tiny_llama(tok, hidden, layers, heads, max_positions, seed, max_new_tokens=length + 8)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params:,} parameters; vocab {len(tok)}", flush=True)
    rng = np.random.default_rng([seed, 1])

    def next_batch() -> tuple[list[str], list[str]]:
        prompts, texts = [], []
        for _ in range(batch_size):
            record = hidden_task.sample_train(rng)
            task = reveal_task if rng.random() < reveal_frac else hidden_task
            prompts.append(task.prompt(record))
            texts.append(attempt(hidden_task, record["digits"], slip, rng))
        return prompts, texts

    losses, _, _ = train_lm(model, tok, next_batch, steps=steps, lr=lr, warmup=warmup, weight_decay=0.0,
                            minutes=float("inf"))
    info: dict = {
        "args": args,
        "params": n_params,
        "final_loss": float(np.mean(losses[-100:])),
        "train_s": round(time.time() - t_start, 1),
        "task": {"length": hidden_task.length, "prior": hidden_task.prior, "rates": hidden_task.rates,
                 "key": hidden_task.key},
    }
    if eval_problems:
        for label, task in (("hidden", hidden_task), ("reveal", reveal_task)):
            info[f"quick_val_{label}"] = quick_eval(model, tok, task, task.problems("val")[:eval_problems],
                                                    eval_samples, seed, max_new_tokens=length + 8)
            print(f"quick val {label}: {info[f'quick_val_{label}']}", flush=True)
    info["wall_s"] = round(time.time() - t_start, 1)
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    (path / "training_info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"saved to {path} ({info['wall_s']:.0f}s)", flush=True)
    return info
