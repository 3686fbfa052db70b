"""The DataModule: streams fresh, verified rollout batches sampled from the current policy.

The DataLoaders yield only *prompts* (cheap, deterministic); the rollout itself happens in
``on_after_batch_transfer``, i.e. right before the step that consumes it. Sampling inside the
DataLoader would be one step stale, because Lightning prefetches a batch ahead; here the samples
always come from the weights of this very step.

Every random choice is a pure function of ``(seed, step)`` (train) or ``(seed, batch index)``
(evaluation), so a resumed run draws exactly the prompts and samples it would have drawn, and
every evaluation of every run uses the same problems and the same random numbers.

Data parallelism (``trainer.devices``/``num_nodes`` > 1, strategy ``ddp`` or
:class:`~lit_alpha.training.strategy.DecoderFSDP`): ``prompts_per_step`` stays the *global* number of prompts
per optimizer step; each of the W processes trains on its own contiguous slice of B/W whole prompts
(a prompt's group of n samples never straddles processes: the leave-one-out baselines and ẑ need the
whole group), sampled with a generator keyed by ``(seed, step, rank)``. With equal slices, the mean
loss of a process averaged by DDP over processes is the single-process mean loss, so the gradient is
the same. Evaluation batches are dealt round-robin, each problem evaluated exactly once (see
:func:`eval_batches`); the torchmetrics gather the per-problem counts of all processes.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import fields, replace
from typing import Any, Iterator

import lightning as L
import numpy as np
import torch
from jsonargparse import lazy_instance
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset

from lit_alpha.batch import RolloutBatch
from lit_alpha.data.offline import OfflineRFT
from lit_alpha.data.rollout import rollout
from lit_alpha.errors import UserError
from lit_alpha.data.mixture import join_groups
from lit_alpha.training.precision import rollout_context
from lit_alpha.sampling.base import Sampler, SamplingParams
from lit_alpha.sampling.hf import HFSampler
from lit_alpha.scoring.logprobs import token_logprobs
from lit_alpha.training.strategy import lockstep
from lit_alpha.tasks.base import Record, Task
from lit_alpha.tasks.countdown import CountdownTask
from lit_alpha.verifiers.guarded import GuardedVerifier

_TRAIN, _EVAL = 0, 1


def _identity(x: Any) -> Any:
    return x


def rank_and_world(trainer: L.Trainer | None) -> tuple[int, int]:
    """``(global rank, world size)`` of this process; ``(0, 1)`` without a trainer."""
    if trainer is None:
        return 0, 1
    return int(trainer.global_rank), int(trainer.world_size)


def rollout_key(seed: int, step: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """Seed key of a training step's sampling generator: ``(seed, step)`` on one process (as always),
    with the rank appended under data parallelism so that the processes draw independent samples."""
    key = [seed, _TRAIN, step]
    return key if world_size == 1 else key + [rank]


def _check_divisible(prompts_per_step: int, world_size: int) -> None:
    if prompts_per_step % world_size:
        raise UserError(
            f"data.prompts_per_step={prompts_per_step} must be divisible by the number of training processes "
            f"({world_size} = trainer.devices x trainer.num_nodes): it is the global number of prompts per "
            f"optimizer step, and every process takes an equal share of whole prompts")


class PromptStream(IterableDataset):
    """Infinite stream of training prompt batches; batch k depends only on (seed, k).

    ``prompts_per_step`` (B) is the global number of prompts per step. Every process draws the same
    global list and keeps its own contiguous slice ``[rank·B/W, (rank+1)·B/W)``: the slices of the W
    processes are disjoint and together are exactly the single-process step's prompts, in order.
    """

    def __init__(self, task: Task, prompts_per_step: int, seed: int, start_step: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        _check_divisible(prompts_per_step, world_size)
        self.task, self.prompts_per_step, self.seed = task, prompts_per_step, seed
        self.start_step, self.rank, self.world_size = start_step, rank, world_size

    def step_records(self, step: int) -> list[Record]:
        """All B prompts of step ``step`` (every process draws the same list)."""
        rng = np.random.default_rng([self.seed, _TRAIN, step])
        return [self.task.sample_train(rng) for _ in range(self.prompts_per_step)]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        per = self.prompts_per_step // self.world_size
        lo = self.rank * per
        step = self.start_step
        while True:
            yield {"step": step, "records": self.step_records(step)[lo : lo + per]}
            step += 1


class _Batches(IterableDataset):
    """This process's share of the evaluation batches. Iterable on purpose: under DDP Lightning puts a
    DistributedSampler on map-style datasets, which would split the list again and pad it with
    duplicated batches. (No ``__len__``: Lightning warns about an iterable dataset that has one.)"""

    def __init__(self, batches: list[dict[str, Any]]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.batches)


def eval_batches(problems: list[Record], size: int, split: str, rank: int = 0,
                 world_size: int = 1) -> list[dict[str, Any]]:
    """This process's evaluation batches.

    The batches are the single-process ones (problems ``i·size … (i+1)·size − 1`` with ``index`` i,
    which seeds their sampling) dealt round-robin: rank r gets batches r, r+W, r+2W, …, so every
    problem is evaluated exactly once and with the very samples a single process would draw. A rank
    left with one batch fewer gets an empty padding batch (``records == []``, counts nothing) so that
    all ranks run the same number of evaluation steps (their collectives must pair up). With fewer
    batches than ranks the batch size shrinks to ``len(problems) // W``.
    """
    if world_size > 1 and math.ceil(len(problems) / size) < world_size:
        if len(problems) < world_size:
            raise UserError(f"data: the {split} split has {len(problems)} problems, fewer than the "
                            f"{world_size} processes that evaluate it")
        size = len(problems) // world_size
    batches = [{"index": i // size, "split": split, "records": problems[i : i + size]}
               for i in range(0, len(problems), size)]
    mine = batches[rank::world_size]
    steps = math.ceil(len(batches) / world_size)
    return mine + [{"index": -1, "split": split, "records": []} for _ in range(steps - len(mine))]


def shard_groups(batch: RolloutBatch, rank: int, world_size: int) -> RolloutBatch:
    """Rank ``rank``'s contiguous share of ``batch``'s groups: whole groups, ids renumbered from 0.

    Per-sample fields (``[N, ...]`` tensors, length-N lists) are sliced; ``stats`` and ``prompt_len`` kept.
    """
    if world_size == 1:
        return batch
    n, groups = batch.rewards.numel(), batch.num_groups
    _check_divisible(groups, world_size)
    per, size = groups // world_size, n // groups
    lo, hi = rank * per * size, (rank + 1) * per * size

    def take(value: Any) -> Any:
        if isinstance(value, Tensor) and value.dim() and value.shape[0] == n:
            return value[lo:hi]
        if isinstance(value, list) and len(value) == n:
            return value[lo:hi]
        return value

    out = replace(batch, **{f.name: take(getattr(batch, f.name)) for f in fields(batch)})
    out.group_ids = out.group_ids - rank * per
    return out


def empty_batch(device: torch.device) -> RolloutBatch:
    """A batch of no samples: the evaluation padding batch's rollout (the module skips it)."""
    z = torch.zeros(0, 0, device=device)  # [0, 0]
    return RolloutBatch(input_ids=z.long(), attention_mask=z.long(), completion_mask=z, old_logprobs=z,
                        rewards=torch.zeros(0, device=device), group_ids=torch.zeros(0, dtype=torch.long, device=device))


