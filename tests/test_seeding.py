"""Seeding invariants: every random stream of a run depends on exactly the inputs its key is documented to
depend on (the table above the key builders in ``lit_alpha/data/rollout.py``), both ways.

For each stream: changing each listed input changes the draw; changing anything else (the method, an
objective's hyper-parameter, the sizes of the other streams, the process's rank where the stream is
rank-free, what was drawn before) leaves it bit-for-bit the same. Draws are compared on their sampled
token log-probs as well as their texts, on a tiny random Llama with the real sampler.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lit_alpha.analysis.evaluate import evaluate_policy
from lit_alpha.data.rollout import (
    Rollout,
    RolloutModels,
    base_sample_key,
    eval_key,
    offline_key,
    prompt_key,
    seed_of,
    seeded_generator,
    split_key,
    step_prompts,
    train_key,
)
from lit_alpha.models import load_policy
from lit_alpha.sampling import HFSampler, SamplingParams
from lit_alpha.tasks import CountdownTask

PARAMS = SamplingParams(max_new_tokens=6)


@pytest.fixture(scope="module")
def model(random_model_dir):
    return load_policy(str(random_model_dir))


@pytest.fixture(scope="module")
def task():
    return CountdownTask(num_val=6, num_test=6)


def rollout(task, model, seed: int = 0, rank: int = 0, world_size: int = 1, n_samples: int = 2,
            base_samples: int = 0, val_samples: int = 2, prompts_per_step: int = 2, objective: str = "AlphaDPG",
            needs_base: bool = False) -> Rollout:
    policy, tok = model
    service = Rollout(task, HFSampler(), PARAMS, seed=seed, prompts_per_step=prompts_per_step, n_samples=n_samples,
                      val_samples=val_samples)
    models = RolloutModels(policy=policy, tokenizer=tok, base=policy, needs_base=needs_base,
                           base_samples=base_samples)  # ``objective``: the rollout never sees it (a no-op input)
    return service.attach(models, rank=rank, world_size=world_size)


def draw(batch, rows=None) -> tuple:
    """What a stream drew: the completions and their sampled log-probs (optionally only ``rows``)."""
    rows = list(range(len(batch.completions))) if rows is None else rows
    return [batch.completions[i] for i in rows], batch.old_logprobs[rows]


def same(a: tuple, b: tuple) -> bool:
    return a[0] == b[0] and a[1].shape == b[1].shape and torch.equal(a[1], b[1])


# -- the keys themselves ---------------------------------------------------------------------
KEYS = {
    "prompt": (prompt_key, {"seed": 3, "step": 5}),
    "train": (train_key, {"seed": 3, "step": 5, "rank": 1, "world_size": 2}),
    "base_sample": (base_sample_key, {"seed": 3, "step": 5, "rank": 1, "world_size": 2}),
    "offline": (offline_key, {"seed": 3, "step": 5}),
    "eval": (eval_key, {"seed": 3, "index": 5}),
    "split": (split_key, {"eval_seed": 3, "split": "val", "index": 5}),
}


@pytest.mark.parametrize("name", list(KEYS))
def test_every_documented_input_changes_the_key(name) -> None:
    build, args = KEYS[name]
    key = seed_of(build(**args))
    other = {"seed": 4, "eval_seed": 4, "step": 6, "index": 6, "rank": 0, "world_size": 1, "split": "test"}
    for field in args:
        assert seed_of(build(**{**args, field: other[field]})) != key, f"{name}: {field} does not reach the key"


def test_streams_are_distinct() -> None:
    """The same (seed, step / index) gives every stream its own numbers."""
    seeds = {seed_of(k) for k in (train_key(0, 1, 1, 2), base_sample_key(0, 1, 1, 2), eval_key(0, 1),
                                  split_key(0, "test", 1), split_key(0, "other", 1))}
    assert len(seeds) == 5
    # by construction, `evaluate` on val (train) with eval_seed = data.seed draws fit's validation batch
    # (single-process training step) numbers: the table says so
    assert split_key(0, "val", 1) == eval_key(0, 1) and split_key(0, "train", 1) == train_key(0, 1)
    assert seed_of(base_sample_key(0, 1)) != seed_of(train_key(0, 1))
    # rank counts only under data parallelism; a single process keeps the historical (seed, step) key
    assert train_key(0, 1, rank=5, world_size=1) == train_key(0, 1) == offline_key(0, 1) == prompt_key(0, 1)
    assert base_sample_key(0, 1, rank=5, world_size=1) == base_sample_key(0, 1)


def test_the_rank_defaults_to_the_first_process() -> None:
    assert train_key(3, 5, world_size=2) == train_key(3, 5, 0, 2) == [3, 0, 5, 0]
    assert base_sample_key(3, 5, world_size=2) == base_sample_key(3, 5, 0, 2) == [3, 0, 5, 0, 1]
    assert train_key(3, 5) == [3, 0, 5] and base_sample_key(3, 5) == [3, 0, 5, 1]


def test_seed_of_is_a_fixed_function() -> None:
    """The numbers every recorded run used: changing how a key becomes a torch seed changes every draw."""
    assert seed_of([0, 0, 0]) == int(np.random.default_rng([0, 0, 0]).integers(2**62))
    assert seeded_generator([0, 0, 1]).initial_seed() == seed_of([0, 0, 1])
    assert 0 <= seed_of([7, 1, 2]) < 2**62


# -- training prompts -----------------------------------------------------------------------
def ids(records) -> list[str]:
    return [str(r["id"]) for r in records]


def test_prompts_depend_on_seed_and_step_only(task, model) -> None:
    base = ids(step_prompts(task, 0, 3, 4))
    assert ids(step_prompts(task, 1, 3, 4)) != base  # seed
    assert ids(step_prompts(task, 0, 4, 4)) != base  # step
    assert ids(step_prompts(task, 0, 3, 4)) == base  # a pure function
    assert ids(step_prompts(task, 0, 3, 6))[:4] == base  # more prompts per step: the first ones unchanged
    # every process draws the same list (each then takes its share), whatever the other streams' sizes
    for kw in ({"rank": 1, "world_size": 2}, {"n_samples": 5, "base_samples": 2, "val_samples": 7},
               {"objective": "GRPO", "needs_base": True}):
        assert ids(rollout(task, model, prompts_per_step=4, **kw).step_prompts(3)) == base
    assert ids(rollout(task, model, prompts_per_step=4, seed=1).step_prompts(3)) == ids(step_prompts(task, 1, 3, 4))


# -- training samples ------------------------------------------------------------------------
def test_training_samples_depend_on_seed_step_and_rank(task, model) -> None:
    records = task.problems("val")[:2]
    ref = draw(rollout(task, model).train_batch(records, 3))
    assert not same(draw(rollout(task, model, seed=1).train_batch(records, 3)), ref)  # seed
    assert not same(draw(rollout(task, model).train_batch(records, 4)), ref)  # step
    two = [draw(rollout(task, model, rank=r, world_size=2).train_batch(records, 3)) for r in (0, 1)]
    assert not same(two[0], two[1])  # rank under data parallelism
    # rank 0 draws what a single process draws (a numpy SeedSequence pads its key with zeros)
    assert same(two[0], ref)
    assert same(draw(rollout(task, model, rank=1, world_size=2).train_batch(records, 3)), two[1])


def test_training_samples_ignore_everything_else(task, model) -> None:
    records = task.problems("val")[:2]
    ref = draw(rollout(task, model).train_batch(records, 3))
    # another objective, one that scores π_base, other sizes of the evaluation stream
    assert same(draw(rollout(task, model, objective="GRPO", needs_base=True).train_batch(records, 3)), ref)
    assert same(draw(rollout(task, model, val_samples=9, prompts_per_step=5).train_batch(records, 3)), ref)
    # what was drawn before: other steps and evaluations first
    service = rollout(task, model)
    service.train_batch(records, 1)
    service.eval_batch(records, 0)
    assert same(draw(service.train_batch(records, 3)), ref)
    # base samples appended to the groups leave the policy's samples as they were
    mixed = rollout(task, model, base_samples=2).train_batch(records, 3)
    policy_rows = [i for i in range(len(mixed.completions)) if not bool(mixed.from_base[i])]
    assert same(draw(mixed, policy_rows), ref)


def test_training_samples_ignore_the_objective_and_its_hyper_parameters(task, random_model_dir, tmp_path) -> None:
    """Through the real LightningModule: the method and its hyper-parameters never reach the draw."""
    from lit_alpha.module import AlphaModule
    from lit_alpha.objectives import GRPO, AlphaDPG

    records = task.problems("val")[:2]
    draws = []
    for objective in (AlphaDPG(alpha=0.5), AlphaDPG(alpha=0.9), GRPO()):
        module = AlphaModule(model=str(random_model_dir), objective=objective)
        service = Rollout(task, HFSampler(), PARAMS, seed=0, prompts_per_step=2, n_samples=2)
        draws.append(draw(service.attach(module.rollout_models()).train_batch(records, 3)))
    assert same(draws[0], draws[1]) and same(draws[0], draws[2])


# -- π_base samples of a mixture proposal ----------------------------------------------------------
def base_rows(batch) -> list[int]:
    return [i for i in range(len(batch.completions)) if bool(batch.from_base[i])]


def test_base_samples_depend_on_seed_step_and_rank(task, model) -> None:
    records = task.problems("val")[:2]
    ref_batch = rollout(task, model, base_samples=2).train_batch(records, 3)
    ref = draw(ref_batch, base_rows(ref_batch))
    for kw, step in (({"seed": 1}, 3), ({}, 4), ({"rank": 1, "world_size": 2}, 3)):
        batch = rollout(task, model, base_samples=2, **kw).train_batch(records, step)
        assert not same(draw(batch, base_rows(batch)), ref), (kw, step)
    # their own stream: not the policy's samples, although here the policy is π_base
    policy_rows = [i for i in range(len(ref_batch.completions)) if i not in base_rows(ref_batch)]
    assert not same(draw(ref_batch, policy_rows), ref)


def test_base_samples_ignore_everything_else(task, model) -> None:
    records = task.problems("val")[:2]
    ref_batch = rollout(task, model, base_samples=2).train_batch(records, 3)
    ref = draw(ref_batch, base_rows(ref_batch))
    # the number of policy samples per group (G) drawn before them, the objective, the evaluation sizes
    for kw in ({"n_samples": 3}, {"n_samples": 1}, {"objective": "other", "needs_base": True}, {"val_samples": 9}):
        batch = rollout(task, model, base_samples=2, **kw).train_batch(records, 3)
        assert same(draw(batch, base_rows(batch)), ref), kw


# -- offline-RFT cache -------------------------------------------------------------------------
def test_offline_cache_samples_depend_on_seed_and_step_only(task, model) -> None:
    ref = draw(rollout(task, model).base_step(2))
    assert not same(draw(rollout(task, model, seed=1).base_step(2)), ref)  # seed
    assert not same(draw(rollout(task, model).base_step(3)), ref)  # step
    # built once on one process: the rank and the other streams' sizes do not reach it
    for kw in ({"rank": 1, "world_size": 2}, {"base_samples": 2, "val_samples": 9}, {"objective": "RFT"}):
        assert same(draw(rollout(task, model, **kw).base_step(2)), ref), kw
    # ... and it is the single-process online step's policy sample (the same prompts, the same key)
    service = rollout(task, model)
    assert same(draw(service.train_batch(service.step_prompts(2), 2)), ref)


# -- evaluation during fit -----------------------------------------------------------------------
def test_validation_samples_depend_on_seed_and_batch_index_only(task, model) -> None:
    records = task.problems("val")[:2]
    ref = draw(rollout(task, model).eval_batch(records, 1))
    assert not same(draw(rollout(task, model, seed=1).eval_batch(records, 1)), ref)  # seed
    assert not same(draw(rollout(task, model).eval_batch(records, 2)), ref)  # batch index
    # rank-free (batches are dealt round-robin by global index), whatever ran before, any objective
    for kw in ({"rank": 1, "world_size": 2}, {"n_samples": 5, "base_samples": 2}, {"objective": "GRPO"}):
        assert same(draw(rollout(task, model, **kw).eval_batch(records, 1)), ref), kw
    service = rollout(task, model)
    service.train_batch(records, 7)  # every validation of a run draws the same numbers, at any step
    service.eval_batch(records, 0)
    assert same(draw(service.eval_batch(records, 1)), ref)


# -- python -m lit_alpha evaluate ----------------------------------------------------------------
class RecordingSampler(HFSampler):
    """The real sampler, keeping what it drew (a random model's rows of ``evaluate`` hold no samples)."""

    def __init__(self) -> None:
        super().__init__()
        self.draws: list[tuple] = []

    def sample(self, *args, **kwargs):
        out = super().sample(*args, **kwargs)
        self.draws.append((list(out.completions), out.logprobs.clone()))
        return out


def evaluated(task, model, records, split: str = "test", eval_seed: int = 0, **kw) -> list[tuple]:
    """The draws of ``evaluate_policy`` (one problem per batch), one per problem."""
    service = rollout(task, model, **kw)
    service.sampler = RecordingSampler()
    evaluate_policy(service, records, 2, split, eval_seed=eval_seed)
    return service.sampler.draws


def all_same(a: list[tuple], b: list[tuple]) -> bool:
    return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))


