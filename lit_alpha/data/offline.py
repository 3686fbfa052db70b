"""Offline rejection-sampling fine-tuning data: base-model samples drawn once, verified, cached on disk.

Offline RFT is forward KL(p_x ‖ π_θ) with the *base model* as proposal (docs/design.md §1): sample
``y ~ π_base(·|x)``, keep the verified ones, maximise their likelihood. At temperature 1 and
top_p 1 the kept samples are exact draws from the filtered base model ``p_x ∝ π_base · v``, so the
NLL on them is an unbiased estimate of ``Σ_x Z_x · CE(p_x, π_θ) = Σ_x Z_x · [KL(p_x‖π_θ) + H(p_x)]``
(prompts weighted by their acceptance rate Z_x, as in online RFT; no importance weights needed).

Budget, the same as the online objectives': the training prompts of step k are exactly those an
online run draws at step k (the same ``(seed, step)`` stream), each with ``n_samples`` completions
from π_base, for steps ``0 … max_steps − 1``. Step k's batch holds all of step k's samples with
their verdicts; pair it with :class:`~lit_alpha.objectives.RFT` (``A = 1[v ≥ threshold]``), so the loss
is ``−Σ_{verified} Σ_t log π_θ / (N·C)``, the online RFT loss with the base model as sampler.

Selected in YAML as ``data.offline: {class_path: lit_alpha.data.offline.OfflineRFT}`` of the usual
:class:`~lit_alpha.data.RolloutDataModule` (whose other fields keep their meaning); it replaces the
online prompts as the datamodule's :class:`~lit_alpha.data.sources.TrainSource`. The cache (one
``torch.save`` file of plain tensors and lists, loaded with ``weights_only=True``) is
built on the first ``train_dataloader()`` call (after the model is on its device), reused when its
settings (seed, sizes, sampling parameters, base-model fingerprint, the problems of every step)
match, rebuilt otherwise, and written atomically (temporary file + ``os.replace``). Validation and
test use the parent's on-policy evaluation path unchanged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, IterableDataset

from lit_alpha.batch import RolloutBatch
from lit_alpha.data.rollout import Rollout
from lit_alpha.data.sources import identity, shard_groups
from lit_alpha.verifiers.base import is_correct

log = logging.getLogger(__name__)
CACHE_VERSION = 1
_TENSORS = ("input_ids", "attention_mask", "completion_mask", "old_logprobs", "rewards", "old_entropy")
_LISTS = ("completions", "problem_ids", "reasons", "answers")


def base_fingerprint(model: torch.nn.Module) -> str:
    """A cheap identity of the base weights: name, parameter count and an absolute-sum checksum."""
    with torch.no_grad():
        params = list(model.parameters())
        count = sum(p.numel() for p in params)
        checksum = sum(float(p.detach().double().abs().sum()) for p in params)
    name = getattr(getattr(model, "config", None), "_name_or_path", "")
    return f"{Path(str(name)).name}|{count}|{checksum:.6e}"


class _StepStream(IterableDataset):
    """Yields ``{"offline_step": k}`` for k = start, start+1, … (the batch itself comes from the cache)."""

    def __init__(self, start: int) -> None:
        self.start = start

    def __iter__(self) -> Iterator[dict[str, int]]:
        step = self.start
        while True:
            yield {"offline_step": step}
            step += 1


class OfflineRFT:
    """Training batches of π_base samples drawn once and cached on disk (offline RFT's data): a
    :class:`~lit_alpha.data.sources.TrainSource`.

    The rollout supplies the task, sizes, sampler, sampling parameters, seed and the base model.

    Args:
        cache_path: the cache file; None: ``mlruns/offline_rft/<settings hash>.pt`` under the cwd.
    """

    def __init__(self, cache_path: str | None = None) -> None:
        self.cache_path = cache_path
        self._cache: list[dict[str, Any]] | None = None
        self.cache_file: Path | None = None

    # -- the cache -------------------------------------------------------------------------
    @staticmethod
    def _settings(rollout: Rollout, steps: int) -> dict[str, Any]:
        ids = [[str(r["id"]) for r in rollout.step_prompts(step)] for step in range(steps)]
        return {
            "version": CACHE_VERSION, "seed": rollout.seed, "steps": steps,
            "prompts_per_step": rollout.prompts_per_step, "n_samples": rollout.n_samples,
            "params": asdict(rollout.params), "base": base_fingerprint(rollout.models.base),
            "problems": hashlib.sha256(json.dumps(ids).encode()).hexdigest(),
        }

    @staticmethod
    def _default_path(settings: dict[str, Any]) -> Path:
        key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
        return Path("mlruns") / "offline_rft" / f"{key}.pt"

    def build_cache(self, rollout: Rollout, steps: int) -> list[dict[str, Any]]:
        """Load the cache if it matches, else sample ``steps`` batches from the rollout's base model,
        verify, save."""
        if steps < 1:
            raise ValueError(f"offline RFT needs trainer.max_steps >= 1 to know how much to sample, got {steps}")
        settings = self._settings(rollout, steps)
        path = Path(self.cache_path) if self.cache_path else self._default_path(settings)
        self.cache_file = path
        if path.exists():
            try:
                saved = torch.load(path, map_location="cpu", weights_only=True)
                if saved.get("settings") == settings:
                    self._cache = saved["batches"]
                    return self._cache
                log.warning("offline RFT cache %s was built with other settings: resampling", path)
            except Exception as err:  # a corrupt or foreign file: rebuild it
                log.warning("offline RFT cache %s unreadable (%s): resampling", path, err)
        batches = [self._sample_step(rollout, step) for step in range(steps)]
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        os.close(fd)
        try:
            torch.save({"settings": settings, "batches": batches}, tmp)
            os.replace(tmp, path)  # atomic: readers see the old file or the complete new one
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        self._cache = batches
        return batches

    @staticmethod
    def _sample_step(rollout: Rollout, step: int) -> dict[str, Any]:
        """Step ``step``'s prompts (as online runs draw them), n base samples each, verified."""
        batch = rollout.base_step(step)
        out: dict[str, Any] = {name: list(getattr(batch, name)) for name in _LISTS}
        for name in _TENSORS:
            value = getattr(batch, name)
            out[name] = None if value is None else value.detach().cpu()
        out["input_ids"] = out["input_ids"].to(torch.int32)
        out["attention_mask"] = out["attention_mask"].to(torch.uint8)
        out["completion_mask"] = out["completion_mask"].to(torch.uint8)
        out["prompt_len"] = batch.prompt_len
        out["n_samples"] = rollout.n_samples
        out["stats"] = {k: float(v) for k, v in batch.stats.items() if not k.startswith("perf/")}
        return out

    def batch_at(self, step: int, device: torch.device | str = "cpu") -> RolloutBatch:
        """The cached step ``step`` as a training RolloutBatch (π_old = π_base: the base sampled it)."""
        if self._cache is None:
            raise RuntimeError("the offline RFT cache is built by train_dataloader() / build_cache()")
        if not 0 <= step < len(self._cache):
            raise IndexError(f"offline RFT cache holds steps 0..{len(self._cache) - 1}, asked for {step}")
        c = self._cache[step]
        n, g = c["rewards"].numel(), int(c["n_samples"])
        old_lp = c["old_logprobs"].float()
        return RolloutBatch(
            input_ids=c["input_ids"].long(),
            attention_mask=c["attention_mask"].long(),
            completion_mask=c["completion_mask"].float(),
            old_logprobs=old_lp,
            rewards=c["rewards"].float(),
            group_ids=torch.arange(n // g).repeat_interleave(g),
            base_logprobs=old_lp.clone(),
            completions=list(c["completions"]),
            problem_ids=list(c["problem_ids"]),
            reasons=list(c["reasons"]),
            answers=list(c["answers"]),
            prompt_len=int(c["prompt_len"]),
            stats={**c["stats"], "train/offline_accept_frac": float(is_correct(c["rewards"]).float().mean())},
            old_entropy=None if c["old_entropy"] is None else c["old_entropy"].float(),
        ).to(device)

    # -- the TrainSource interface ---------------------------------------------------------------
    def loader(self, rollout: Rollout, start_step: int, max_steps: int) -> DataLoader:
        """Build (or load) the cache for the whole run (``max_steps`` steps), then stream step indices
        from ``start_step``."""
        if self._cache is None:
            self.build_cache(rollout, max_steps)
        return DataLoader(_StepStream(start_step), batch_size=None, collate_fn=identity)

    def owns(self, item: Any) -> bool:
        return isinstance(item, dict) and "offline_step" in item

    def batch(self, rollout: Rollout, item: dict[str, int]) -> RolloutBatch:
        """This process's share of the cached step's groups, on the rollout's device."""
        batch = self.batch_at(int(item["offline_step"]), rollout.device)
        return shard_groups(batch, rollout.rank, rollout.world_size)
