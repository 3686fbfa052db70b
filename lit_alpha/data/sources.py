"""Where training batches come from: one small interface, two implementations.

A :class:`TrainSource` gives the training DataLoader (cheap items: prompts or step indices) and turns
each item, right before its step, into a :class:`~lit_alpha.batch.RolloutBatch` through the
:class:`~lit_alpha.data.rollout.Rollout`. :class:`OnlinePrompts` samples the current policy on the
step's prompts; :class:`~lit_alpha.data.offline.OfflineRFT` serves π_base samples cached on disk.

Data parallelism: ``prompts_per_step`` (B) stays the *global* number of prompts per optimizer step;
each of the W processes trains on its own contiguous slice of B/W whole prompts (a prompt's group of
n samples never straddles processes: the leave-one-out baselines and ẑ need the whole group). With
equal slices, the mean loss of a process averaged by DDP over processes is the single-process mean
loss, so the gradient is the same.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any, Iterator, Protocol

from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset

from lit_alpha.batch import RolloutBatch
from lit_alpha.data.rollout import Rollout, step_prompts
from lit_alpha.errors import UserError
from lit_alpha.tasks.base import Record, Task


def identity(x: Any) -> Any:
    """The DataLoaders' collate function: items are already whole batches."""
    return x


def check_divisible(prompts_per_step: int, world_size: int) -> None:
    """``prompts_per_step`` must split into equal shares of whole prompts over the processes."""
    if prompts_per_step % world_size:
        raise UserError(
            f"data.prompts_per_step={prompts_per_step} must be divisible by the number of training processes "
            f"({world_size} = trainer.devices x trainer.num_nodes): it is the global number of prompts per "
            f"optimizer step, and every process takes an equal share of whole prompts")


class TrainSource(Protocol):
    """The interface of a source of training batches."""

    def loader(self, rollout: Rollout, start_step: int, max_steps: int) -> DataLoader:
        """The training DataLoader, from step ``start_step`` (a resumed run's ``global_step``) on."""
        ...

    def owns(self, item: Any) -> bool:
        """Is ``item`` one of this source's loader items?"""
        ...

    def batch(self, rollout: Rollout, item: Any) -> RolloutBatch:
        """This process's training batch of ``item``, on the rollout's device."""
        ...


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
        check_divisible(prompts_per_step, world_size)
        self.task, self.prompts_per_step, self.seed = task, prompts_per_step, seed
        self.start_step, self.rank, self.world_size = start_step, rank, world_size

    def step_records(self, step: int) -> list[Record]:
        """All B prompts of step ``step`` (every process draws the same list)."""
        return step_prompts(self.task, self.seed, step, self.prompts_per_step)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        per = self.prompts_per_step // self.world_size
        lo = self.rank * per
        step = self.start_step
        while True:
            yield {"step": step, "records": self.step_records(step)[lo : lo + per]}
            step += 1


class OnlinePrompts:
    """Fresh on-policy batches: the step's prompts (:class:`PromptStream`), sampled from the current
    policy at the last moment (:meth:`Rollout.train_batch`)."""

    def loader(self, rollout: Rollout, start_step: int, max_steps: int) -> DataLoader:
        stream = PromptStream(rollout.task, rollout.prompts_per_step, rollout.seed, start_step,
                              rollout.rank, rollout.world_size)
        return DataLoader(stream, batch_size=None, collate_fn=identity)

    def owns(self, item: Any) -> bool:
        return isinstance(item, dict) and "step" in item and "records" in item

    def batch(self, rollout: Rollout, item: dict[str, Any]) -> RolloutBatch:
        return rollout.train_batch(item["records"], int(item["step"]))


def shard_groups(batch: RolloutBatch, rank: int, world_size: int) -> RolloutBatch:
    """Rank ``rank``'s contiguous share of ``batch``'s groups: whole groups, ids renumbered from 0.

    Per-sample fields (``[N, ...]`` tensors, length-N lists) are sliced; ``stats`` and ``prompt_len`` kept.
    """
    if world_size == 1:
        return batch
    n, groups = batch.rewards.numel(), batch.num_groups
    check_divisible(groups, world_size)
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
