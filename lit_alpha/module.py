"""The LightningModule: a policy π_θ, a frozen copy of it as π_base, one Objective.

One optimizer step per fresh batch (the batch arrives already sampled and verified, see
:mod:`lit_alpha.data.datamodule`). The frozen base is always kept: α-DPG's target
``p ∝ π_base · v`` needs its log-probs even when no KL term is used. With ``lora`` the policy trains
low-rank adapters only and π_base is the same model with its adapters off (no copy, see
:class:`lit_alpha.models.AdapterDisabled`).
"""

from __future__ import annotations

import copy
import logging
import math
import random
from typing import Any

import lightning as L
import numpy as np
import torch
from jsonargparse import lazy_instance
from torch.autograd.graph import increment_version

from lit_alpha.batch import ObjectiveInputs, RolloutBatch
from lit_alpha.data.rollout import RolloutModels
from lit_alpha.errors import NonFiniteError, UserError
from lit_alpha.metrics.pass_at_k import DistinctCorrect, PassAtK, default_ks
from lit_alpha.models import AdapterDisabled, LoraSpec, apply_lora, load_policy
from lit_alpha.objectives.alpha_dpg import AlphaDPG
from lit_alpha.objectives.base import Objective
from lit_alpha.scoring.logprobs import token_logprobs
from lit_alpha.tasks.base import has_eval_metrics
from lit_alpha.training.memory import peak_rss_mb
from lit_alpha.training.precision import cast_frozen_linears, clip_gradients, frozen_base_dtype, fused_ok
from lit_alpha.verifiers.base import is_correct

log = logging.getLogger(__name__)


