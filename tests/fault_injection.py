"""Test-only faults for whole runs, importable by name from a config (``class_path:
fault_injection.X``; the tests put this directory on ``PYTHONPATH``): a task with a faulty verifier,
a sampler that blanks completions, an objective that returns NaN, a checkpoint writer that SIGKILLs
its own process right after a save."""

from __future__ import annotations

import os
import signal
from typing import Any, Sequence

import torch
from faulty_verifiers import FaultyVerifier

from lit_alpha.batch import ObjectiveInputs, ObjectiveOutput
from lit_alpha.objectives.alpha_dpg import AlphaDPG
from lit_alpha.sampling.base import Samples, SamplingParams
from lit_alpha.sampling.hf import HFSampler
from lit_alpha.tasks.countdown import CountdownTask
from lit_alpha.training.checkpoint import AtomicCheckpointIO


class FaultyTask(CountdownTask):
    """Countdown with :class:`FaultyVerifier` (about ``rate`` of the samples raise, hang or return garbage).

    Args:
        rate: fraction of completions that trigger a fault.
        hang_s: how long a hanging verification sleeps.
        num_val: validation problems.
        num_test: test problems.
    """

    def __init__(self, rate: float = 0.25, hang_s: float = 60.0, num_val: int = 6, num_test: int = 6) -> None:
        super().__init__(num_val=num_val, num_test=num_test)
        self.verifier = FaultyVerifier(rate=rate, hang_s=hang_s)


class BlankingSampler(HFSampler):
    """HF sampling, but every ``every``-th completion's text comes back empty (its tokens are kept).

    Args:
        every: blank rows 0, every, 2*every, ...
    """

    def __init__(self, every: int = 3) -> None:
        super().__init__()
        self.every = every

    def sample(self, model: torch.nn.Module, tokenizer: Any, prompts: Sequence[str], n: int,
               params: SamplingParams, generator: torch.Generator | None = None) -> Samples:
        out = super().sample(model, tokenizer, prompts, n, params, generator)
        out.completions = ["" if i % self.every == 0 else c for i, c in enumerate(out.completions)]
        return out


class NaNAt(AlphaDPG):
    """α-DPG whose loss is NaN at ``loss_steps`` and whose gradient is NaN (loss finite) at ``grad_steps``.

    Args:
        loss_steps: optimizer steps with a NaN loss; ``[-1]``: every step.
        grad_steps: optimizer steps with a finite loss but a NaN gradient.
        ranks: the processes where the faults happen (empty: all).
    """

    def __init__(self, loss_steps: list[int] = [], grad_steps: list[int] = [],  # noqa: B006
                 ranks: list[int] = []) -> None:  # noqa: B006
        super().__init__(alpha=0.5, normalizer=32.0)
        self.loss_steps, self.grad_steps, self.ranks = list(loss_steps), list(grad_steps), list(ranks)

    def __call__(self, inputs: ObjectiveInputs) -> ObjectiveOutput:
        out = super().__call__(inputs)
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        if self.ranks and rank not in self.ranks:
            return out
        if inputs.step in self.loss_steps or -1 in self.loss_steps:
            out.loss = out.loss * float("nan")
        if inputs.step in self.grad_steps:
            inputs.logprobs.register_hook(lambda g: g * float("nan"))
        return out


class KillAfterSave(AtomicCheckpointIO):
    """Write checkpoints atomically; right after ``last.ckpt`` of step ``step`` is on disk, SIGKILL
    this very process (no clean-up of any kind runs: the harshest crash).

    Args:
        step: the global step whose ``last.ckpt`` save is the last thing this process does.
    """

    def __init__(self, step: int = 3) -> None:
        super().__init__()
        self.step = step

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        super().save_checkpoint(checkpoint, path, storage_options)
        if str(path).endswith("last.ckpt") and checkpoint.get("global_step") == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
