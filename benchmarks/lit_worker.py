"""lit_alpha side of the TRL comparison: GRPO (β=0, Dr.GRPO loss) for a fixed number of steps.

Run by ``bench_trl.py`` (and ``bench_sampler.py --scaling``) in its own process::

    python benchmarks/lit_worker.py --config '{"model": "countdown-tiny", "steps": 10}' --out result.json

It builds exactly what ``python -m lit_alpha fit --config configs/grpo.yaml`` builds (``AlphaModule`` +
``RolloutDataModule`` + a Lightning ``Trainer``), with the benchmark's sizes, a constant learning rate
(``warmup_frac=0``), ``normalizer = max_new_tokens`` (= TRL's ``dr_grpo`` divisor), and the logging
back-end, checkpoints, validation and the progress bar off (the module still computes and
``self.log``\\ s every metric, as in a real run); ``precision: bf16`` is ``trainer.precision
bf16-mixed`` (autocast, float32 master weights, fused AdamW).
Timings come from the rollout's own ``perf/*`` stats (sampling,
verification, base log-probs), from a timing wrapper around the policy's ``token_logprobs`` call, and
from the step boundaries (``on_train_batch_end``). Nothing here changes the work done.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BenchConfig, StepRecord, WorkerResult, peak_rss_mb, set_threads, versions, worker_args  # noqa: E402

_T0 = time.perf_counter()


def run(cfg: BenchConfig) -> WorkerResult:
    """Train ``cfg.steps`` GRPO steps with lit_alpha and return the per-step timings."""
    set_threads(cfg.threads)
    warnings.filterwarnings("ignore")
    import lightning as L

    import lit_alpha.module as module_mod
    from lit_alpha.data.datamodule import RolloutDataModule
    from lit_alpha.module import AlphaModule
    from lit_alpha.objectives import GRPO
    from lit_alpha.sampling import HFSampler
    from lit_alpha.tasks.countdown import COUNTDOWN4, CountdownTask

    policy_fwd = [0.0]
    inner = module_mod.token_logprobs

    def timed_token_logprobs(*args, **kwargs):  # the policy's forward with grad, in training_step
        t = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            policy_fwd[0] += time.perf_counter() - t

    module_mod.token_logprobs = timed_token_logprobs

    objective = GRPO(beta=0.0, std_normalize=False, clip_eps=cfg.clip_eps, aggregation="constant",
                     normalizer=float(cfg.max_new_tokens))
    module = AlphaModule(model=cfg.model, objective=objective, lr=cfg.lr, warmup_frac=0.0, num_threads=cfg.threads)
    data = RolloutDataModule(task=CountdownTask(**COUNTDOWN4), prompts_per_step=cfg.prompts_per_step, n_samples=cfg.group_size,
                             temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                             sampler=HFSampler(), seed=cfg.seed)
    result = WorkerResult(side="lit_alpha", config=vars(cfg).copy(), versions=versions())
    dec_params, head_params = matmul_params(module.policy)

    class StepTimer(L.Callback):
        def on_train_start(self, trainer, pl_module) -> None:
            self.last, self.last_cpu = time.perf_counter(), time.process_time()
            result.setup_s = self.last - _T0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            self.train_cpu = time.process_time()  # after the rollout (on_after_batch_transfer)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            now, cpu = time.perf_counter(), time.process_time()
            stats = batch.stats
            result.steps.append(StepRecord(
                step_s=now - self.last,
                sample_s=stats["perf/sample_s"],
                verify_s=stats["perf/verify_s"],
                ref_fwd_s=stats.get("perf/base_logprob_s", 0.0),
                policy_fwd_s=policy_fwd[0],
                sequences=int(batch.rewards.numel()),
                completion_tokens=float(stats["perf/completion_tokens"]),
                step_cpu_s=cpu - self.last_cpu,
                train_cpu_s=cpu - self.train_cpu,
                logprob_mismatch=float(trainer.callback_metrics.get("perf/logprob_mismatch", 0.0)),
                train_matmul_flop=train_matmul_flop(batch, cfg.group_size, dec_params, head_params),
            ).close())
            policy_fwd[0] = 0.0
            self.last, self.last_cpu = now, cpu

    trainer = L.Trainer(
        max_steps=cfg.steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, gradient_clip_val=1.0, num_sanity_val_steps=0, limit_val_batches=0,
        accelerator="cpu", devices=1, callbacks=[StepTimer()],
        precision="bf16-mixed" if cfg.precision == "bf16" else "32-true",
    )
    L.seed_everything(cfg.seed, verbose=False)
    trainer.fit(module, data)
    result.peak_rss_mb = peak_rss_mb()
    return result


def matmul_params(model) -> tuple[int, int]:
    """``(decoder linear weights, output-layer weights)``: the matmul parameters a token meets."""
    import torch

    dec = sum(m.weight.numel() for m in model.get_decoder().modules() if isinstance(m, torch.nn.Linear))
    return dec, model.get_output_embeddings().weight.numel()


def train_matmul_flop(batch, group_size: int, dec_params: int, head_params: int) -> float:
    """Matmul FLOPs of the policy's forward and backward on ``batch``: each distinct prompt's tokens
    (once: shared prompts) and every completion token through the decoder's linears, the completion
    tokens through the output layer, 2 FLOPs per weight and token forward, twice that backward.
    Attention's own products (under 2% at these lengths) and bucket padding are not counted."""
    prompts = float(batch.attention_mask[::group_size, : batch.prompt_len].sum())  # rows are grouped by prompt
    completions = float(batch.completion_mask.sum())
    forward = 2.0 * (dec_params * (prompts + completions) + head_params * completions)
    return 3.0 * forward


def main() -> None:
    args = worker_args(__doc__.splitlines()[0])
    run(BenchConfig.from_json(args.config)).save(args.out)


if __name__ == "__main__":
    main()