def rng_states() -> dict[str, Any]:
    """The global python, numpy and torch (CPU and CUDA) RNG states, in types ``torch.load(weights_only=True)``
    accepts (the sampler has its own per-step generator; this covers anything else that draws)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [str(name), torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(gauss)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_states(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_states` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class AlphaModule(L.LightningModule):
    """Fine-tune a Hugging Face causal LM with a pluggable objective.

    Args:
        model: a local model directory, a hub id, or an embedded model name (``strategy-tiny``, the
            default benchmark's base; ``countdown5-tiny``, ``countdown-tiny``).
        objective: the loss (``class_path`` + ``init_args`` in YAML).
        lr: AdamW learning rate after warm-up.
        weight_decay: AdamW weight decay.
        betas: AdamW betas.
        warmup_frac: fraction of ``trainer.max_steps`` with a linear warm-up from 0.
        dtype: parameter dtype of policy and base (``float32``, ``bfloat16``, ``float16``).
        num_threads: torch CPU threads (0 leaves torch's default; 1 is fastest for tiny models on 2 cores).
        max_bad_steps: a step whose loss or gradient is NaN/inf is skipped (no update, counted in
            ``train/skipped_steps``); this many such steps in a row stop the run with an error.
        lora: train LoRA adapters (peft) instead of all weights; π_base is then the policy with its
            adapters switched off, so the weights are held once. None: full fine-tuning.
        score_base: score every training batch under π_base (a no-grad forward over the batch) even
            when the objective does not read those log-probs (GRPO with β = 0, RLOO, RFT, SFT), to log
            ``train/kl_to_base``. α-DPG and GRPO with β > 0 always score it.
    """

    def __init__(
        self,
        model: str = "strategy-tiny",
        objective: Objective = lazy_instance(AlphaDPG),
        lr: float = 3e-4,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        warmup_frac: float = 0.05,
        dtype: str = "float32",
        num_threads: int = 0,
        max_bad_steps: int = 5,
        lora: LoraSpec | None = None,
        score_base: bool = False,
    ) -> None:
        super().__init__()
        if lr <= 0:
            raise ValueError(f"model.lr must be > 0, got {lr}")
        if max_bad_steps < 1:
            raise ValueError(f"model.max_bad_steps must be >= 1, got {max_bad_steps}")
        if not 0 <= warmup_frac < 1:
            raise ValueError(f"model.warmup_frac must be in [0, 1), got {warmup_frac}")
        if num_threads > 0:
            torch.set_num_threads(num_threads)
        self.objective = objective
        self.score_base = score_base
        self.lr, self.weight_decay, self.betas, self.warmup_frac = lr, weight_decay, tuple(betas), warmup_frac
        self.policy, self.tokenizer = load_policy(model, dtype)
        self.lora = lora
        if lora is None:
            self.base = copy.deepcopy(self.policy).eval().requires_grad_(False)
        else:  # only the adapters train; π_base = the policy with adapters off, not a registered module
            self.policy = apply_lora(self.policy, lora)
            self.base = AdapterDisabled(owner=self)  # follows self.policy, also once a strategy wraps it
        self.strict_loading = False  # checkpoints omit the frozen base (rebuilt from `model`)
        self._eval_metrics: dict[str, tuple[PassAtK, DistinctCorrect]] = {}
        self._eval_samples: dict[str, list[tuple[list[str], list[str], list[float]]]] = {}  # Task.eval_metrics
        self.max_bad_steps = max_bad_steps
        self.skipped_steps = 0  # steps skipped for a non-finite loss or gradient, over the whole run
        self.bad_streak = 0  # ... of which this many in a row, up to now
        self._step_skipped = False

    @property
    def scores_base(self) -> bool:
        """Are training samples scored under π_base (``score_base``, else the objective's ``needs_base``)?"""
        return bool(self.score_base) or bool(getattr(self.objective, "needs_base", True))

    def rollout_models(self) -> RolloutModels:
        """What the rollout samples and scores with (handed over once per stage, after the strategy has
        wrapped the models): the policy, π_base, the tokenizer, and the decisions that depend on the
        objective (``needs_base``: :attr:`scores_base`, decided here only)."""
        return RolloutModels(policy=self.policy, tokenizer=self.tokenizer, base=self.base,
                             needs_base=self.scores_base,
                             base_samples=int(getattr(self.objective, "base_samples", 0)))

    # -- training ----------------------------------------------------------------------------
    def training_step(self, batch: RolloutBatch, batch_idx: int) -> torch.Tensor:
        entropy = None
        if getattr(self.objective, "needs_entropy", False):  # π_θ's per-token entropy, chunked, detached
            logprobs, entropy = token_logprobs(
                self.policy, batch.input_ids, batch.attention_mask, batch.prompt_len, with_entropy=True
            )
        else:
            logprobs = token_logprobs(self.policy, batch.input_ids, batch.attention_mask, batch.prompt_len)
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
        # the rollout's timings and verdict reasons (every verifier/<reason>_frac seen so far, 0 if absent)
        self.log_dict({k: float(v) for k, v in batch.stats.items()}, batch_size=size)
        self.log("train/completion_len", batch.completion_mask.sum(-1).mean(), batch_size=size)
        # the sampler's recorded log-probs vs this forward: ~1e-7 for the HF sampler, more with vLLM/fp16
        # (offline RFT: old = π_base, so this is the policy's drift from the base instead)
        on_policy = batch.completion_mask if batch.from_base is None else \
            batch.completion_mask * (~batch.from_base)[:, None]  # [N, T] (π_base rows: not the sampler's policy)
        gap = (logprobs.detach() - batch.old_logprobs).abs() * on_policy  # [N, T]
        self.log("perf/logprob_mismatch", gap.sum() / on_policy.sum().clamp_min(1), batch_size=size)
        self.log("perf/peak_rss_mb", peak_rss_mb(), batch_size=size)
        self.log("train/distinct_correct", self._distinct_correct(batch).mean(), batch_size=size)
        self._step_skipped = False
        finite = bool(torch.isfinite(out.loss))
        if not self._all_ranks(finite):
            self._skip_step(f"non-finite loss {float(out.loss.detach())}" if not finite
                            else "non-finite loss on another process")
            if self._world() == 1:
                return None  # Lightning skips backward and the optimizer update; the step still counts
            # several processes must all run the backward (its gradient all-reduce pairs them up): run one
            # through the same graph whose gradients, zero or NaN, on_before_optimizer_step drops
            return 0.0 * logprobs.nan_to_num(0.0, 0.0, 0.0).sum()
        return out.loss

    def _world(self) -> int:
        return int(getattr(self._trainer, "world_size", 1) or 1) if self._trainer is not None else 1

    def _all_ranks(self, ok: bool) -> bool:
        """Is ``ok`` true on every process? (One all-reduce of a scalar under DDP/FSDP; ``ok`` alone.)"""
        if self._world() == 1:
            return ok
        bad = torch.tensor(0.0 if ok else 1.0, device=self.device)
        return float(self.trainer.strategy.reduce(bad, reduce_op="sum")) == 0.0

    # -- numerics guard: a NaN/inf loss or gradient skips the update, too many in a row stop the run --
    def _skip_step(self, why: str) -> None:
        self._step_skipped = True
        self.skipped_steps += 1
        self.bad_streak += 1
        log.warning("step %d skipped: %s (%d in a row, %d in total)", self.global_step, why,
                    self.bad_streak, self.skipped_steps)
        if self.bad_streak >= self.max_bad_steps:
            raise NonFiniteError(
                f"stopping at step {self.global_step}: {self.bad_streak} steps in a row had a non-finite loss "
                f"or gradient (last: {why}); model.max_bad_steps={self.max_bad_steps}. Try a lower model.lr, "
                f"a smaller model.objective clip, or dtype float32; the last good checkpoint can be resumed"
            )

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Before clipping and the update: drop non-finite gradients (the update becomes a no-op).

        With several processes the verdict is agreed by all (FSDP ranks each hold a shard of the
        gradients), so every rank skips the same steps and the replicas stay identical."""
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if self._step_skipped:  # a non-finite loss (several processes: the stand-in backward ran)
            for p in params:
                p.grad = None  # AdamW leaves parameters without a gradient untouched
        else:
            norms = torch._foreach_norm([p.grad for p in params], float("inf")) if params else []  # max |g|
            finite = not params or bool(torch.isfinite(torch.stack(list(norms))).all())
            if not self._all_ranks(finite):
                for p in params:
                    p.grad = None
                self._skip_step("non-finite gradient" if not finite else "non-finite gradient on another process")
            else:
                self.bad_streak = 0
        self.log("train/skipped_steps", float(self.skipped_steps))

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """The update, then a version bump of every updated parameter: the fused CPU AdamW writes the
        weights without bumping their in-place version counters, which is how :class:`VLLMSampler`
        (and anything else watching ``Tensor._version``) tells that the weights changed."""
        super().optimizer_step(*args, **kwargs)
        optimizer = args[2] if len(args) > 2 else kwargs.get("optimizer")
        inner = getattr(optimizer, "optimizer", optimizer)  # Lightning's LightningOptimizer wrapper
        if inner is not None and inner.defaults.get("fused"):
            updated = [p for group in inner.param_groups for p in group["params"] if p.grad is not None]
            if updated:
                increment_version(updated)

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
            if is_correct(r):
                c[g] += 1
                if a is not None:
                    answers[g].add(a)
        return n, c, answers

    def _distinct_correct(self, batch: RolloutBatch) -> torch.Tensor:
        return torch.tensor([float(len(a)) for a in self._per_problem(batch)[2]])

    def _eval_step(self, stage: str, batch: RolloutBatch) -> None:
        if batch.rewards.numel() == 0:  # a padding batch: under DDP every rank runs as many eval steps
            return
        n, c, answers = self._per_problem(batch)
        pass_k, distinct = self._metrics_for(stage, int(n.min()))
        pass_k.update(n, c)
        distinct.update(answers)
        if self._diagnosed_task() is not None:
            self._eval_samples.setdefault(stage, []).append(
                (list(batch.problem_ids), list(batch.completions), batch.rewards.tolist()))

    def _eval_epoch_end(self, stage: str) -> None:
        if stage not in self._eval_metrics:
            return
        pass_k, distinct = self._eval_metrics.pop(stage)
        values = {f"{stage}/pass@{k}": v for k, v in pass_k.compute().items()}
        values[f"{stage}/distinct_correct"] = distinct.compute()
        values.update({f"{stage}/{k}": v for k, v in self._task_metrics(stage).items()})
        values["step"] = float(self.global_step)  # Lightning would log eval at global_step - 1
        self.log_dict(values)

    def _diagnosed_task(self):
        """The run's task when it defines :meth:`~lit_alpha.tasks.base.Task.eval_metrics`, else None."""
        task = getattr(getattr(self._trainer, "datamodule", None), "task", None) if self._trainer is not None else None
        return task if task is not None and has_eval_metrics(task) else None

    def _task_metrics(self, stage: str) -> dict[str, float]:
        """The task's :meth:`~lit_alpha.tasks.base.Task.eval_metrics` over this evaluation's samples (gathered
        from every rank); {} for tasks without it. A failing diagnostic is logged, never fatal."""
        collected = self._eval_samples.pop(stage, [])
        task = self._diagnosed_task()
        if task is None:
            return {}
        if torch.distributed.is_available() and torch.distributed.is_initialized() and self._world() > 1:
            everyone: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(everyone, collected)
            collected = [part for rank in everyone for part in rank]
        per_problem: dict[str, tuple[list[str], list[float]]] = {}
        for ids, texts, rewards in collected:
            for pid, text, reward in zip(ids, texts, rewards):
                texts_of, rewards_of = per_problem.setdefault(pid, ([], []))
                texts_of.append(text)
                rewards_of.append(reward)
        try:
            by_id = {str(r["id"]): r for r in task.problems(stage)}
            pids = [pid for pid in per_problem if pid in by_id]
            return {k: float(v) for k, v in task.eval_metrics(
                [by_id[p] for p in pids], [per_problem[p][0] for p in pids], [per_problem[p][1] for p in pids]).items()}
        except Exception as exc:  # noqa: BLE001 - a diagnostic must not end a run
            log.warning("task.eval_metrics failed on %s: %s: %s", stage, type(exc).__name__, exc)
            return {}

    def validation_step(self, batch: RolloutBatch, batch_idx: int) -> None:
        self._eval_step("val", batch)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: RolloutBatch, batch_idx: int) -> None:
        self._eval_step("test", batch)

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    # -- precision: bf16-mixed keeps float32 master weights; the frozen base stores bf16 linears --
    def setup(self, stage: str) -> None:
        """Under bf16/fp16-mixed, store the frozen base's linear weights in the autocast dtype (the same
        bits autocast computes with, without a cast per call; a tied output head stays float32). Not
        under FSDP, whose flat parameters hold one dtype each and whose mixed precision casts them."""
        dtype = frozen_base_dtype(self.trainer.precision_plugin) if self._trainer is not None else None
        if dtype is not None and self.lora is None and isinstance(self.base, torch.nn.Module):
            cast_frozen_linears(self.base, dtype)

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        """Lightning's clipping, except under bf16-mixed, whose plugin refuses a fused optimizer although
        bf16 has no loss scale to undo: there the module clips (same ``clip_grad_norm_``) and the fused
        AdamW gets already-clipped gradients."""
        if not clip_gradients(self.trainer.precision_plugin, optimizer, gradient_clip_val, gradient_clip_algorithm):
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    # -- optimisation ------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        params = [p for p in self.policy.parameters() if p.requires_grad]
        # the fused kernel (one pass per tensor) is the same update as the default per-op loop, and 6x
        # faster on CPU (0.07 vs 0.45 s per step for SmolLM2-135M, measured with benchmarks/bench.py). In full precision
        # and under bf16-mixed (float32 master weights; configure_gradient_clipping clips first); not
        # under fp16 (a loss scaler) or FSDP's plugins.
        plugin = self._trainer.precision_plugin if self._trainer is not None else None
        fused = ((plugin is None or fused_ok(plugin)) and bool(params)
                 and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params))
        opt = torch.optim.AdamW(params, lr=self.lr, betas=self.betas, weight_decay=self.weight_decay,
                                fused=fused or None)
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
        checkpoint["lit_alpha"] = {  # what a resumed run needs beyond Lightning's own state
            "skipped_steps": self.skipped_steps,
            "bad_streak": self.bad_streak,
            "rng": rng_states(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # weights load non-strictly (the base is absent), so a LoRA / full mismatch would load nothing
        has_adapters = any(".lora_" in key for key in checkpoint.get("state_dict", {}))
        if has_adapters != (self.lora is not None):
            kind = "LoRA adapters" if has_adapters else "full weights (no LoRA adapters)"
            raise UserError(f"ckpt_path: the checkpoint holds {kind} but this run has model.lora={self.lora}; "
                            "give the model.lora setting of the run that wrote it")
        extra = checkpoint.get("lit_alpha", {})
        self.skipped_steps = int(extra.get("skipped_steps", 0))
        self.bad_streak = int(extra.get("bad_streak", 0))
        if "rng" in extra:
            set_rng_states(extra["rng"])
