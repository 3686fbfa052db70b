"""The rollout service: prompts → n completions each → verdicts → base log-probs, in one place.

:class:`Rollout` owns every step of a batch's data path (docs/design.md §3): drawing a step's prompts, seeding
the sampler, sampling, verification (through one :class:`~lit_alpha.verifiers.guarded.GuardedVerifier`,
which counts the verifier's faults over the run), scoring the samples under the frozen base and, when the
objective asks for them, π_base samples in every training group. The models are handed to it explicitly
(:meth:`Rollout.attach` with a :class:`RolloutModels`), and whether π_base is scored (``needs_base``)
and how many π_base samples a group holds (``base_samples``) are decided once, by the LightningModule
that hands them over.

Every random choice is a pure function of a seed key (:func:`train_key`, :func:`eval_key`,
:func:`split_key`), so a resumed run draws exactly the prompts and samples it would have drawn, and
every evaluation of every run uses the same problems and the same random numbers. Timings and verdict
reasons are returned in ``RolloutBatch.stats`` so the trainer can log them (``perf/*``, ``verifier/*``).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Mapping, Sequence

import numpy as np
import torch

from lit_alpha.batch import RolloutBatch
from lit_alpha.data.mixture import join_groups
from lit_alpha.sampling.base import Sampler, SamplingParams
from lit_alpha.scoring.logprobs import token_logprobs
from lit_alpha.tasks.base import Record, Task
from lit_alpha.training.strategy import lockstep
from lit_alpha.verifiers.base import Verdict, count_reasons
from lit_alpha.verifiers.guarded import FAULTS, GuardedVerifier

VerifyFn = Callable[[Sequence[Record], Sequence[str]], list[Verdict]]
_TRAIN, _EVAL = 0, 1
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


# -- seeding: one place for every key -----------------------------------------------------
# Every random draw of a run is keyed here, each key built from exactly the inputs listed; no other
# setting (the method, an objective's hyper-parameter, the sizes of the other streams, what was drawn
# before, how many evaluation problems follow) reaches a key. tests/test_seeding.py holds each stream
# to this table both ways: changing a listed input changes the draw, changing anything else does not.
#
# | stream                          | key                                      | depends on                       |
# |---------------------------------|------------------------------------------|----------------------------------|
# | training prompts of a step      | prompt_key(seed, step)                   | data.seed, step (not the rank)   |
# | policy samples of a step        | train_key(seed, step, rank, world)       | data.seed, step; rank if world>1 |
# | π_base samples (mixture, K)     | base_sample_key(seed, step, rank, world) | as the policy samples; own stream|
# | offline-RFT cache of a step     | offline_key(seed, step)                  | data.seed, step (not the rank)   |
# | validation/test batch i of fit  | eval_key(seed, i)                        | data.seed, batch index i         |
# | `evaluate` batch b of a split   | split_key(eval_seed, split, b)           | --eval_seed, split, batch index b|
#
# A key is a numpy SeedSequence entropy, which pads with zeros: rank 0 of W processes draws what a single
# process draws (the world size itself is no input). Two streams share numbers only where their keys coincide: `evaluate` on val with --eval_seed equal to
# data.seed draws fit's validation batch b's numbers, and on train the single-process step b's. The
# evaluation problems are the task's own (CountdownTask: task seed and split, problem i independent of
# how many follow it); the torch global RNG (dropout) is saved in checkpoints by the module.
def prompt_key(seed: int, step: int) -> list[int]:
    """Seed key of training step ``step``'s prompts (a numpy generator): ``(seed, step)``, the same on every
    process (each takes its share of one list) and in the offline cache."""
    return [seed, _TRAIN, step]


def train_key(seed: int, step: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """Seed key of a training step's sampling generator: ``(seed, step)`` on one process (as always),
    with the rank appended under data parallelism so that the processes draw independent samples."""
    key = [seed, _TRAIN, step]
    return key if world_size == 1 else key + [rank]


def base_sample_key(seed: int, step: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """Seed key of the π_base samples a mixture proposal appends to step ``step``'s groups: the policy
    samples' key (:func:`train_key`) extended, so it depends on the same inputs and is its own stream."""
    return [*train_key(seed, step, rank, world_size), 1]


