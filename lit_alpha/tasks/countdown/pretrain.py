"""Build and pretrain the embedded tiny base model for Countdown, from nothing.

``python -m lit_alpha pretrain countdown --out DIR [--minutes M] [--seed S] ...`` writes to ``DIR``:

* a char-level tokenizer (HF ``tokenizers`` wrapped as ``PreTrainedTokenizerFast``; ``<bos>`` is
  prepended when ``add_special_tokens=True``, no ``<eos>`` is appended);
* a tiny ``LlamaForCausalLM`` (safetensors) pretrained on Countdown *attempts* for TRAIN-split
  problems only: ``<bos> prompt attempt <eos>``, loss on ``attempt <eos>``. Attempts are a mixture
  (``--p_correct``) of correct solutions (uniform among all solutions) and wrong, well-formed random
  expressions. With the defaults (all correct; ~10 minutes on one CPU thread) the model is a *base*
  model with a modest acceptance rate on unseen number sets (VAL pass@1 ~12%) and room for coverage
  to move (pass@64 ~86%), well above the random guesser (~2.4% / ~60%);
* ``training_info.json``: arguments, final loss, wall time, and the VAL evaluation (pass@1/8/64 of
  the model at temperature 1 and of the random guesser).

The shipped ``lit_alpha/assets/countdown-tiny`` is this script's output with default arguments.
The shipped ``lit_alpha/assets/countdown5-tiny`` (the base model of the harder benchmark, 5 numbers
from 1..20, targets 100..999, see docs/results.md) is its output with ``--attempts sampled --steps 6000
--n_numbers 5 --max_number 20 --min_target 100 --max_target 999 --eval_every 500 --eval_samples 0``
(about 30 minutes on one CPU thread; its 256-sample evaluation is in docs/results.md).
Everything is seeded; with ``--minutes`` large enough not to cut training short, reruns on the same
machine and torch version reproduce the same weights.
"""

from __future__ import annotations

import json
import math
import pickle
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np
import torch

from lit_alpha.metrics.pass_at_k import pass_at_k_per_problem
from lit_alpha.models.loading import eval_mode
from lit_alpha.models.tiny import BOS, EOS, PAD, UNK, build_char_tokenizer, build_tiny_llama, encode_batch  # noqa: F401
from lit_alpha.tasks.countdown.task import CountdownTask, all_expressions, random_expression

ALPHABET = "0123456789 +-*/()|="
"""Every character a Countdown prompt or attempt uses; each is one token."""

EMBEDDED_DIR = Path(__file__).resolve().parents[2] / "assets" / "countdown-tiny"
"""Where the shipped base model lives (the default model of ``fit``)."""


# --------------------------------------------------------------------------- tokenizer and model


def build_tokenizer(max_length: int = 64):
    """A char-level ``PreTrainedTokenizerFast`` over :data:`ALPHABET` plus pad/bos/eos/unk
    (``max_length``: its ``model_max_length``)."""
    return build_char_tokenizer(ALPHABET, model_max_length=max_length)


def build_model(tok, hidden: int, layers: int, heads: int, max_positions: int, seed: int):
    """A tiny tied-embedding Llama whose special-token ids match ``tok`` (:func:`~lit_alpha.models.tiny.build_tiny_llama`)."""
    return build_tiny_llama(tok, hidden, layers, heads, max_positions, seed, max_new_tokens=32)


# --------------------------------------------------------------------------- data


def solution_table(
    multisets: Sequence[tuple[int, ...]], min_target: int, max_target: int
) -> dict[tuple[int, ...], dict[int, list[str]]]:
    """``table[sorted multiset][target]`` = sorted solution texts, one expression walk per multiset.

    Equal to ``countdown.solutions(numbers, target)`` for every in-range target (the set of texts
    does not depend on the order the numbers are given in).
    """
    table = {}
    for ms in multisets:
        by_target: dict[int, set[str]] = defaultdict(set)
        for value, text in all_expressions(tuple(ms)):
            if value.denominator == 1 and min_target <= value <= max_target:
                by_target[int(value)].add(text)
        table[tuple(sorted(ms))] = {t: sorted(s) for t, s in by_target.items()}
    return table


