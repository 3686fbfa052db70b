"""One rollout: prompts → n completions each (current policy) → verdicts → base log-probs.

This is the whole data path of a step (DESIGN §3). Timings and verdict reasons are returned in
``RolloutBatch.stats`` so the trainer can log them (``perf/*``, ``verifier/*``).
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import torch

from lit_alpha.batch import RolloutBatch
from lit_alpha.sampling.base import Sampler, SamplingParams
from lit_alpha.scoring.logprobs import token_logprobs
from lit_alpha.tasks.base import Record, Task
from lit_alpha.verifiers.base import Verdict, count_reasons
from lit_alpha.verifiers.guarded import GuardedVerifier

VerifyFn = Callable[[Sequence[Record], Sequence[str]], list[Verdict]]


def rollout(
    policy: torch.nn.Module,
    tokenizer,
    task: Task,
    records: Sequence[Record],
    n: int,
    sampler: Sampler,
    params: SamplingParams,
    generator: torch.Generator | None = None,
    base: torch.nn.Module | None = None,
    verify: VerifyFn | None = None,
) -> RolloutBatch:
    """Sample ``n`` completions per record with ``policy``, verify them, and (if ``base`` is given)
    score them under the frozen base model. Rows are grouped by record, in record order.

    ``verify`` defaults to the task's verifier guarded in-process (an exception or a malformed verdict
    is a 0 verdict with a reason, see :mod:`lit_alpha.verifiers.guarded`)."""
    t0 = time.perf_counter()
    samples = sampler.sample(policy, tokenizer, [task.prompt(r) for r in records], n, params, generator)
    t1 = time.perf_counter()
    expanded = [r for r in records for _ in range(n)]
    verify = verify or GuardedVerifier(task.verifier).verify_batch
    verdicts = verify(expanded, samples.completions)
    t2 = time.perf_counter()
    device = next(policy.parameters()).device
    input_ids = samples.input_ids.to(device)
    attention_mask = samples.attention_mask.to(device)
    base_lp = None
    if base is not None:
        with torch.no_grad():
            base_lp = token_logprobs(base, input_ids, attention_mask, samples.prompt_len).detach()
    t3 = time.perf_counter()
    reasons = [v.reason for v in verdicts]
    stats = {
        "perf/sample_s": t1 - t0,
        "perf/verify_s": t2 - t1,
        "perf/completion_tokens": float(samples.completion_mask.sum()),
        "train/truncated_frac": float(samples.truncated.float().mean()),
        **samples.stats,  # the sampler's own (vLLM: perf/weight_sync_s, perf/vllm_generate_s)
    }
    if base is not None:
        stats["perf/base_logprob_s"] = t3 - t2
    for reason, count in count_reasons(verdicts).items():
        stats[f"verifier/{reason}_frac"] = count / max(1, len(verdicts))
    return RolloutBatch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        completion_mask=samples.completion_mask.to(device),
        old_logprobs=samples.logprobs.to(device),
        rewards=torch.tensor([v.score for v in verdicts], dtype=torch.float32, device=device),
        group_ids=torch.arange(len(records), device=device).repeat_interleave(n),
        base_logprobs=base_lp,
        completions=samples.completions,
        problem_ids=[str(r["id"]) for r in expanded],
        reasons=reasons,
        answers=[v.answer for v in verdicts],
        prompt_len=samples.prompt_len,
        stats=stats,
        old_entropy=None if samples.entropy is None else samples.entropy.to(device),
    )