def offline_key(seed: int, step: int) -> list[int]:
    """Seed key of the offline-RFT cache's π_base samples of step ``step`` (all B prompts, drawn once on
    one process): the single-process policy samples' key, ``(seed, step)``."""
    return train_key(seed, step)


def eval_key(seed: int, index: int) -> list[int]:
    """Seed key of the ``index``-th validation/test batch of a run (``data.seed``)."""
    return [seed, _EVAL, index]


def split_key(eval_seed: int, split: str, index: int) -> list[int]:
    """Seed key of the ``index``-th batch of ``python -m lit_alpha evaluate`` on ``split``."""
    return [eval_seed, SPLIT_CODES.get(split, 3), index]


def seed_of(key: Sequence[int]) -> int:
    """The torch seed of ``key``: one draw of a numpy generator seeded with it (a SeedSequence)."""
    return int(np.random.default_rng(list(key)).integers(2**62))


def seeded_generator(key: Sequence[int], device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator on ``device`` seeded with :func:`seed_of` ``(key)``."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed_of(key))
    return generator


def step_prompts(task: Task, seed: int, step: int, count: int) -> list[Record]:
    """The ``count`` training prompts of step ``step``: a pure function of ``(seed, step)`` (every process
    and the offline cache draw the same list)."""
    rng = np.random.default_rng(prompt_key(seed, step))
    return [task.sample_train(rng) for _ in range(count)]


def empty_batch(device: torch.device | str) -> RolloutBatch:
    """A batch of no samples: the evaluation padding batch's rollout (the module skips it)."""
    z = torch.zeros(0, 0, device=device)  # [0, 0]
    return RolloutBatch(input_ids=z.long(), attention_mask=z.long(), completion_mask=z, old_logprobs=z,
                        rewards=torch.zeros(0, device=device), group_ids=torch.zeros(0, dtype=torch.long, device=device))


@dataclass(frozen=True)
class RolloutModels:
    """What the trainer hands the rollout: the models and the decisions that depend on the objective.

    ``needs_base``: score every training sample under π_base (decided once, by the module).
    ``base_samples``: K π_base samples per prompt that join each training group after the policy's (the
    objective's :attr:`~lit_alpha.objectives.base.Objective.base_samples`; 0: none).
    """

    policy: torch.nn.Module
    tokenizer: Any
    base: torch.nn.Module | None = None
    needs_base: bool = False
    base_samples: int = 0


class Rollout:
    """Sampling, verification, base scoring, seeding and fault counting for training and evaluation.

    Args:
        task: the problems, prompt format and verifier.
        sampler: the sampler implementation.
        params: sampling parameters (training and evaluation).
        seed: seeds prompt order and sampling.
        prompts_per_step: prompts per optimizer step over all processes (B).
        n_samples: completions per prompt in training (G).
        val_samples: completions per held-out problem in validation/test.
        guard: the verifier guard; None: the task's verifier in-process.
    """

    def __init__(self, task: Task, sampler: Sampler, params: SamplingParams, seed: int = 0,
                 prompts_per_step: int = 1, n_samples: int = 1, val_samples: int = 1,
                 guard: GuardedVerifier | None = None) -> None:
        self.task, self.sampler, self.params, self.seed = task, sampler, params, seed
        self.prompts_per_step, self.n_samples = prompts_per_step, n_samples
        self.val_samples = val_samples
        self.guard = guard if guard is not None else GuardedVerifier(task.verifier)
        # every verifier/<reason>_frac of a training batch so far; the fault reasons from the start
        self.reasons: set[str] = {f"verifier/{kind}_frac" for kind in FAULTS}
        self._models: RolloutModels | None = None
        self.device = torch.device("cpu")
        self.rank, self.world_size = 0, 1
        self._precision: Callable[[], ContextManager[Any]] = contextlib.nullcontext

    # -- the models, handed over explicitly -------------------------------------------------------
    def attach(self, models: RolloutModels, device: torch.device | str | None = None,
               precision: Callable[[], ContextManager[Any]] | None = None, rank: int = 0,
               world_size: int = 1) -> "Rollout":
        """Use ``models`` from now on. ``device``: where batches go (None: the policy's); ``precision``:
        a fresh context per sampling/scoring block (the training step's autocast); ``rank`` and
        ``world_size``: this process under data parallelism."""
        self._models = models
        self.device = torch.device(device) if device is not None else next(models.policy.parameters()).device
        self._precision = precision or contextlib.nullcontext
        self.rank, self.world_size = int(rank), int(world_size)
        return self

    def detach(self) -> None:
        """Forget the models (a new stage hands them over again, e.g. once a strategy has wrapped them)."""
        self._models = None

    @property
    def attached(self) -> bool:
        return self._models is not None

    @property
    def models(self) -> RolloutModels:
        if self._models is None:
            raise RuntimeError("the rollout has no models: hand them over with Rollout.attach(RolloutModels(...))")
        return self._models

    # -- resume state: the cumulative fault counts and the reasons logged so far ---------------------
    def state_dict(self) -> dict[str, Any]:
        return {"verifier_faults": self.guard.state_dict(), "verifier_reasons": sorted(self.reasons)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.guard.load_state_dict(state.get("verifier_faults", {}))
        self.reasons |= set(state.get("verifier_reasons", []))

    def close(self) -> None:
        """Stop the verification worker processes, if any."""
        self.guard.close()

    # -- the pieces ----------------------------------------------------------------------------
    def step_prompts(self, step: int) -> list[Record]:
        """All B prompts of training step ``step`` (:func:`step_prompts`)."""
        return step_prompts(self.task, self.seed, step, self.prompts_per_step)

    def generator(self, key: Sequence[int]) -> torch.Generator:
        """The sampling generator of ``key``, on the rollout's device."""
        return seeded_generator(key, self.device)

    def sample(self, model: torch.nn.Module, records: Sequence[Record], n: int, generator: torch.Generator | None,
               verify: VerifyFn | None = None) -> RolloutBatch:
        """Sample ``n`` completions per record with ``model``, verify them (``verify``; None: the guard).
        Rows are grouped by record, in record order; ``base_logprobs`` is left None."""
        t0 = time.perf_counter()
        samples = self.sampler.sample(model, self.models.tokenizer, [self.task.prompt(r) for r in records], n,
                                      self.params, generator)
        t1 = time.perf_counter()
        expanded = [r for r in records for _ in range(n)]
        verdicts = (verify or self.guard.verify_batch)(expanded, samples.completions)
        t2 = time.perf_counter()
        device = next(model.parameters()).device
        stats = {
            "perf/sample_s": t1 - t0,
            "perf/verify_s": t2 - t1,
            "perf/completion_tokens": float(samples.completion_mask.sum()),
            "train/truncated_frac": float(samples.truncated.float().mean()),
            **samples.stats,  # the sampler's own (vLLM: perf/weight_sync_s, perf/vllm_generate_s)
        }
        for reason, count in count_reasons(verdicts).items():
            stats[f"verifier/{reason}_frac"] = count / max(1, len(verdicts))
        return RolloutBatch(
            input_ids=samples.input_ids.to(device),  # [N, T], N = len(records)·n
            attention_mask=samples.attention_mask.to(device),  # [N, T]
            completion_mask=samples.completion_mask.to(device),  # [N, T]
            old_logprobs=samples.logprobs.to(device),  # [N, T]
            rewards=torch.tensor([v.score for v in verdicts], dtype=torch.float32, device=device),  # [N]
            group_ids=torch.arange(len(records), device=device).repeat_interleave(n),  # [N]
            completions=samples.completions,
            problem_ids=[str(r["id"]) for r in expanded],
            reasons=[v.reason for v in verdicts],
            answers=[v.answer for v in verdicts],
            prompt_len=samples.prompt_len,
            stats=stats,
            old_entropy=None if samples.entropy is None else samples.entropy.to(device),  # [N, T]
        )

    def score_base(self, batch: RolloutBatch) -> RolloutBatch:
        """Fill ``batch.base_logprobs`` ``[N, T]`` with π_base's token log-probs (no grad, in the
        rollout's precision) and time it as ``perf/base_logprob_s``."""
        base = self.models.base
        if base is None:
            raise RuntimeError("the rollout was handed no base model to score the samples with")
        t0 = time.perf_counter()
        with self._precision(), torch.no_grad():
            batch.base_logprobs = token_logprobs(base, batch.input_ids, batch.attention_mask,
                                                 batch.prompt_len).detach()  # [N, T]
        batch.stats["perf/base_logprob_s"] = time.perf_counter() - t0
        return batch

    # -- what the DataModule asks for -------------------------------------------------------------
    def train_batch(self, records: Sequence[Record], step: int) -> RolloutBatch:
        """Training step ``step``'s batch for this process's ``records`` (``[len(records)·(G+K)]`` rows):
        G policy samples per prompt (then K π_base samples when the objective asks for them,
        ``models.base_samples``), verified, scored under π_base when the objective needs it."""
        models = self.models
        key = train_key(self.seed, step, self.rank, self.world_size)
        generator = self.generator(key)
        # sample and score in the training step's precision (bf16-mixed: with the weight-cast cache on)
        with self._precision(), lockstep(models.policy, self.world_size) as policy:
            out = self.sample(policy, records, self.n_samples, generator)
        if models.base_samples:  # a mixture proposal (MixtureAlphaDPG): the π_base samples' own stream
            generator.manual_seed(seed_of(base_sample_key(self.seed, step, self.rank, self.world_size)))
            with self._precision(), torch.no_grad():
                extra = self.sample(models.base, records, models.base_samples, generator)
            pad = models.tokenizer.pad_token_id if models.tokenizer.pad_token_id is not None else 0
            out = join_groups(out, extra, self.n_samples, models.base_samples, pad)
        if models.needs_base:  # after the lockstep block: every rank's base forwards pair up under FSDP
            self.score_base(out)
        out.stats["verifier/faults_total"] = float(self.guard.total_faults)  # over the run, resumed too
        return out

    def eval_batch(self, records: Sequence[Record], index: int) -> RolloutBatch:
        """Validation/test batch ``index``: ``val_samples`` policy samples per record, verified. An empty
        ``records`` (a padding batch) joins the other ranks' FSDP forwards and counts nothing."""
        models = self.models
        if not records:
            with lockstep(models.policy, self.world_size):
                pass
            return empty_batch(self.device)
        generator = self.generator(eval_key(self.seed, index))
        with self._precision(), lockstep(models.policy, self.world_size) as policy:
            out = self.sample(policy, records, self.val_samples, generator)
        out.stats["verifier/faults_total"] = float(self.guard.total_faults)
        return out

    def base_step(self, step: int) -> RolloutBatch:
        """All of step ``step``'s prompts, ``n_samples`` π_base samples each, seeded as the online step's
        policy samples (offline RFT's cache). Verified in-process with the task's verifier, outside the
        run's guard and its fault counts, as the cache has always been."""
        generator = seeded_generator(offline_key(self.seed, step), next(self.models.base.parameters()).device)
        return self.sample(self.models.base, self.step_prompts(step), self.n_samples, generator,
                           verify=GuardedVerifier(self.task.verifier).verify_batch)

    def tally(self, batch: RolloutBatch) -> RolloutBatch:
        """A training batch's stats with every ``verifier/<reason>_frac`` seen so far: a reason absent from
        this batch is 0, not its last value (Lightning re-logs stale step values)."""
        self.reasons.update(k for k in batch.stats if k.startswith("verifier/") and k.endswith("_frac"))
        batch.stats = {**{k: 0.0 for k in sorted(self.reasons)}, **batch.stats}
        return batch
