"""The DataModule: streams fresh, verified rollout batches sampled from the current policy.

The DataLoaders yield only *prompts* (cheap, deterministic); the rollout itself happens in
``on_after_batch_transfer``, i.e. right before the step that consumes it. Sampling inside the
DataLoader would be one step stale, because Lightning prefetches a batch ahead; here the samples
always come from the weights of this very step.

Every random choice is a pure function of ``(seed, step)`` (train) or ``(seed, batch index)``
(evaluation), so a resumed run draws exactly the prompts and samples it would have drawn, and
every evaluation of every run uses the same problems and the same random numbers.
"""

from __future__ import annotations

from typing import Any, Iterator

import lightning as L
import numpy as np
import torch
from jsonargparse import lazy_instance
from torch.utils.data import DataLoader, IterableDataset

from lit_alpha.data.offline import OfflineRFT
from lit_alpha.data.rollout import rollout
from lit_alpha.sampling.base import Sampler, SamplingParams
from lit_alpha.sampling.hf import HFSampler
from lit_alpha.tasks.base import Task
from lit_alpha.tasks.countdown import CountdownTask
from lit_alpha.verifiers.guarded import GuardedVerifier

_TRAIN, _EVAL = 0, 1


def _identity(x: Any) -> Any:
    return x


class PromptStream(IterableDataset):
    """Infinite stream of training prompt batches; batch k depends only on (seed, k)."""

    def __init__(self, task: Task, prompts_per_step: int, seed: int, start_step: int = 0) -> None:
        self.task, self.prompts_per_step, self.seed = task, prompts_per_step, seed
        self.start_step = start_step

    def __iter__(self) -> Iterator[dict[str, Any]]:
        step = self.start_step
        while True:
            rng = np.random.default_rng([self.seed, _TRAIN, step])
            records = [self.task.sample_train(rng) for _ in range(self.prompts_per_step)]
            yield {"step": step, "records": records}
            step += 1


class RolloutDataModule(L.LightningDataModule):
    """Fresh on-policy batches for training; many samples per held-out problem for evaluation.

    Args:
        task: the problems, prompt format and verifier.
        prompts_per_step: prompts drawn per optimizer step (B).
        n_samples: completions per prompt in training (G, the group size).
        val_samples: completions per held-out problem in validation/test (n of pass@k).
        eval_prompts_per_batch: held-out problems per evaluation batch.
        temperature: sampling temperature (training and evaluation).
        top_p: nucleus sampling mass (training and evaluation).
        max_new_tokens: completion budget in tokens.
        sampler: the sampler implementation (HF generate-style on CPU; vLLM on GPU).
        seed: seeds prompt order and sampling.
        offline: train on π_base samples drawn once and cached (offline RFT, see
            :mod:`lit_alpha.data.offline`) instead of fresh samples of the policy; None: on-policy.
        verify_timeout_s: per-sample verification time limit; > 0 runs the verifier in worker
            processes and gives a sample that exceeds it a 0 verdict (``timeout``); 0 runs it
            in-process (for pure, bounded verifiers such as Countdown's). Either way a verifier that
            raises or returns garbage costs that sample a 0 verdict, counted in ``verifier/*``.
        verify_workers: verification worker processes (when ``verify_timeout_s > 0``).
    """

    def __init__(
        self,
        task: Task = lazy_instance(CountdownTask),
        prompts_per_step: int = 32,
        n_samples: int = 8,
        val_samples: int = 64,
        eval_prompts_per_batch: int = 16,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 32,
        sampler: Sampler = lazy_instance(HFSampler),
        seed: int = 0,
        offline: OfflineRFT | None = None,
        verify_timeout_s: float = 0.0,
        verify_workers: int = 1,
    ) -> None:
        super().__init__()
        if not verify_timeout_s >= 0:
            raise ValueError(f"data.verify_timeout_s must be >= 0, got {verify_timeout_s}")
        if verify_workers < 1:
            raise ValueError(f"data.verify_workers must be >= 1, got {verify_workers}")
        for name, value in [("prompts_per_step", prompts_per_step), ("n_samples", n_samples),
                            ("val_samples", val_samples), ("eval_prompts_per_batch", eval_prompts_per_batch)]:
            if value < 1:
                raise ValueError(f"data.{name} must be >= 1, got {value}")
        self.task, self.sampler, self.seed = task, sampler, seed
        self.prompts_per_step, self.n_samples = prompts_per_step, n_samples
        self.val_samples, self.eval_prompts_per_batch = val_samples, eval_prompts_per_batch
        self.params = SamplingParams(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens)
        self.offline = offline
        self.guard = GuardedVerifier(task.verifier, verify_timeout_s, verify_workers)

    # -- resume state: the cumulative verifier-fault counts (the stream restarts at global_step) --
    def state_dict(self) -> dict[str, Any]:
        return {"verifier_faults": self.guard.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.guard.load_state_dict(state_dict.get("verifier_faults", {}))

    def teardown(self, stage: str) -> None:
        self.guard.close()

    # -- loaders: prompts only -------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        start = self.trainer.global_step if self.trainer is not None else 0
        if self.offline is not None:
            return self.offline.train_dataloader(self, start)
        stream = PromptStream(self.task, self.prompts_per_step, self.seed, start_step=start)
        return DataLoader(stream, batch_size=None, collate_fn=_identity)

    def _eval_loader(self, split: str) -> DataLoader:
        problems = self.task.problems(split)
        size = self.eval_prompts_per_batch
        batches = [{"index": i // size, "split": split, "records": problems[i : i + size]}
                   for i in range(0, len(problems), size)]
        return DataLoader(batches, batch_size=None, collate_fn=_identity)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    # -- the rollout, at the last moment ---------------------------------------------------
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.offline is not None and self.offline.owns(batch):
            return self.offline.to_batch(self, batch)
        if not isinstance(batch, dict) or "records" not in batch:
            return batch
        module = self.trainer.lightning_module
        training = "step" in batch
        key = [self.seed, _TRAIN, batch["step"]] if training else [self.seed, _EVAL, batch["index"]]
        generator = torch.Generator(device=module.device)
        generator.manual_seed(int(np.random.default_rng(key).integers(2**62)))
        out = rollout(
            module.policy,
            module.tokenizer,
            self.task,
            batch["records"],
            self.n_samples if training else self.val_samples,
            self.sampler,
            self.params,
            generator,
            base=module.base if training else None,
            verify=self.guard.verify_batch,
        )
        out.stats["verifier/faults_total"] = float(self.guard.total_faults)  # over the run, resumed too
        return out
