"""Data parallelism on CPU (gloo): the same loss and gradients with 1 or 2 processes, disjoint whole-prompt
slices of the global batch, evaluation that counts every problem exactly once, and a real 2-process
``--trainer.strategy ddp`` fit through the CLI.

The multi-process tests use real processes (``torch.multiprocessing.spawn`` or the CLI's own launcher)
on the tiny random Llama of ``conftest.random_model_dir`` or the embedded model.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import TINY_TASK

from lit_alpha.batch import ObjectiveInputs, RolloutBatch
from lit_alpha.data.datamodule import eval_batches
from lit_alpha.data.rollout import train_key
from lit_alpha.data.sources import PromptStream, shard_groups
from lit_alpha.errors import UserError
from lit_alpha.models import EMBEDDED
from lit_alpha.objectives import GRPO, AlphaDPG
from lit_alpha.scoring.logprobs import position_ids_from_mask
from lit_alpha.tasks.countdown import COUNTDOWN4, CountdownTask

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
GROUPS, G, P, L_ = 4, 4, 3, 5  # 4 prompts x 4 samples, prompt length 3, completion length 5
REWARDS = [1, 0, 0, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 1, 0, 0]  # mixed, all-wrong, all-right, mixed groups
OBJECTIVES = {
    "alpha_dpg": lambda: AlphaDPG(alpha=0.5, normalizer=8.0),
    "alpha_dpg_amari": lambda: AlphaDPG(alpha=0.9, scale="amari", normalizer=8.0),
    "grpo": lambda: GRPO(beta=0.1, clip_eps=0.05, normalizer=8.0),  # tight clip: some tokens clip
}


# ---------------------------------------------------------------- a fixed batch and its loss
def fixed_batch(vocab: int) -> RolloutBatch:
    """4 groups x 4 fixed completions (the same in every process: a seeded generator)."""
    g = torch.Generator().manual_seed(123)
    n = GROUPS * G
    ids = torch.randint(3, vocab, (n, P + L_), generator=g)  # [N, T], no special tokens
    lengths = torch.tensor([5, 3, 4, 1] * GROUPS)  # completions of different lengths
    cmask = torch.zeros(n, P + L_)
    for i, k in enumerate(lengths.tolist()):
        cmask[i, P : P + k] = 1.0
    attn = torch.ones(n, P + L_, dtype=torch.long)
    attn[1::2, 0] = 0  # some rows left-padded by one
    noise = torch.randn(n, P + L_, generator=g)
    return RolloutBatch(
        input_ids=ids, attention_mask=attn, completion_mask=cmask,
        old_logprobs=-2.0 + 0.1 * noise,  # [N, T] sampler log-probs: ratios ≠ 1, some clipped
        rewards=torch.tensor(REWARDS, dtype=torch.float32),
        group_ids=torch.arange(GROUPS).repeat_interleave(G),
        base_logprobs=-2.5 + 0.3 * noise.roll(1, 0),  # [N, T]
        problem_ids=[f"p{i // G}" for i in range(n)], prompt_len=P,
    )


def logprobs_of(model: torch.nn.Module, batch: RolloutBatch) -> torch.Tensor:
    """Per-token log π(y_t | …) ``[N, T]`` (0 before the completion) from the model's plain forward."""
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                position_ids=position_ids_from_mask(batch.attention_mask), use_cache=False)
    logits = out.logits[:, P - 1 : -1].float()  # [N, L, V]
    lp = logits.log_softmax(-1).gather(-1, batch.input_ids[:, P:].unsqueeze(-1)).squeeze(-1)  # [N, L]
    return torch.cat([lp.new_zeros(lp.shape[0], P), lp], dim=1)


def loss_of(model: torch.nn.Module, batch: RolloutBatch, objective: str) -> torch.Tensor:
    inputs = ObjectiveInputs(logprobs=logprobs_of(model, batch), old_logprobs=batch.old_logprobs,
                             base_logprobs=batch.base_logprobs, mask=batch.completion_mask,
                             rewards=batch.rewards, group_ids=batch.group_ids)
    return OBJECTIVES[objective]()(inputs).loss


