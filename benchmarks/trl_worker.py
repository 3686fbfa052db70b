"""TRL side of the comparison: ``trl.GRPOTrainer`` doing the same GRPO steps as ``lit_worker.py``.

Run by ``bench_trl.py`` with the TRL environment's python (``benchmarks/setup_trl.sh``)::

    /work/venv-trl/bin/python benchmarks/trl_worker.py --config '{"model": "countdown-tiny"}' --out r.json

Same work as lit_alpha, setting by setting (every TRL default that would change the work is set):

* model and tokenizer: ``lit_alpha.models.load_policy`` (float32, pad token as lit_alpha sets it),
  passed as objects, so TRL loads nothing itself (its ``model_init_kwargs`` dtype is never used);
* prompts: the same Countdown records per step, in the same order (``shuffle_dataset=False``), as
  plain-text prompts that TRL tokenises with the same tokenizer call (special tokens added);
* reward: lit_alpha's Countdown verifier, through the same in-process ``GuardedVerifier``;
* one generation per optimizer step and one optimizer step per generation:
  ``per_device_train_batch_size = B·G``, ``gradient_accumulation_steps = 1``,
  ``steps_per_generation = 1`` (so ``generation_batch_size = B·G``), ``num_iterations = 1`` (so TRL
  computes no old log-probs), β = 0 (no
  reference model is loaded);
* sampling: ``temperature``, ``top_p`` as given, ``top_k=0`` (off), ``min_p=None``,
  ``repetition_penalty=1.0``, ``max_completion_length = max_new_tokens``, ``use_vllm=False``;
* loss: ``loss_type="dr_grpo"`` (Σ token losses / (N · max_completion_length), lit_alpha's
  ``aggregation: constant`` with C = max_new_tokens), ``scale_rewards="none"`` (no std division),
  ``epsilon = clip_eps``, ``mask_truncated_completions=False``, ``top_entropy_quantile=1.0``;
* optimiser: ``optim="adamw_torch"`` (``torch.optim.AdamW`` as lit_alpha), same lr, betas (0.9, 0.999),
  eps 1e-8, weight decay 0, constant schedule without warm-up, ``max_grad_norm=1.0``;
* precision and memory: ``bf16 = (precision == "bf16")`` (TRL's own default is on), ``fp16=False``,
  ``use_cpu=True``,
  ``gradient_checkpointing=False`` (TRL defaults it on; lit_alpha does not checkpoint);
* bookkeeping off: ``report_to="none"``, ``save_strategy="no"``, ``disable_tqdm=True``,
  ``logging_steps = steps`` (TRL still gathers its per-step metrics, as lit_alpha does).

Timing: thin wrappers around ``_generate`` (sampling: tokenise, ``model.generate``, decode),
``_calculate_rewards`` (verification) and ``_get_per_token_logps_and_entropies`` (forwards: with grad
= the policy's, without = reference/old log-probs), and step boundaries from a ``TrainerCallback``.
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    BenchConfig,
    StepRecord,
    WorkerResult,
    peak_rss_mb,
    set_threads,
    train_records,
    versions,
    worker_args,
)

_T0 = time.perf_counter()


def _timed(obj: Any, name: str, sink) -> None:
    """Replace ``obj.name`` by a wrapper that adds its wall time to ``sink(seconds, result)``."""
    inner = getattr(obj, name)

    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        out = inner(*args, **kwargs)
        sink(time.perf_counter() - t, out)
        return out

    setattr(obj, name, wrapper)


def run(cfg: BenchConfig) -> WorkerResult:
    """Train ``cfg.steps`` GRPO steps with TRL's ``GRPOTrainer`` and return the per-step timings."""
    set_threads(cfg.threads)
    warnings.filterwarnings("ignore")
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from lit_alpha.models import load_policy
    from lit_alpha.tasks.countdown import COUNTDOWN4, CountdownTask
    from lit_alpha.verifiers.guarded import GuardedVerifier

    task = CountdownTask(**COUNTDOWN4)
    guard = GuardedVerifier(task.verifier)
    rows = [{"prompt": task.prompt(r), "id": r["id"], "numbers": r["numbers"], "target": r["target"]}
            for step in train_records(cfg) for r in step]

    def countdown_reward(prompts, completions, id, numbers, target, **_: Any) -> list[float]:
        records = [{"id": i, "numbers": n, "target": t} for i, n, t in zip(id, numbers, target)]
        return [v.score for v in guard.verify_batch(records, completions)]

    model, tokenizer = load_policy(cfg.model)
    n_seq = cfg.prompts_per_step * cfg.group_size
    args = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="bench_trl_"), max_steps=cfg.steps, seed=cfg.seed,
        per_device_train_batch_size=n_seq, gradient_accumulation_steps=1,
        steps_per_generation=1, num_iterations=1, num_generations=cfg.group_size, shuffle_dataset=False,
        max_completion_length=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p, top_k=0,
        min_p=None, repetition_penalty=1.0, use_vllm=False,
        beta=0.0, epsilon=cfg.clip_eps, loss_type="dr_grpo", scale_rewards="none",
        mask_truncated_completions=False, top_entropy_quantile=1.0,
        learning_rate=cfg.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, max_grad_norm=1.0, optim="adamw_torch",
        bf16=cfg.precision == "bf16", fp16=False, use_cpu=True, gradient_checkpointing=False,
        report_to="none", save_strategy="no", disable_tqdm=True, logging_steps=cfg.steps,
        dataloader_num_workers=0, remove_unused_columns=False, log_completions=False,
    )
    result = WorkerResult(side="trl", config=vars(cfg).copy(), versions=versions())
    acc = {"sample_s": 0.0, "verify_s": 0.0, "ref_fwd_s": 0.0, "policy_fwd_s": 0.0, "tokens": 0.0}

    class StepTimer(TrainerCallback):
        def on_train_begin(self, *_: Any, **__: Any) -> None:
            self.last, self.last_cpu = time.perf_counter(), time.process_time()
            result.setup_s = self.last - _T0

        def on_step_end(self, *_: Any, **__: Any) -> None:
            now, cpu = time.perf_counter(), time.process_time()
            result.steps.append(StepRecord(
                step_s=now - self.last, step_cpu_s=cpu - self.last_cpu,
                sample_s=acc["sample_s"], verify_s=acc["verify_s"],
                ref_fwd_s=acc["ref_fwd_s"], policy_fwd_s=acc["policy_fwd_s"], sequences=n_seq,
                completion_tokens=acc["tokens"],
            ).close())
            acc.update(dict.fromkeys(acc, 0.0))
            self.last, self.last_cpu = now, cpu

    trainer = GRPOTrainer(model=model, reward_funcs=countdown_reward, args=args,
                          train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                          callbacks=[StepTimer()])

    def add(key: str):
        def sink(seconds: float, _: Any) -> None:
            acc[key] += seconds
        return sink

    def forward_sink(seconds: float, _: Any) -> None:
        acc["policy_fwd_s" if torch.is_grad_enabled() else "ref_fwd_s"] += seconds

    def tokens_sink(_: float, out: dict[str, Any]) -> None:
        acc["tokens"] += float(out["completion_mask"].sum())

    _timed(trainer, "_generate", add("sample_s"))
    _timed(trainer, "_calculate_rewards", add("verify_s"))
    _timed(trainer, "_get_per_token_logps_and_entropies", forward_sink)
    _timed(trainer, "_generate_and_score_completions", tokens_sink)
    trainer.train()
    result.peak_rss_mb = peak_rss_mb()
    return result


def main() -> None:
    args = worker_args(__doc__.splitlines()[0])
    run(BenchConfig.from_json(args.config)).save(args.out)


if __name__ == "__main__":
    main()