class RolloutDataModule(L.LightningDataModule):
    """Fresh on-policy batches for training; many samples per held-out problem for evaluation.

    Args:
        task: the problems, prompt format and verifier.
        prompts_per_step: prompts drawn per optimizer step (B), over all processes together: with W
            processes (``trainer.devices`` x ``trainer.num_nodes``) each samples and trains B/W of them,
            so B must be divisible by W.
        n_samples: completions per prompt in training (G, the group size).
        val_samples: completions per held-out problem in validation/test (n of pass@k).
        eval_prompts_per_batch: held-out problems per evaluation batch (on each process).
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
            None: the task's own ``verify_timeout_s`` (0 unless it says otherwise, e.g. ``PromptsTask``
            with a user's reward function: 10 s).
        verify_workers: verification worker processes (when ``verify_timeout_s > 0``).
        base_samples: K > 0 appends K samples of the frozen π_base to every training group (exact target
            samples once verified; a mixture proposal, :mod:`lit_alpha.data.mixture`). Only objectives
            with ``supports_base_samples`` (α-DPG) accept it; needs the HF sampler. Training metrics
            (``train/reward_mean``...) are then over all G+K rows of a group.
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
        verify_timeout_s: float | None = None,
        verify_workers: int = 1,
        base_samples: int = 0,
    ) -> None:
        super().__init__()
        if verify_timeout_s is None:
            verify_timeout_s = float(getattr(task, "verify_timeout_s", 0.0))
        if not verify_timeout_s >= 0:
            raise ValueError(f"data.verify_timeout_s must be >= 0, got {verify_timeout_s}")
        if base_samples < 0:
            raise ValueError(f"data.base_samples must be >= 0, got {base_samples}")
        if base_samples and not isinstance(sampler, HFSampler):
            raise ValueError("data.base_samples needs data.sampler HFSampler (it samples the frozen base model)")
        self.base_samples = base_samples
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
        rank, world = rank_and_world(self.trainer)
        _check_divisible(self.prompts_per_step, world)
        if self.offline is not None:
            return self._offline_loader(start, rank, world)
        stream = PromptStream(self.task, self.prompts_per_step, self.seed, start, rank, world)
        return DataLoader(stream, batch_size=None, collate_fn=_identity)

    def _offline_loader(self, start: int, rank: int, world: int) -> DataLoader:
        """Offline RFT: rank 0 builds (or loads) the cache, then the others load it; each trains its
        share of every step's groups (:func:`shard_groups` in :meth:`on_after_batch_transfer`)."""
        if world == 1:
            return self.offline.train_dataloader(self, start)
        from lightning.pytorch.strategies import FSDPStrategy

        if isinstance(self.trainer.strategy, FSDPStrategy):
            raise UserError("data.offline: offline RFT is not supported with a sharded strategy; use trainer.strategy ddp")
        if rank > 0:
            self.trainer.strategy.barrier("offline_rft_cache")
        loader = self.offline.train_dataloader(self, start)
        if rank == 0:
            self.trainer.strategy.barrier("offline_rft_cache")
        return loader

    def _eval_loader(self, split: str) -> DataLoader:
        rank, world = rank_and_world(self.trainer)
        batches = eval_batches(self.task.problems(split), self.eval_prompts_per_batch, split, rank, world)
        return DataLoader(batches if world == 1 else _Batches(batches), batch_size=None, collate_fn=_identity)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    # -- the rollout, at the last moment ---------------------------------------------------
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        rank, world = rank_and_world(self.trainer)
        if self.offline is not None and self.offline.owns(batch):
            return shard_groups(self.offline.to_batch(self, batch), rank, world)
        if not isinstance(batch, dict) or "records" not in batch:
            return batch
        module = self.trainer.lightning_module
        if not batch["records"]:  # evaluation padding: join the other ranks' (FSDP) forwards, count nothing
            with lockstep(module.policy, world):
                pass
            return empty_batch(module.device)
        training = "step" in batch
        key = rollout_key(self.seed, batch["step"], rank, world) if training else [self.seed, _EVAL, batch["index"]]
        generator = torch.Generator(device=module.device)
        generator.manual_seed(int(np.random.default_rng(key).integers(2**62)))
        # sample and score in the training step's precision (bf16-mixed: with the weight-cast cache on)
        precision = functools.partial(rollout_context, self.trainer, module.device)
        with precision(), lockstep(module.policy, world) as policy:
            out = rollout(
                policy,
                module.tokenizer,
                self.task,
                batch["records"],
                self.n_samples if training else self.val_samples,
                self.sampler,
                self.params,
                generator,
                verify=self.guard.verify_batch,
            )
        if training and self.base_samples:
            if not getattr(module.objective, "supports_base_samples", False):
                raise UserError(f"data.base_samples: {type(module.objective).__name__} does not support base "
                                f"samples (a mixture proposal); use lit_alpha.objectives.AlphaDPG or base_samples 0")
            generator.manual_seed(int(np.random.default_rng([*key, 1]).integers(2**62)))
            with precision(), torch.no_grad():
                extra = rollout(module.base, module.tokenizer, self.task, batch["records"], self.base_samples,
                                self.sampler, self.params, generator, verify=self.guard.verify_batch)
            pad = module.tokenizer.pad_token_id if module.tokenizer.pad_token_id is not None else 0
            out = join_groups(out, extra, self.n_samples, self.base_samples, pad)
        if training and getattr(module, "scores_base", True):  # after the lockstep block: every rank's
            # base forwards pair up under FSDP
            t0 = time.perf_counter()
            with precision(), torch.no_grad():
                out.base_logprobs = token_logprobs(module.base, out.input_ids, out.attention_mask,
                                                   out.prompt_len).detach()  # [N, T]
            out.stats["perf/base_logprob_s"] = time.perf_counter() - t0
        out.stats["verifier/faults_total"] = float(self.guard.total_faults)  # over the run, resumed too
        return out
