"""The LightningModule: a policy π_θ, a frozen copy of it as π_base, one Objective.

One optimizer step per fresh batch (the batch arrives already sampled and verified, see
:mod:`lit_alpha.data.datamodule`). The frozen base is always kept: α-DPG's target
``p ∝ π_base · v`` needs its log-probs even when no KL term is used.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import lightning as L
import torch
from jsonargparse import lazy_instance

from lit_alpha.batch import ObjectiveInputs, RolloutBatch
from lit_alpha.metrics.pass_at_k import DistinctCorrect, PassAtK, default_ks
from lit_alpha.models import load_policy
from lit_alpha.objectives.alpha_dpg import AlphaDPG
from lit_alpha.objectives.base import Objective
from lit_alpha.sampling.logprobs import token_logprobs


class AlphaModule(L.LightningModule):
    """Fine-tune a Hugging Face causal LM with a pluggable objective.

    Args:
        model: a local model directory, a hub id, or an embedded model name (``countdown-tiny``).
        objective: the loss (``class_path`` + ``init_args`` in YAML).
        lr: AdamW learning rate after warm-up.
        weight_decay: AdamW weight decay.
        betas: AdamW betas.
        warmup_frac: fraction of ``trainer.max_steps`` with a linear warm-up from 0.
        dtype: parameter dtype of policy and base (``float32``, ``bfloat16``, ``float16``).
        num_threads: torch CPU threads (0 leaves torch's default; 1 is fastest for tiny models on 2 cores).
    """

    def __init__(
        self,
        model: str = "countdown-tiny",
        objective: Objective = lazy_instance(AlphaDPG),
        lr: float = 3e-4,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        warmup_frac: float = 0.05,
        dtype: str = "float32",
        num_threads: int = 0,
    ) -> None:
        super().__init__()
        if lr <= 0:
            raise ValueError(f"model.lr must be > 0, got {lr}")
        if not 0 <= warmup_frac < 1:
            raise ValueError(f"model.warmup_frac must be in [0, 1), got {warmup_frac}")
        if num_threads > 0:
            torch.set_num_threads(num_threads)
        self.objective = objective
        self.lr, self.weight_decay, self.betas, self.warmup_frac = lr, weight_decay, tuple(betas), warmup_frac
        self.policy, self.tokenizer = load_policy(model, dtype)
        self.base = copy.deepcopy(self.policy).eval().requires_grad_(False)
        self.strict_loading = False  # checkpoints omit the frozen base (rebuilt from `model`)
        self._eval_metrics: dict[str, tuple[PassAtK, DistinctCorrect]] = {}

    # -- training ----------------------------------------------------------------------------
    def training_step(self, batch: RolloutBatch, batch_idx: int) -> torch.Tensor:
        entropy = None
        if getattr(self.objective, "needs_entropy", False):  # π_θ's per-token entropy, chunked, detached
            logprobs, entropy = token_logprobs(
                self.policy, batch.input_ids, batch.attention_mask, batch.prompt_len, with_entropy=True
            )
        else:
            logprobs = token_logprobs(self.policy, batch.input_ids, batch.attention_mask, batch.prompt_len)
        assert batch.base_logprobs is not None, "training batches carry base log-probs"
        max_steps = self.trainer.max_steps if self._trainer is not None else 0
        out = self.objective(ObjectiveInputs(
            logprobs=logprobs,  # [N, T] with grad
            old_logprobs=batch.old_logprobs,
            base_logprobs=batch.base_logprobs,
            mask=batch.completion_mask,
            rewards=batch.rewards,
            group_ids=batch.group_ids,
            entropy=entropy,
            old_entropy=batch.old_entropy,
            step=int(self.global_step),
            max_steps=max(0, int(max_steps or 0)),
        ))
        size = batch.rewards.numel()
        self.log_dict({f"train/{k}": v for k, v in out.metrics.items()}, batch_size=size)
        self.log_dict({k: float(v) for k, v in batch.stats.items()}, batch_size=size)
        self.log("train/completion_len", batch.completion_mask.sum(-1).mean(), batch_size=size)
        self.log("train/distinct_correct", self._distinct_correct(batch).mean(), batch_size=size)
        return out.loss

    # -- evaluation: pass@k and distinct correct answers on held-out problems ----------------
    def _metrics_for(self, stage: str, n: int) -> tuple[PassAtK, DistinctCorrect]:
        if stage not in self._eval_metrics:
            self._eval_metrics[stage] = (PassAtK(default_ks(n)), DistinctCorrect())
        return self._eval_metrics[stage]

    @staticmethod
    def _per_problem(batch: RolloutBatch) -> tuple[torch.Tensor, torch.Tensor, list[set[str]]]:
        groups = batch.group_ids.tolist()
        num_groups = batch.num_groups
        n = torch.zeros(num_groups, dtype=torch.long)
        c = torch.zeros(num_groups, dtype=torch.long)
        answers: list[set[str]] = [set() for _ in range(num_groups)]
        for g, r, a in zip(groups, batch.rewards.tolist(), batch.answers or [None] * len(groups)):
            n[g] += 1
            if r >= 1.0:
                c[g] += 1
                if a is not None:
                    answers[g].add(a)
        return n, c, answers

    def _distinct_correct(self, batch: RolloutBatch) -> torch.Tensor:
        return torch.tensor([float(len(a)) for a in self._per_problem(batch)[2]])

    def _eval_step(self, stage: str, batch: RolloutBatch) -> None:
        n, c, answers = self._per_problem(batch)
        pass_k, distinct = self._metrics_for(stage, int(n.min()))
        pass_k.update(n, c)
        distinct.update(answers)

    def _eval_epoch_end(self, stage: str) -> None:
        if stage not in self._eval_metrics:
            return
        pass_k, distinct = self._eval_metrics.pop(stage)
        values = {f"{stage}/pass@{k}": v for k, v in pass_k.compute().items()}
        values[f"{stage}/distinct_correct"] = distinct.compute()
        values["step"] = float(self.global_step)  # Lightning would log eval at global_step - 1
        self.log_dict(values)

    def validation_step(self, batch: RolloutBatch, batch_idx: int) -> None:
        self._eval_step("val", batch)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: RolloutBatch, batch_idx: int) -> None:
        self._eval_step("test", batch)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    # -- optimisation ------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        params = [p for p in self.policy.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.lr, betas=self.betas, weight_decay=self.weight_decay)
        max_steps = self.trainer.max_steps if self.trainer and self.trainer.max_steps > 0 else 0
        warmup = math.ceil(self.warmup_frac * max_steps)

        def factor(step: int) -> float:  # linear warm-up, then constant (as the released runs)
            return min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # -- checkpoints: the frozen base is rebuilt from `model`, never stored ------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("base.")]:
            del state[key]
