"""DecoderFSDP (lit_alpha/training/strategy.py) and mixed precision, on CPU.

FSDP runs on CPU with gloo here (the strategy passes ``device_id=torch.device("cpu")``), so the sharding,
the lock-stepped sampling and a 2-process fit through the CLI are tested with real processes. The GPU
paths (NCCL, 16-mixed with the sharded gradient scaler) are marked ``gpu`` and skip without CUDA.
"""

from __future__ import annotations

import copy
import math
import os
from datetime import timedelta
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_ddp import cli_fit, free_port, load_model, recorded, run_metrics

from lit_alpha.models import EMBEDDED
from lit_alpha.objectives import AlphaDPG
from lit_alpha.sampling import HFSampler, SamplingParams
from lit_alpha.training.strategy import DecoderFSDP, ShardedClipPrecision, decoder_layer_classes, lockstep, shard_models

HAVE_MODEL = (EMBEDDED["countdown-tiny"] / "config.json").exists()
PROMPTS = ["3 7 9 | 12 = ", "1 2 | 3 = ", "4 4 5 | 21 = ", "8 3 | 5 = "]


def holder_of(model_dir: str) -> torch.nn.Module:
    """What AlphaModule holds: a policy and a frozen deep copy of it as the base."""
    holder = torch.nn.Module()
    holder.policy = load_model(model_dir)
    holder.base = copy.deepcopy(holder.policy).eval().requires_grad_(False)
    return holder


# ---------------------------------------------------------------- single process
def test_layer_classes_come_from_no_split_modules(random_model_dir) -> None:
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRMSNorm

    holder = holder_of(str(random_model_dir))
    assert set(holder.policy._no_split_modules) == {"LlamaDecoderLayer"}
    assert decoder_layer_classes(holder) == {LlamaDecoderLayer}
    assert decoder_layer_classes(holder, ["LlamaRMSNorm"]) == {LlamaRMSNorm}
    with pytest.raises(ValueError, match="layer_classes"):
        decoder_layer_classes(holder, ["NoSuchLayer"])
    with pytest.raises(ValueError, match="_no_split_modules"):
        decoder_layer_classes(torch.nn.Sequential(torch.nn.Linear(2, 2)))


@pytest.mark.parametrize("flag", ["lit_alpha.training.strategy.DecoderFSDP", "decoder_fsdp"])
def test_strategy_by_name_runs_on_cpu(flag) -> None:
    trainer = L.Trainer(strategy=flag, accelerator="cpu", devices=2, precision="bf16-mixed", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False)
    assert isinstance(trainer.strategy, DecoderFSDP)  # Lightning refuses its own FSDPStrategy on CPU
    assert isinstance(trainer.strategy.precision_plugin, ShardedClipPrecision)
    config = trainer.strategy.mixed_precision_config  # 16-bit compute, float32 gradient reduction and buffers
    assert (config.param_dtype, config.reduce_dtype, config.buffer_dtype) == (torch.bfloat16, torch.float32, torch.float32)


def test_cli_sets_strategy_init_args(capsys) -> None:
    import yaml

    from lit_alpha.cli.lightning import main

    repo = Path(__file__).resolve().parents[1]
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(repo / "configs/gpu/fsdp_a05.yaml"), "--trainer.strategy.init_args.cpu_offload",
              "true", "--print_config"])
    strategy = yaml.safe_load(capsys.readouterr().out)["trainer"]["strategy"]
    assert strategy["class_path"] == "lit_alpha.training.strategy.DecoderFSDP"
    assert strategy["init_args"]["activation_checkpointing"] is True and strategy["init_args"]["cpu_offload"] is True