def test_evaluation_samples_depend_on_eval_seed_split_and_problem(task, model) -> None:
    records = task.problems("test")[:3]
    ref = evaluated(task, model, records)
    assert len(ref) == 3 and not any(same(ref[0], d) for d in evaluated(task, model, records, eval_seed=1))
    assert not same(evaluated(task, model, records, split="val")[0], ref[0])  # split
    # problem i's samples: its position i (the batch index) counts, the problems after it do not
    assert all_same(evaluated(task, model, records[:2]), ref[:2])
    assert not same(evaluated(task, model, records[1:])[0], ref[1])
    # the training seed, rank and the other streams' sizes do not reach it
    for kw in ({"seed": 5}, {"rank": 1, "world_size": 2}, {"n_samples": 7, "base_samples": 1, "val_samples": 9}):
        assert all_same(evaluated(task, model, records, **kw), ref), kw


# -- the tasks' problem sets --------------------------------------------------------------------------
def test_countdown_problems_depend_on_task_seed_and_split_only() -> None:
    small, large = CountdownTask(num_val=4, num_test=4), CountdownTask(num_val=9, num_test=9)
    assert ids(large.problems("val"))[:4] == ids(small.problems("val"))  # more problems: the first unchanged
    assert [r["target"] for r in large.problems("val")[:4]] == [r["target"] for r in small.problems("val")]
    other = CountdownTask(num_val=4, num_test=4, seed=1)
    assert [r["numbers"] for r in other.problems("val")] != [r["numbers"] for r in small.problems("val")]
    assert [r["numbers"] for r in small.problems("test")] != [r["numbers"] for r in small.problems("val")]