def load_model(model_dir: str) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _grad_worker(rank: int, world: int, port: int, mode: str, model_dir: str, out: str) -> None:
    """One rank: its half of the groups, the policy under DDP or DecoderFSDP's sharding, one backward per
    objective; saves the local losses and the full (averaged) gradients."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=300))
    torch.set_num_threads(1)
    try:
        policy = load_model(model_dir)
        local = shard_groups(fixed_batch(policy.config.vocab_size), rank, world)
        if mode == "ddp":
            model = torch.nn.parallel.DistributedDataParallel(policy)
        else:
            from lit_alpha.training.strategy import decoder_layer_classes, shard_models

            holder = torch.nn.Module()
            holder.policy = policy
            shard_models(holder, decoder_layer_classes(holder), device_id=torch.device("cpu"), use_orig_params=True)
            model = holder.policy
        results = {}
        for objective in sorted(OBJECTIVES):
            model.zero_grad(set_to_none=True)
            loss = loss_of(model, local, objective)
            loss.backward()
            results[objective] = {"loss": loss.detach(), "grads": full_grads(model)}
        torch.save({"results": results, "groups": local.group_ids.tolist(), "problems": local.problem_ids},
                   Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def full_grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter's whole gradient by its plain name (FSDP: gathered from the shards)."""
    if type(model).__name__ != "FullyShardedDataParallel":
        inner = getattr(model, "module", model)  # DDP
        return {n: p.grad.clone() for n, p in inner.named_parameters()}
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    with FSDP.summon_full_params(model, with_grads=True):
        return {n.replace("_fsdp_wrapped_module.", ""): p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_ranks_give_the_single_process_loss_and_gradients(mode, random_model_dir, tmp_path) -> None:
    mp.spawn(_grad_worker, args=(2, free_port(), mode, str(random_model_dir), str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    # whole groups, disjoint, renumbered: rank 0 has p0 p1, rank 1 has p2 p3
    assert [r["problems"] for r in ranks] == [[f"p{i // G}" for i in range(8)], [f"p{2 + i // G}" for i in range(8)]]
    assert all(r["groups"] == [0] * G + [1] * G for r in ranks)
    policy = load_model(str(random_model_dir))
    batch = fixed_batch(policy.config.vocab_size)
    for objective in sorted(OBJECTIVES):
        policy.zero_grad(set_to_none=True)
        loss = loss_of(policy, batch, objective)  # one process, all 4 groups
        loss.backward()
        want = {n: p.grad.clone() for n, p in policy.named_parameters()}
        got = [r["results"][objective] for r in ranks]
        # DDP/FSDP average the ranks' gradients, so the per-rank mean losses must average to the global mean
        assert abs(float(got[0]["loss"] + got[1]["loss"]) / 2 - float(loss.detach())) < 1e-6, objective
        assert float(got[0]["loss"]) != pytest.approx(float(got[1]["loss"]))  # the halves differ
        for r in got:
            assert set(r["grads"]) == set(want)
            for name, g in want.items():
                torch.testing.assert_close(r["grads"][name], g, atol=1e-6, rtol=0, msg=f"{mode} {objective} {name}")
        assert max(float(g.abs().max()) for g in want.values()) > 1e-3  # the comparison is not of zeros


# ---------------------------------------------------------------- the prompt stream and eval batches
def test_prompt_stream_slices_are_disjoint_whole_prompts_of_the_global_step() -> None:
    task = CountdownTask(**COUNTDOWN4, num_val=4, num_test=4)
    one = iter(PromptStream(task, 8, seed=3))
    for step in range(3):
        full = next(one)
        assert full["step"] == step
        for world in (2, 4, 8):
            parts = [next(iter(PromptStream(task, 8, seed=3, start_step=step, rank=r, world_size=world)))
                     for r in range(world)]
            assert all(p["step"] == step and len(p["records"]) == 8 // world for p in parts)
            assert [rec for p in parts for rec in p["records"]] == full["records"]  # in order, nothing twice
    # resume: a stream started at step k yields step k's slice first
    resumed = iter(PromptStream(task, 8, seed=3, start_step=2, rank=1, world_size=2))
    assert next(resumed)["records"] == PromptStream(task, 8, seed=3).step_records(2)[4:]


def test_prompts_per_step_must_divide_by_the_number_of_processes() -> None:
    with pytest.raises(UserError, match=r"data.prompts_per_step=6 must be divisible by the number of training "
                                        r"processes \(4 = trainer.devices x trainer.num_nodes\)"):
        PromptStream(CountdownTask(**COUNTDOWN4, num_val=4, num_test=4), 6, seed=0, rank=0, world_size=4)


def test_train_key_keeps_single_process_seeds_and_separates_ranks() -> None:
    assert train_key(7, 5) == [7, 0, 5]  # unchanged for one process: old runs resume identically
    keys = {tuple(train_key(7, 5, r, 4)) for r in range(4)}
    assert len(keys) == 4 and (7, 0, 5) not in keys


@pytest.mark.parametrize("num, size, world", [(200, 50, 2), (10, 3, 2), (10, 3, 3), (7, 4, 4), (5, 16, 2), (9, 2, 1)])
def test_eval_batches_count_every_problem_once_in_equal_step_counts(num, size, world) -> None:
    problems = [{"id": i} for i in range(num)]
    per_rank = [eval_batches(problems, size, "val", r, world) for r in range(world)]
    assert len({len(b) for b in per_rank}) == 1  # every rank runs the same number of eval steps
    real = [b for bs in per_rank for b in bs if b["records"]]
    ids = sorted(rec["id"] for b in real for rec in b["records"])
    assert ids == list(range(num))  # each problem exactly once: no DistributedSampler-style duplicates
    assert all(bs[0]["records"] for bs in per_rank)  # every rank evaluates something
    if math.ceil(num / size) >= world:  # the single-process batches, same index (the sampling seed)
        single = {b["index"]: b["records"] for b in eval_batches(problems, size, "val")}
        assert all(single[b["index"]] == b["records"] for b in real)


def test_shard_groups_slices_every_per_sample_field() -> None:
    batch = fixed_batch(23)
    parts = [shard_groups(batch, r, 2) for r in range(2)]
    for name in ("input_ids", "attention_mask", "completion_mask", "old_logprobs", "rewards", "base_logprobs"):
        torch.testing.assert_close(torch.cat([getattr(p, name) for p in parts]), getattr(batch, name))
    assert parts[0].problem_ids + parts[1].problem_ids == batch.problem_ids
    assert parts[1].group_ids.tolist() == [0] * G + [1] * G and parts[1].prompt_len == P
    assert shard_groups(batch, 0, 1) is batch
    with pytest.raises(UserError, match="divisible"):
        shard_groups(batch, 0, 3)


# ---------------------------------------------------------------- the real launch: CLI, 2 processes
class PromptRecorder(L.Callback):
    """Test probe: each rank appends the problems of every training batch it trains on to a JSON-lines file."""

    def __init__(self, out: str) -> None:
        self.out = Path(out)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        row = {"rank": trainer.global_rank, "world": trainer.world_size, "step": trainer.global_step,
               "problem_ids": batch.problem_ids, "group_ids": batch.group_ids.tolist()}
        with open(self.out / f"rank{trainer.global_rank}.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")


SMALL = ["--trainer.max_steps", "2", "--trainer.val_check_interval", "2",
         "--data.task.init_args.num_val", "6", "--data.task.init_args.num_test", "4",
         "--data.val_samples", "4", "--data.eval_prompts_per_batch", "2",  # 3 eval batches: one rank pads
         "--data.prompts_per_step", "4", "--data.n_samples", "4",
         "--trainer.enable_progress_bar", "false", "--trainer.enable_checkpointing", "false", *TINY_TASK]


def cli_fit(cwd: Path, *extra: str, config: str = "a05", callbacks: list[dict] | None = None,
            timeout: int = 3600) -> subprocess.CompletedProcess:
    """``python -m lit_alpha fit --config configs/<config>.yaml`` (tiny settings) in ``cwd``, as a
    subprocess, with a :class:`PromptRecorder` (and ``callbacks``) as the only callbacks."""
    (cwd / "probe").mkdir(parents=True, exist_ok=True)
    probe = {"class_path": "test_ddp.PromptRecorder", "init_args": {"out": str(cwd / "probe")}}
    callbacks = json.dumps([probe, *(callbacks or [])])
    # the repository first: the subprocess runs this checkout's lit_alpha, not an installed copy
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(HERE), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    args = [sys.executable, "-m", "lit_alpha", "fit", "--config", str(REPO / f"configs/{config}.yaml"), *SMALL,
            "--trainer.callbacks", callbacks, "--trainer.accelerator", "cpu", *extra]
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-4000:]
    return out


def recorded(cwd: Path, rank: int) -> list[dict]:
    return [json.loads(line) for line in (cwd / "probe" / f"rank{rank}.jsonl").read_text().splitlines()]


def run_metrics(cwd: Path) -> tuple[list, dict[str, list[tuple[int, float]]]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{cwd / 'mlruns/mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("lit_alpha").experiment_id])
    hist = {k: [(m.step, m.value) for m in client.get_metric_history(runs[0].info.run_id, k)]
            for k in ("val/pass_at_1", "val/pass_at_4", "val/distinct_correct", "train/loss", "train/skipped_steps")}
    return runs, hist


@pytest.mark.slow
@pytest.mark.skipif(not (EMBEDDED["countdown-tiny"] / "config.json").exists(), reason="needs the embedded model")
def test_ddp_fit_through_the_cli_splits_prompts_and_counts_problems_once(tmp_path) -> None:
    single, double = tmp_path / "one", tmp_path / "two"
    cli_fit(single)
    cli_fit(double, "--trainer.strategy", "ddp", "--trainer.devices", "2")

    task = CountdownTask(**COUNTDOWN4, num_val=6, num_test=4)
    stream = PromptStream(task, 4, seed=0)
    ranks = [recorded(double, r) for r in range(2)]
    assert [[row["step"] for row in rows] for rows in ranks] == [[0, 1], [0, 1]]
    assert all(row["world"] == 2 for rows in ranks for row in rows)
    for step in range(2):
        want = [str(rec["id"]) for rec in stream.step_records(step)]  # the single-process step's prompts
        got = [ranks[r][step]["problem_ids"] for r in range(2)]
        assert got[0] == [p for p in want[:2] for _ in range(4)]  # rank 0: prompts 0-1, each a whole group of 4
        assert got[1] == [p for p in want[2:] for _ in range(4)]  # rank 1: prompts 2-3
        assert all(ranks[r][step]["group_ids"] == [0] * 4 + [1] * 4 for r in range(2))
        assert recorded(single, 0)[step]["problem_ids"] == got[0] + got[1]
    assert not (double / "probe" / "rank2.jsonl").exists()

    # one MLflow run (rank 0 logs), finished; the step-0 evaluation (the same base model) is identical to
    # the single process's: every problem counted once, with the same samples
    runs_1, hist_1 = run_metrics(single)
    runs_2, hist_2 = run_metrics(double)
    assert len(runs_2) == 1 and runs_2[0].info.status == "FINISHED"
    for key in ("val/pass_at_1", "val/pass_at_4", "val/distinct_correct"):
        assert hist_2[key][0] == hist_1[key][0], key
        assert [s for s, _ in hist_2[key]] == [0, 2]
    assert [s for s, _ in hist_2["train/loss"]] == [0, 1]
    assert all(math.isfinite(v) for _, v in hist_2["train/loss"])


@pytest.mark.slow
@pytest.mark.skipif(not (EMBEDDED["countdown-tiny"] / "config.json").exists(), reason="needs the embedded model")
def test_offline_rft_under_ddp_trains_each_rank_its_share_of_the_cached_step(tmp_path) -> None:
    cli_fit(tmp_path, "--trainer.strategy", "ddp", "--trainer.devices", "2", config="rft_offline")
    assert len(list((tmp_path / "mlruns/offline_rft").glob("*.pt"))) == 1  # rank 0 built it, rank 1 loaded it
    stream = PromptStream(CountdownTask(**COUNTDOWN4, num_val=6, num_test=4), 4, seed=0)
    for step in range(2):
        want = [str(rec["id"]) for rec in stream.step_records(step)]  # the online step's prompts, split
        for rank in range(2):
            row = recorded(tmp_path, rank)[step]
            assert row["problem_ids"] == [p for p in want[2 * rank : 2 * rank + 2] for _ in range(4)]
            assert row["group_ids"] == [0] * 4 + [1] * 4


@pytest.mark.slow
@pytest.mark.skipif(not (EMBEDDED["countdown-tiny"] / "config.json").exists(), reason="needs the embedded model")
@pytest.mark.parametrize("fault", ["loss", "grad"])
def test_a_nonfinite_step_on_one_rank_is_skipped_on_both(fault, tmp_path) -> None:
    """A NaN loss (or gradient) on rank 1 only: both ranks skip that step, the run goes on and finishes,
    and the two replicas stay identical (DDP checks that its parameters agree at every step)."""
    probe = {"class_path": "test_ddp.ParamDigest", "init_args": {"out": str(tmp_path / "probe")}}
    cli_fit(tmp_path, "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.max_steps", "3",
            "--model.objective.class_path", "fault_injection.NaNAt",
            f"--model.objective.init_args.{fault}_steps", "[1]", "--model.objective.init_args.ranks", "[1]",
            callbacks=[probe])
    runs, hist = run_metrics(tmp_path)
    assert runs[0].info.status == "FINISHED"
    assert hist["train/skipped_steps"] == [(0, 0.0), (1, 1.0), (2, 1.0)]
    digests = [json.loads((tmp_path / "probe" / f"digest{r}.json").read_text()) for r in range(2)]
    assert digests[0] == digests[1]  # the same weights on both ranks after every step
    assert digests[0]["1"] == digests[0]["0"] and digests[0]["2"] != digests[0]["1"]  # step 1 changed nothing


class ParamDigest(L.Callback):
    """After each optimizer step, a checksum of the policy's weights, per rank, to ``out/digest<rank>.json``."""

    def __init__(self, out: str) -> None:
        self.out = Path(out)
        self.digests: dict[str, float] = {}

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        with torch.no_grad():
            total = sum(float(p.double().abs().sum()) for p in pl_module.policy.parameters())
        self.digests[str(trainer.global_step - 1)] = total
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"digest{trainer.global_rank}.json").write_text(json.dumps(self.digests))