def make_attempt(
    numbers: Sequence[int], target: int, table, rng: np.random.Generator, p_correct: float
) -> str:
    """A correct solution (uniform) with probability ``p_correct``, else a random miss."""
    if rng.random() < p_correct:
        sols = table[tuple(sorted(numbers))][target]
        return sols[rng.integers(len(sols))]
    while True:
        value, text = random_expression(tuple(numbers), rng)
        if value != target:
            return text


# --------------------------------------------------------------------------- evaluation

@torch.no_grad()
def evaluate_model(
    model, tok, task: CountdownTask, records, n: int, batch_prompts: int, seed: int,
    max_new_tokens: int = 32, ks: Sequence[int] = (1, 8, 64), on_samples: Callable | None = None,
) -> dict[str, float]:
    """pass@k of ``n`` samples per record (T=1, top_p=1), checked by ``task.verifier``; prompts batched by length.

    ``on_samples(record, texts, verdicts)``, when given, is called once per record with its ``n``
    completions and their verdicts (for statistics beyond pass@k)."""
    with eval_mode(model):  # the mode it found restored after, also on an exception
        torch.manual_seed(seed)
        counts = {}
        ended = 0
        buckets: dict[int, list] = defaultdict(list)
        for r in records:
            buckets[len(task.prompt(r))].append(r)  # equal lengths: no padding inside a batch
        for _, group in sorted(buckets.items()):
            for s in range(0, len(group), batch_prompts):
                chunk = group[s : s + batch_prompts]
                enc = tok([task.prompt(r) for r in chunk], return_tensors="pt")
                out = model.generate(
                    **enc, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                    num_return_sequences=n, max_new_tokens=max_new_tokens,
                )
                new = out[:, enc["input_ids"].shape[1] :]
                ended += int((new == tok.eos_token_id).any(1).sum())
                texts = tok.batch_decode(new, skip_special_tokens=True)
                for i, r in enumerate(chunk):
                    verdicts = task.verifier.verify_batch([r] * n, texts[i * n : (i + 1) * n])
                    counts[r["id"]] = sum(v.correct for v in verdicts)
                    if on_samples is not None:
                        on_samples(r, texts[i * n : (i + 1) * n], verdicts)
        c = list(counts.values())
        result = {f"pass@{k}": float(pass_at_k_per_problem([n] * len(c), c, k).mean()) for k in ks if k <= n}
        result["eos_rate"] = ended / (n * len(records))
    return result


def evaluate_guesser(records, draws: int, seed: int, ks: Sequence[int] = (1, 8, 64)) -> dict[str, float]:
    """Monte-Carlo acceptance rate p of ``random_expression`` per problem; pass@k = 1-(1-p)^k."""
    rng = np.random.default_rng(seed)
    ps = []
    for r in records:
        nums = tuple(r["numbers"])
        ps.append(np.mean([random_expression(nums, rng)[0] == r["target"] for _ in range(draws)]))
    ps = np.array(ps)
    return {f"pass@{k}": float(np.mean(1 - (1 - ps) ** k)) for k in ks}


# --------------------------------------------------------------------------- the training loop


