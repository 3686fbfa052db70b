"""The DataModule: streams fresh, verified rollout batches sampled from the current policy.

The DataLoaders yield only *prompts* (cheap, deterministic; or, offline RFT, step indices into its
cache); the rollout itself happens in ``on_after_batch_transfer``, i.e. right before the step that
consumes it. Sampling inside the DataLoader would be one step stale, because Lightning prefetches a
batch ahead; here the samples always come from the weights of this very step.

The DataModule is the Lightning adapter around two pieces: a
:class:`~lit_alpha.data.sources.TrainSource` (:class:`~lit_alpha.data.sources.OnlinePrompts`, or
:class:`~lit_alpha.data.offline.OfflineRFT`) and the :class:`~lit_alpha.data.rollout.Rollout`, which
samples, verifies, scores under π_base, seeds and counts verifier faults. The LightningModule's models
are handed to the rollout once per stage (``module.rollout_models()``, after the strategy has wrapped
them), with this process's rank and the training step's precision context.

Data parallelism (``trainer.devices``/``num_nodes`` > 1, strategy ``ddp`` or
:class:`~lit_alpha.training.strategy.DecoderFSDP`): each process trains its share of whole prompts (see
:mod:`lit_alpha.data.sources`), sampled with a generator keyed by ``(seed, step, rank)``. Evaluation
batches are dealt round-robin, each problem evaluated exactly once (see :func:`eval_batches`); the
torchmetrics gather the per-problem counts of all processes.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Iterator

import lightning as L
from jsonargparse import lazy_instance
from torch.utils.data import DataLoader, IterableDataset

from lit_alpha.data.offline import OfflineRFT
from lit_alpha.data.rollout import Rollout
from lit_alpha.data.sources import OnlinePrompts, TrainSource, check_divisible, identity
from lit_alpha.errors import UserError
from lit_alpha.sampling.base import Sampler, SamplingParams
from lit_alpha.sampling.hf import HFSampler
from lit_alpha.tasks.base import Record, Task
from lit_alpha.tasks.strategy import StrategyTask
from lit_alpha.training.precision import rollout_context
from lit_alpha.verifiers.guarded import GuardedVerifier


def rank_and_world(trainer: L.Trainer | None) -> tuple[int, int]:
    """``(global rank, world size)`` of this process; ``(0, 1)`` without a trainer."""
    if trainer is None:
        return 0, 1
    return int(trainer.global_rank), int(trainer.world_size)


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


class RolloutDataModule(L.LightningDataModule):
    """Fresh on-policy batches for training; many samples per held-out problem for evaluation.

    Args:
        task: the problems, prompt format and verifier (default: the strategy benchmark, docs/benchmarks/strategy.md).
        prompts_per_step: prompts drawn per optimizer step (B), over all processes together: with W
            processes (``trainer.devices`` x ``trainer.num_nodes``) each samples and trains B/W of them,
            so B must be divisible by W.
        n_samples: completions per prompt in training (G, the group size).
        val_samples: completions per held-out problem in validation/test (n of pass@k).
        eval_prompts_per_batch: held-out problems per evaluation batch (on each process).
        temperature: sampling temperature (training and evaluation).
        top_p: nucleus sampling mass (training and evaluation).
        max_new_tokens: completion budget in tokens (also the loss normaliser C of the method configs).
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
    """

    def __init__(
        self,
        task: Task = lazy_instance(StrategyTask),
        prompts_per_step: int = 32,
        n_samples: int = 8,
        val_samples: int = 64,
        eval_prompts_per_batch: int = 50,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 12,
        sampler: Sampler = lazy_instance(HFSampler),
        seed: int = 0,
        offline: OfflineRFT | None = None,
        verify_timeout_s: float | None = None,
        verify_workers: int = 1,
    ) -> None:
        super().__init__()
        if verify_timeout_s is None:
            verify_timeout_s = float(getattr(task, "verify_timeout_s", 0.0))
        if not verify_timeout_s >= 0:
            raise ValueError(f"data.verify_timeout_s must be >= 0, got {verify_timeout_s}")
        if verify_workers < 1:
            raise ValueError(f"data.verify_workers must be >= 1, got {verify_workers}")
        for name, value in [("prompts_per_step", prompts_per_step), ("n_samples", n_samples),
                            ("val_samples", val_samples), ("eval_prompts_per_batch", eval_prompts_per_batch)]:
            if value < 1:
                raise ValueError(f"data.{name} must be >= 1, got {value}")
        self.eval_prompts_per_batch = eval_prompts_per_batch
        self.offline = offline
        self.source: TrainSource = offline if offline is not None else OnlinePrompts()
        self.rollout = Rollout(
            task, sampler, SamplingParams(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens),
            seed=seed, prompts_per_step=prompts_per_step, n_samples=n_samples, val_samples=val_samples,
            guard=GuardedVerifier(task.verifier, verify_timeout_s, verify_workers))

    # the settings live in the rollout, which uses them
    task = property(lambda self: self.rollout.task, doc="the problems, prompt format and verifier")
    sampler = property(lambda self: self.rollout.sampler, doc="the sampler")
    params = property(lambda self: self.rollout.params, doc="the sampling parameters")
    seed = property(lambda self: self.rollout.seed, doc="seeds prompt order and sampling")

    # -- resume state: the cumulative verifier-fault counts (the stream restarts at global_step) --
    def state_dict(self) -> dict[str, Any]:
        return self.rollout.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rollout.load_state_dict(state_dict)

    def setup(self, stage: str) -> None:
        self.rollout.detach()  # handed over again once the strategy has wrapped the models

    def teardown(self, stage: str) -> None:
        self.rollout.close()

    def _attached(self) -> Rollout:
        """The rollout, with the LightningModule's models handed over once per stage (after the strategy
        has wrapped them): ``module.rollout_models()``, this process's rank and the step's precision."""
        if not self.rollout.attached:
            module = self.trainer.lightning_module
            rank, world = rank_and_world(self.trainer)
            self.rollout.attach(module.rollout_models(), module.device,
                                functools.partial(rollout_context, self.trainer, module.device), rank, world)
        return self.rollout

    # -- loaders: prompts only -------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        if self.trainer is None:
            raise RuntimeError("the training DataLoader needs the datamodule to be attached to a trainer")
        start, max_steps = self.trainer.global_step, int(self.trainer.max_steps or 0)
        rank, world = rank_and_world(self.trainer)
        check_divisible(self.rollout.prompts_per_step, world)
        rollout = self._attached()
        if rollout.models.base_samples:  # the objective asks for π_base rows in every group (MixtureAlphaDPG)
            if self.offline is not None:
                raise UserError("data.offline: offline RFT trains on its cache of π_base samples; an objective with "
                                "base_samples (MixtureAlphaDPG) needs fresh on-policy groups")
            if not isinstance(self.sampler, HFSampler):
                raise UserError("model.objective.init_args.base_samples: π_base samples need data.sampler "
                                "HFSampler (it samples the frozen base model)")
        if self.offline is None or world == 1:
            return self.source.loader(rollout, start, max_steps)
        # offline RFT under DDP: rank 0 builds (or loads) the cache, then the others load it; each trains
        # its share of every step's groups
        from lightning.pytorch.strategies import FSDPStrategy

        if isinstance(self.trainer.strategy, FSDPStrategy):
            raise UserError("data.offline: offline RFT is not supported with a sharded strategy; use trainer.strategy ddp")
        if rank > 0:
            self.trainer.strategy.barrier("offline_rft_cache")
        loader = self.source.loader(rollout, start, max_steps)
        if rank == 0:
            self.trainer.strategy.barrier("offline_rft_cache")
        return loader

    def _eval_loader(self, split: str) -> DataLoader:
        rank, world = rank_and_world(self.trainer)
        batches = eval_batches(self.task.problems(split), self.eval_prompts_per_batch, split, rank, world)
        return DataLoader(batches if world == 1 else _Batches(batches), batch_size=None, collate_fn=identity)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    # -- the rollout, at the last moment ---------------------------------------------------
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.source.owns(batch):
            rollout = self._attached()
            return rollout.tally(self.source.batch(rollout, batch))
        if isinstance(batch, dict) and "records" in batch:  # validation / test
            return self._attached().eval_batch(batch["records"], int(batch["index"]))
        return batch
