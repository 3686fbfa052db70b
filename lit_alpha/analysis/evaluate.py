"""The evaluation table: many samples per problem, one row of counts per problem.

For every problem, ``n`` completions sampled with a run's policy are verified and reduced to one row
(:func:`problem_row`): ``problem_id``, the problem's fields, ``n``, ``c`` (correct), the canonical
correct answers with their counts, the counts of all answers (canonicalised; unparseable ones pooled
as ``<invalid>``), distinct correct answers, and Shannon entropy (nats) and Gini–Simpson index
(``1 − Σp²``) of all answers and of the correct ones. Nothing has to be re-sampled to recompute a
metric: :mod:`lit_alpha.analysis.frontier` works from the table. The command that writes these tables
into MLflow runs is ``python -m lit_alpha evaluate`` (:mod:`lit_alpha.cli.evaluate`).

Sampling is seeded by ``(eval_seed, split, batch index)`` only (:func:`lit_alpha.data.rollout.split_key`),
independent of the training seed, so every run is evaluated on the same problems with the same random
numbers (common random numbers make paired comparisons tighter); with ``problems_per_batch`` 1,
problem i's samples depend on ``(eval_seed, split, i)`` alone.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from lit_alpha.analysis.stats import TARGET_COLUMNS, shannon_entropy, simpson_index
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
                    problems_per_batch: int = 1, log=None, keep: list | None = None) -> list[dict[str, Any]]:
    """Sample ``n`` completions for each record (in batches of whole problems) with the rollout's policy
    (a :class:`~lit_alpha.data.rollout.Rollout` with its models attached), verify them, return the rows.
    ``keep``: a list that gets one ``(completions, rewards)`` pair per record (for ``Task.eval_metrics``)."""
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
                if keep is not None:
                    keep.append((list(batch.completions[sl]), rewards[sl]))
            if log is not None and (len(rows) % 25 < len(chunk) or len(rows) == len(records)):
                log(f"  {split}: {len(rows)}/{len(records)} problems, {time.perf_counter() - start:.0f}s")
    return rows