def train_lm(
    model, tok, next_batch: Callable[[], tuple[list[str], list[str]]], *, steps: int, lr: float,
    warmup: int, weight_decay: float, minutes: float, eval_every: int = 0,
    quick_eval: Callable[[], dict[str, float]] | None = None,
) -> tuple[list[float], list[dict], int]:
    """Pretrain ``model`` on ``<bos> prompt completion <eos>`` batches (loss on completion and eos).

    AdamW (betas 0.9/0.98), linear warm-up then cosine decay over ``steps``, gradient clipping at 1.0.

    Args:
        model: the causal LM to train (in place).
        tok: its tokenizer (:func:`build_tokenizer`).
        next_batch: returns the next ``(prompts, completions)`` batch (its own random stream).
        steps: optimizer steps (the cosine schedule length).
        lr: peak learning rate.
        warmup: linear warm-up steps.
        weight_decay: AdamW weight decay.
        minutes: wall-clock cap; training stops early (logged on stderr) when reached.
        eval_every: every this many steps, ``quick_eval()`` is called and recorded (0: never).
        quick_eval: the periodic evaluation.

    Returns:
        ``(losses, history, steps_done)``: the loss of every step, the periodic evaluations
        (``{"step": s, **quick_eval()}``), and the number of steps done.
    """
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min(1.0, (s + 1) / max(1, warmup))
        * 0.5 * (1 + math.cos(math.pi * min(1.0, s / max(1, steps)))),
    )
    model.train()
    t_train = time.time()
    losses: list[float] = []
    history = []
    step = 0
    for step in range(1, steps + 1):
        prompts, texts = next_batch()
        ids, labels = encode_batch(tok, prompts, texts)
        loss = model(input_ids=ids, labels=labels).loss  # right padding + causal mask: no attention mask
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 50 == 0 or step == steps:
            print(f"step {step} loss {np.mean(losses[-50:]):.4f} ({time.time() - t_train:.0f}s)", flush=True)
        if eval_every and quick_eval is not None and step % eval_every == 0:
            quick = quick_eval()
            history.append({"step": step, **quick})
            print(f"  quick val {quick}", flush=True)
        if time.time() - t_train > 60 * minutes:
            print(f"stopping at step {step}: {minutes} minute cap reached", file=sys.stderr, flush=True)
            break
    return losses, history, step


# --------------------------------------------------------------------------- the script