def test_objective_keeps_float64_and_float32_logprobs_under_bf16_autocast(random_model_dir) -> None:
    from lit_alpha.batch import ObjectiveInputs
    from lit_alpha.scoring.logprobs import token_logprobs

    model = load_model(str(random_model_dir))
    out = HFSampler().sample(model, _tokenizer(random_model_dir), PROMPTS[:2], 3, SamplingParams(max_new_tokens=6),
                             torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # what bf16-mixed wraps the training step in
        lp = token_logprobs(model, out.input_ids, out.attention_mask, out.prompt_len)
        inputs = ObjectiveInputs(logprobs=lp, old_logprobs=out.logprobs, base_logprobs=out.logprobs - 0.1,
                                 mask=out.completion_mask, rewards=torch.tensor([1.0, 0, 0, 1, 1, 0]),
                                 group_ids=torch.arange(2).repeat_interleave(3))
        log_ratio, log_z = AlphaDPG().log_ratio(inputs)
        loss = AlphaDPG()(inputs).loss
    assert lp.dtype == torch.float32 and lp.requires_grad  # logits upcast before log-softmax
    assert log_ratio.dtype == log_z.dtype == torch.float64  # ẑ and the pseudo-rewards in float64
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    # bf16 compute moves the log-probs only a little from the float32 ones the sampler recorded
    assert float(((lp.detach() - out.logprobs).abs() * out.completion_mask).max()) < 0.2


def _tokenizer(model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    tok.pad_token = tok.pad_token or tok.eos_token
    return tok


# ---------------------------------------------------------------- 2 processes, FSDP on CPU (gloo)
def _shard_worker(rank: int, world: int, port: int, model_dir: str, out: str) -> None:
    """Shard policy and base; sample with rank-dependent lengths in lock step; score with the base; clip."""
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=300))
    torch.set_num_threads(1)
    try:
        holder = holder_of(model_dir)
        total = {name: sum(p.numel() for p in getattr(holder, name).parameters()) for name in ("policy", "base")}
        names = shard_models(holder, decoder_layer_classes(holder), device_id=torch.device("cpu"), use_orig_params=True)
        flat = {}  # per FSDP unit: (this rank's flat-parameter size, requires_grad), measured while sharded
        for name in names:
            handles = [unit._handle for unit in FSDP.fsdp_modules(getattr(holder, name)) if unit._handle is not None]
            flat[name] = [(h.flat_param.numel(), h.flat_param.requires_grad) for h in handles]
        tok = _tokenizer(model_dir)
        params = SamplingParams(max_new_tokens=12 if rank == 0 else 3)  # rank 1 stops decoding far earlier
        with torch.no_grad(), lockstep(holder.policy, world) as policy:
            samples = HFSampler().sample(policy, tok, PROMPTS[2 * rank : 2 * rank + 2], 2, params,
                                         torch.Generator().manual_seed(rank))
        with torch.no_grad():
            base_logits = holder.base(input_ids=samples.input_ids, attention_mask=samples.attention_mask).logits
        with lockstep(holder.policy, world):  # a rank with nothing to sample still joins (eval padding)
            pass
        # a backward on the same data on both ranks, then clipping over the sharded gradients
        x = torch.tensor([tok("12 3 4 | 5 = 3+4")["input_ids"]])
        holder.policy(input_ids=x).logits.float().pow(2).mean().backward()
        plugin = ShardedClipPrecision("32-true")
        plugin.roots = [holder.policy, holder.base]
        plugin.clip_grad_by_norm(None, 0.01)
        with FSDP.summon_full_params(holder.policy, with_grads=True):
            grads = {n.replace("_fsdp_wrapped_module.", ""): p.grad.clone() for n, p in holder.policy.named_parameters()}
        base_grads = [p.grad for p in holder.base.parameters()]
        torch.save({"total": total, "flat": flat, "names": names, "samples": samples, "base_logits": base_logits,
                    "grads": grads, "base_grads_none": all(g is None for g in base_grads)}, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_fsdp_shards_policy_and_base_and_samples_in_lock_step(random_model_dir, tmp_path) -> None:
    mp.spawn(_shard_worker, args=(2, free_port(), str(random_model_dir), str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    for r in ranks:
        assert r["names"] == ["policy", "base"]
        for name in ("policy", "base"):
            units = r["flat"][name]
            assert len(units) == 3  # the root (embeddings, norm, head) + one unit per decoder layer
            local = sum(n for n, _ in units)
            assert local <= math.ceil(r["total"][name] / 2) + len(units)  # half of it per rank: sharded
            assert all(grad == (name == "policy") for _, grad in units)  # the base's flat params are frozen
        assert r["base_grads_none"]

    # the same samples and base scores as without FSDP (each rank: its prompts, its generator, its length)
    holder = holder_of(str(random_model_dir))
    tok = _tokenizer(random_model_dir)
    for rank, r in enumerate(ranks):
        params = SamplingParams(max_new_tokens=12 if rank == 0 else 3)
        want = HFSampler().sample(holder.policy, tok, PROMPTS[2 * rank : 2 * rank + 2], 2, params,
                                  torch.Generator().manual_seed(rank))
        assert r["samples"].completions == want.completions
        torch.testing.assert_close(r["samples"].logprobs, want.logprobs, atol=1e-5, rtol=0)
        with torch.no_grad():
            base = holder.base(input_ids=want.input_ids, attention_mask=want.attention_mask).logits
        torch.testing.assert_close(r["base_logits"], base, atol=1e-5, rtol=1e-5)
    assert ranks[0]["samples"].input_ids.shape[1] > ranks[1]["samples"].input_ids.shape[1]  # unequal decoding

    # clipping by the global norm over the shards = torch's clip_grad_norm_ on the whole model
    x = torch.tensor([tok("12 3 4 | 5 = 3+4")["input_ids"]])
    holder.policy(input_ids=x).logits.float().pow(2).mean().backward()
    torch.nn.utils.clip_grad_norm_(holder.policy.parameters(), 0.01)
    for name, p in holder.policy.named_parameters():
        for r in ranks:
            torch.testing.assert_close(r["grads"][name], p.grad, atol=1e-7, rtol=1e-4, msg=name)


# ---------------------------------------------------------------- real fits through the CLI
@pytest.mark.slow
@pytest.mark.skipif(not HAVE_MODEL, reason="needs the embedded model")
def test_decoder_fsdp_bf16_fit_and_resume_through_the_cli(tmp_path) -> None:
    """2 CPU processes, DecoderFSDP with activation checkpointing, bf16-mixed, a checkpoint at step 2,
    then ``--ckpt_path last`` to step 3."""
    fsdp = ["--trainer.strategy.class_path", "lit_alpha.training.strategy.DecoderFSDP",
            "--trainer.strategy.init_args.activation_checkpointing", "true", "--trainer.devices", "2",
            "--trainer.precision", "bf16-mixed", "--trainer.enable_checkpointing", "true"]
    ckpt = [{"class_path": "lit_alpha.training.checkpoint.Checkpoint", "init_args": {"every_n_train_steps": 2}}]
    cli_fit(tmp_path, *fsdp, callbacks=ckpt)
    ranks = [recorded(tmp_path, r) for r in range(2)]
    assert [[row["step"] for row in rows] for rows in ranks] == [[0, 1], [0, 1]]
    assert ranks[0][0]["problem_ids"] != ranks[1][0]["problem_ids"]  # each rank its own prompts
    runs, hist = run_metrics(tmp_path)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert [s for s, _ in hist["train/loss"]] == [0, 1] and all(math.isfinite(v) for _, v in hist["train/loss"])
    assert [s for s, _ in hist["val/pass_at_4"]] == [0, 2]
    ckpt_file = next(tmp_path.glob("mlruns/*/*/checkpoints/last.ckpt"))
    step2 = torch.load(ckpt_file, map_location="cpu", weights_only=False)["state_dict"]

    cli_fit(tmp_path, *fsdp, "--trainer.max_steps", "3", "--ckpt_path", "last", callbacks=ckpt)  # resume
    assert [[row["step"] for row in recorded(tmp_path, r)] for r in range(2)] == [[0, 1, 2], [0, 1, 2]]
    runs, hist = run_metrics(tmp_path)
    assert len(runs) == 1 and [s for s, _ in hist["train/loss"]] == [0, 1, 2]  # the same MLflow run, continued

    # the checkpoint holds the whole policy under its plain names (no base, no FSDP prefixes): it loads
    # into a single-process module as is
    ckpts = sorted(tmp_path.glob("mlruns/*/*/checkpoints/last.ckpt"))
    assert len(ckpts) == 1
    state = torch.load(ckpts[0], map_location="cpu", weights_only=False)["state_dict"]
    from lit_alpha.module import AlphaModule

    module = AlphaModule("countdown-tiny")
    assert set(state) == {k for k in module.state_dict() if k.startswith("policy.")}
    assert all(state[k].shape == v.shape for k, v in module.state_dict().items() if k in state)
    assert any(not torch.equal(state[k], v) for k, v in module.state_dict().items() if k in state)  # it trained
    assert any(not torch.equal(state[k], step2[k]) for k in state)  # ... and the resumed step 3 too

    # the HF model the fit wrote at its end: gathered from both ranks' shards by rank 0, it is the
    # checkpointed policy exactly, and loads with plain transformers
    from transformers import AutoModelForCausalLM

    (model_dir,) = [p for p in tmp_path.glob("mlruns/*/*/model") if (p / "config.json").exists()]
    exported = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).state_dict()
    policy = {k.removeprefix("policy."): v for k, v in state.items()}
    assert set(policy) <= set(exported) and len(policy) >= 10
    for name, value in policy.items():
        assert torch.equal(exported[name], value.float()), name


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_MODEL, reason="needs the embedded model")
def test_bf16_mixed_fit_on_cpu(tmp_path) -> None:
    out = cli_fit(tmp_path, "--trainer.precision", "bf16-mixed")
    assert "bfloat16 Automatic Mixed Precision" in out.stderr + out.stdout
    runs, hist = run_metrics(tmp_path)
    assert runs[0].info.status == "FINISHED"
    assert [s for s, _ in hist["train/loss"]] == [0, 1] and all(math.isfinite(v) for _, v in hist["train/loss"])


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not (torch.cuda.is_available() and HAVE_MODEL), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_decoder_fsdp_fit_on_gpus(precision, tmp_path) -> None:
    devices = str(min(2, torch.cuda.device_count()))
    cli_fit(tmp_path, "--trainer.strategy", "decoder_fsdp", "--trainer.accelerator", "gpu",
            "--trainer.devices", devices, "--trainer.precision", precision)
    runs, hist = run_metrics(tmp_path)
    assert runs[0].info.status == "FINISHED" and all(math.isfinite(v) for _, v in hist["train/loss"])


def test_optimizer_is_fused_in_full_precision_and_bf16_mixed_only() -> None:
    """Fused AdamW (the same update, one kernel per tensor) in 32-true and, since the module clips itself
    there, under plain bf16-mixed; the per-op one under 16-mixed (a loss scaler, whose Lightning plugin
    cannot unscale-and-clip a fused optimizer's gradients) and under FSDP's mixed precision. Also: FSDP
    keeps the frozen base in float32 (its flat parameters hold one dtype each; the bf16 FSDP fit above
    runs that), plain bf16/fp16-mixed store the base's linears in 16 bits."""
    from types import SimpleNamespace

    from lightning.pytorch.plugins.precision import MixedPrecision, Precision

    from lit_alpha.module import AlphaModule
    from lit_alpha.training.precision import frozen_base_dtype

    plugins = {"32-true": Precision(), "bf16-mixed": MixedPrecision("bf16-mixed", "cpu"),
               "16-mixed": MixedPrecision("16-mixed", "cpu"), "fsdp bf16-mixed": ShardedClipPrecision("bf16-mixed"),
               "fsdp 32-true": ShardedClipPrecision("32-true")}
    want_fused = {"32-true": True, "bf16-mixed": True, "16-mixed": False, "fsdp bf16-mixed": False,
                  "fsdp 32-true": True}
    want_base = {"32-true": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16, "fsdp bf16-mixed": None,
                 "fsdp 32-true": None}
    module = AlphaModule("countdown-tiny")
    try:
        for name, plugin in plugins.items():
            module._trainer = SimpleNamespace(precision_plugin=plugin, precision=plugin.precision, max_steps=0)
            assert bool(module.configure_optimizers()["optimizer"].defaults["fused"]) is want_fused[name], name
            assert frozen_base_dtype(plugin) == want_base[name], name
    finally:
        module._trainer = None


def test_an_update_bumps_every_parameters_version(tmp_path) -> None:
    """The fused AdamW writes weights without bumping ``Tensor._version``; the module bumps them, since
    that is how the vLLM sampler tells that the weights changed and must be pushed again."""
    import lightning as L

    from lit_alpha.data.datamodule import RolloutDataModule
    from lit_alpha.module import AlphaModule
    from lit_alpha.tasks import CountdownTask

    seen: list[list[int]] = []

    class Versions(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            seen.append([p._version for p in pl_module.policy.parameters()])

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            seen.append([p._version for p in pl_module.policy.parameters()])

    module = AlphaModule("countdown-tiny", lr=1e-3)
    data = RolloutDataModule(task=CountdownTask(num_val=2, num_test=2), prompts_per_step=2, n_samples=2,
                             max_new_tokens=6)
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, accelerator="cpu", devices=1,
                        default_root_dir=tmp_path, callbacks=[Versions()])
    trainer.fit(module, data)
    assert trainer.optimizers[0].defaults["fused"] is True
    before, after = seen
    assert all(b < a for b, a in zip(before, after))