def pretrain(
    *,
    out: Path,
    minutes: float = 15.0,
    seed: int = 0,
    steps: int = 2400,
    batch_size: int = 64,
    lr: float = 2e-3,
    warmup: int = 100,
    weight_decay: float = 0.0,
    p_correct: float = 1.0,
    attempts: Literal["table", "sampled"] = "table",
    hidden: int = 128,
    layers: int = 4,
    heads: int = 4,
    max_positions: int = 64,
    n_numbers: int = 4,
    max_number: int = 12,
    min_target: int = 1,
    max_target: int = 99,
    eval_samples: int = 64,
    eval_batch_prompts: int = 8,
    guesser_draws: int = 2000,
    eval_every: int = 0,
    threads: int = 1,
    dtype: Literal["float32", "float16"] = "float32",
    solutions_cache: Path | None = None,
) -> dict:
    """Build a tokenizer and a tiny Llama, pretrain on TRAIN Countdown attempts, evaluate on VAL, save.

    Args:
        out: output directory (tokenizer, safetensors weights, generation config, training_info.json).
        minutes: wall-clock cap on the training loop; training stops early (logged) if reached.
        seed: seeds the weights, the data stream and evaluation sampling.
        steps: optimizer steps (the cosine schedule length).
        batch_size: sequences per step.
        lr: peak AdamW learning rate.
        warmup: linear warm-up steps.
        weight_decay: AdamW weight decay.
        p_correct: fraction of attempts that are correct solutions (the rest are random misses).
            1.0 by default: at 0.5 this budget gives a model barely above the random guesser; the
            tiny model's own arithmetic errors already make most of its samples wrong.
        attempts: where correct attempts come from. ``table``: uniform over every distinct
            solution text (enumerated once per training multiset; feasible up to 4 numbers).
            ``sampled``: the random expression that defined the problem's target, i.e. the random
            guesser's distribution conditioned on being correct (no enumeration: 5+ numbers).
        hidden: hidden size (intermediate size is 4x).
        layers: transformer layers.
        heads: attention heads.
        max_positions: max_position_embeddings.
        n_numbers: Countdown numbers per problem.
        max_number: numbers are drawn from 1..max_number.
        min_target: smallest target.
        max_target: largest target.
        eval_samples: samples per VAL problem for the final pass@k (0 skips evaluation).
        eval_batch_prompts: prompts per ``generate`` call during evaluation.
        guesser_draws: Monte-Carlo draws per VAL problem for the random-guesser baseline.
        eval_every: every this many steps, a quick pass@1 on 50 VAL problems x 8 samples (0: never).
        threads: torch intra-op threads.
        dtype: dtype of the saved weights, ``float32`` or ``float16``.
        solutions_cache: optional pickle path to reuse the solution table across runs.
    """
    t_start = time.time()
    torch.set_num_threads(threads)
    out = Path(out)
    task = CountdownTask(
        n_numbers=n_numbers, max_number=max_number, min_target=min_target, max_target=max_target, seed=0
    )
    tok = build_tokenizer()
    model = build_model(tok, hidden, layers, heads, max_positions, seed)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params:,} parameters; vocab {len(tok)}", flush=True)

    key = (n_numbers, max_number, min_target, max_target)
    table = {} if attempts == "sampled" else None
    if table is None and solutions_cache is not None and Path(solutions_cache).exists():
        cached = pickle.loads(Path(solutions_cache).read_bytes())
        table = cached["table"] if cached.get("key") == key else None
    if table is None:  # attempts == "table"
        table = solution_table(task.multisets("train"), min_target, max_target)
        if solutions_cache is not None:
            Path(solutions_cache).write_bytes(pickle.dumps({"key": key, "table": table}))
    t_table = time.time() - t_start
    print(f"solution table: {len(table)} train multisets in {t_table:.0f}s", flush=True)

    rng = np.random.default_rng([seed, 1])

    def next_batch() -> tuple[list[str], list[str]]:
        if attempts == "sampled":
            pairs = [task.sample_solved("train", 0, rng) for _ in range(batch_size)]
            recs = [r for r, _ in pairs]
            texts = [t if rng.random() < p_correct else make_attempt(r["numbers"], r["target"], table, rng, 0.0)
                     for r, t in pairs]
        else:
            recs = [task.sample_train(rng) for _ in range(batch_size)]
            texts = [make_attempt(r["numbers"], r["target"], table, rng, p_correct) for r in recs]
        return [task.prompt(r) for r in recs], texts

    def quick_eval() -> dict[str, float]:
        return evaluate_model(model, tok, task, task.problems("val")[:50], 8, 50, seed)

    t_train = time.time()
    losses, history, step = train_lm(model, tok, next_batch, steps=steps, lr=lr, warmup=warmup,
                                     weight_decay=weight_decay, minutes=minutes, eval_every=eval_every,
                                     quick_eval=quick_eval)
    train_s = time.time() - t_train

    info: dict = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in locals_args(pretrain, locals()).items()},
        "params": n_params,
        "steps_done": step,
        "final_loss": float(np.mean(losses[-50:])),
        "solution_table_s": round(t_table, 1),
        "train_s": round(train_s, 1),
        "quick_val_history": history,
        "task": {"n_numbers": n_numbers, "max_number": max_number, "min_target": min_target,
                 "max_target": max_target, "seed": 0},
    }
    if dtype != "float32":  # evaluate exactly the weights that are saved
        model.to(getattr(torch, dtype)).to(torch.float32)
    if eval_samples:
        val = task.problems("val")
        t_eval = time.time()
        info["val_model"] = evaluate_model(model, tok, task, val, eval_samples, eval_batch_prompts, seed)
        info["eval_s"] = round(time.time() - t_eval, 1)
        info["val_guesser"] = evaluate_guesser(val, guesser_draws, seed)
        info["eval_protocol"] = (
            f"{len(val)} VAL problems x {eval_samples} samples, T=1.0, top_p=1.0, max_new_tokens=32, "
            f"unbiased pass@k; guesser: {guesser_draws} random_expression draws/problem, 1-(1-p)^k"
        )
        print(f"val model   {info['val_model']}\nval guesser {info['val_guesser']}", flush=True)
    info["wall_s"] = round(time.time() - t_start, 1)

    out.mkdir(parents=True, exist_ok=True)
    model.to(getattr(torch, dtype)).save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    (out / "training_info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"saved to {out} ({info['wall_s']:.0f}s)", flush=True)
    return info


def locals_args(fn, scope: dict) -> dict:
    """The values of ``fn``'s parameters found in ``scope`` (for recording the run's arguments)."""
    import inspect

    return {k: scope[k] for k in inspect.signature(fn).parameters if k in scope}
