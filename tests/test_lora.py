"""LoRA (``model.lora``): adapters are the only trained weights, π_base is the policy with adapters off.

Unit tests use the 2-layer random Llama of ``conftest.random_model_dir``; the end-to-end test trains the
embedded model through the CLI (``configs/a05.yaml --model.lora...``), then resumes it.
"""

from __future__ import annotations

import math
import os
from itertools import chain
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import TINY_TASK, store_client

from lit_alpha.cli.lightning import main
from lit_alpha.models import AdapterDisabled, LoraSpec, load_policy
from lit_alpha.module import AlphaModule
from lit_alpha.objectives import AlphaDPG
from lit_alpha.sampling.base import SamplingParams
from lit_alpha.sampling.hf import HFSampler
from lit_alpha.scoring.logprobs import _backbone_and_head, token_logprobs

pytest.importorskip("peft")  # the optional LoRA dependency (lit_alpha imports it only when used)

REPO = Path(__file__).resolve().parents[1]
P = 5  # prompt length of the hand-made batch


def _batch(vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[4, 12] token ids with left-padded prompts and right-padded completions, and their mask."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (4, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :2] = 0
    mask[2, :4] = 0
    mask[3, 9:] = 0
    return ids, mask


def _lora_module(model_dir: Path, **spec) -> AlphaModule:
    torch.manual_seed(0)
    return AlphaModule(model=str(model_dir), objective=AlphaDPG(), lora=LoraSpec(**{"r": 4, "alpha": 8.0, **spec}))


def test_base_stays_the_unadapted_model_while_adapters_train(random_model_dir):
    plain, tokenizer = load_policy(str(random_model_dir))
    module = _lora_module(random_model_dir)
    policy = module.policy.train()
    assert isinstance(module.base, AdapterDisabled)
    with pytest.raises(TypeError, match="PeftModel"):
        AdapterDisabled(plain)  # a view of adapters needs adapters
    ids, mask = _batch(len(tokenizer))
    with torch.no_grad():
        want = token_logprobs(plain, ids, mask, P, chunk_tokens=0)  # [N, T] the un-adapted model
        torch.testing.assert_close(token_logprobs(policy, ids, mask, P), want, rtol=0, atol=1e-6)  # B = 0

    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=0.05)
    for _ in range(3):
        (-token_logprobs(policy, ids, mask, P) * mask).sum().backward()
        with_grad = {n for n, p in policy.named_parameters() if p.grad is not None}
        assert with_grad and all(".lora_" in n for n in with_grad)  # frozen weights get no gradient
        assert any(p.grad.abs().sum() > 0 for p in policy.parameters() if p.grad is not None)
        opt.step()
        opt.zero_grad(set_to_none=True)

    with torch.no_grad():
        adapted = token_logprobs(policy, ids, mask, P)
        assert (adapted - want)[:, P:].abs().max() > 1e-2  # the adapters did move the policy
        assert _backbone_and_head(policy, ids, mask) is not None  # a PeftModel takes the chunked path
        torch.testing.assert_close(token_logprobs(policy, ids, mask, P, chunk_tokens=3),
                                   token_logprobs(policy, ids, mask, P, chunk_tokens=0), rtol=0, atol=1e-6)
        for chunk_tokens in (None, 0, 3):  # π_base: chunked or not, exactly the un-adapted model
            torch.testing.assert_close(token_logprobs(module.base, ids, mask, P, chunk_tokens=chunk_tokens),
                                       want, rtol=0, atol=1e-6)
        kwargs = dict(input_ids=ids, attention_mask=mask)
        torch.testing.assert_close(module.base(**kwargs).logits, plain(**kwargs).logits, rtol=0, atol=1e-5)
        # leaving π_base restores the policy: adapters on, train mode, adapters trainable
        torch.testing.assert_close(token_logprobs(policy, ids, mask, P), adapted, rtol=0, atol=0)
    assert all(m.training for m in policy.modules())
    assert all(p.requires_grad for n, p in policy.named_parameters() if ".lora_" in n)

    # the sampler (offline RFT samples with module.base) draws what the un-adapted model draws
    params = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=8)
    prompts = ["3 7 9 12 | 59 = ", "1 2 | 3 = "]
    a = HFSampler().sample(module.base, tokenizer, prompts, 3, params, torch.Generator().manual_seed(5))
    b = HFSampler().sample(plain, tokenizer, prompts, 3, params, torch.Generator().manual_seed(5))
    assert a.completions == b.completions
    torch.testing.assert_close(a.logprobs, b.logprobs, rtol=0, atol=1e-5)


def test_base_follows_the_policy_once_a_strategy_wraps_it(random_model_dir, tmp_path):
    """DecoderFSDP replaces ``module.policy`` by an FSDP root: π_base must run through it, not around it."""
    import torch.distributed as dist
    from torch.distributed.fsdp import FullyShardedDataParallel
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer

    if dist.is_initialized():
        pytest.skip("a process group already exists in this process")
    plain, tokenizer = load_policy(str(random_model_dir))
    module = _lora_module(random_model_dir)
    ids, mask = _batch(len(tokenizer))
    with torch.no_grad():
        for name, p in module.policy.named_parameters():
            if ".lora_" in name:
                p.add_(0.1 * torch.randn_like(p))  # adapters that change the policy
        adapted = token_logprobs(module.policy, ids, mask, P)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        module.policy = FullyShardedDataParallel(
            module.policy, auto_wrap_policy=ModuleWrapPolicy({LlamaDecoderLayer}), use_orig_params=True,
            device_id=torch.device("cpu"))
        assert module.base.policy is module.policy
        assert _backbone_and_head(module.policy, ids, mask) is None  # FSDP roots take the full path
        with torch.no_grad():
            torch.testing.assert_close(token_logprobs(module.policy, ids, mask, P), adapted, rtol=0, atol=1e-6)
            want = token_logprobs(plain, ids, mask, P)
            assert (adapted - want).abs().max() > 1e-3
            torch.testing.assert_close(token_logprobs(module.base, ids, mask, P), want, rtol=0, atol=1e-6)
        token_logprobs(module.policy, ids, mask, P).sum().backward()
        with_grad = [n for n, p in module.policy.named_parameters() if p.grad is not None]
        assert with_grad and all(".lora_" in n for n in with_grad)
    finally:
        dist.destroy_process_group()


def _held(module: AlphaModule) -> int:
    """Elements of all distinct parameter storages the module holds, π_base included."""
    tensors = {p.data_ptr(): p.numel() for p in chain(module.parameters(), module.base.parameters())}
    return sum(tensors.values())


def test_only_adapters_train_and_the_weights_are_held_once(random_model_dir):
    plain, _ = load_policy(str(random_model_dir))
    size = sum(p.numel() for p in plain.parameters())
    full = AlphaModule(model=str(random_model_dir), objective=AlphaDPG())
    assert _held(full) == 2 * size  # without LoRA π_base is a copy (so the count below can fail)

    module = _lora_module(random_model_dir, target_modules=["q_proj", "v_proj"])
    adapters = {n: p for n, p in module.named_parameters() if ".lora_" in n}
    adapter_size = sum(p.numel() for p in adapters.values())
    assert len(adapters) == 2 * 2 * plain.config.num_hidden_layers  # A and B of q_proj, v_proj per layer
    assert 0 < adapter_size < size // 4
    assert _held(module) == size + adapter_size  # π_base shares the policy's weights
    assert "base" not in dict(module.named_children())
    state = module.state_dict()
    assert not any(k.startswith("base.") for k in state)
    assert sum(v.numel() for v in {t.data_ptr(): t for t in state.values()}.values()) == size + adapter_size

    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    assert trainable == set(adapters)
    module.trainer = L.Trainer(max_steps=10, logger=False, enable_checkpointing=False,
                               enable_progress_bar=False, enable_model_summary=False)
    opt = module.configure_optimizers()["optimizer"]
    in_opt = [p for group in opt.param_groups for p in group["params"]]
    assert sorted(map(id, in_opt)) == sorted(map(id, adapters.values()))


def test_lora_spec_is_checked():
    for bad in ({"r": 0}, {"dropout": 1.0}, {"target_modules": []}):
        with pytest.raises(ValueError, match="model.lora"):
            LoraSpec(**bad)


# -- end to end: a LoRA fit through the CLI, resumed ------------------------------------------------------
SMALL = [
    "--trainer.val_check_interval", "2",
    "--data.task.init_args.num_val", "4", "--data.task.init_args.num_test", "4",
    "--data.val_samples", "4", "--data.eval_prompts_per_batch", "4",
    "--data.prompts_per_step", "4", "--data.n_samples", "4", "--data.max_new_tokens", "16",
    "--trainer.enable_progress_bar", "false", *TINY_TASK,
]
LORA = ["--model.lora.r", "4", "--model.lora.alpha", "8", "--model.lora.target_modules", "[q_proj,v_proj]"]


def _fit(cwd: Path, steps: int, *extra: str) -> None:
    here = os.getcwd()
    os.chdir(cwd)
    try:
        main(["fit", "--config", str(REPO / "configs/a05.yaml"), *SMALL, "--trainer.max_steps", str(steps),
              "--ckpt_path", "last", *extra])
    finally:
        os.chdir(here)


def _run_metrics(cwd: Path) -> tuple[list, dict[str, dict[int, float]]]:
    here = os.getcwd()
    os.chdir(cwd)
    try:
        client = store_client()
        exp = client.get_experiment_by_name("lit_alpha")
        runs = client.search_runs([exp.experiment_id])
        metrics = {key: {m.step: m.value for m in client.get_metric_history(runs[0].info.run_id, key)}
                   for key in runs[0].data.metrics}
        return runs, metrics
    finally:
        os.chdir(here)


def _last(cwd: Path) -> dict:
    (path,) = cwd.glob("mlruns/*/*/checkpoints/last.ckpt")
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.slow
def test_lora_fit_and_resume_through_the_cli(tmp_path, capsys):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    straight.mkdir(), resumed.mkdir()
    _fit(straight, 4, *LORA)
    _fit(resumed, 2, *LORA)
    two = _last(resumed)
    assert two["global_step"] == 2
    lora_keys = [k for k in two["state_dict"] if ".lora_" in k]
    assert len(lora_keys) == 2 * 2 * 4  # A, B of q_proj, v_proj in each of the embedded model's 4 layers
    assert not any(k.startswith("base.") for k in two["state_dict"])
    (opt_state,) = two["optimizer_states"]
    assert len(opt_state["state"]) == len(lora_keys)  # AdamW moments for the adapters only

    with pytest.raises(SystemExit) as exit_info:  # resuming without model.lora is refused in one line
        _fit(resumed, 4)
    assert exit_info.value.code == 2
    assert "holds LoRA adapters" in capsys.readouterr().err

    _fit(resumed, 4, *LORA)  # the adapters, the optimizer and the RNG come back from step 2
    runs, got = _run_metrics(resumed)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"  # continued the same MLflow run
    _, want = _run_metrics(straight)
    # extending a *finished* fit: every step logged at its own step (lit_alpha.training.checkpoint.Checkpoint)
    for key in ["train/loss", "train/kl_to_base", "train/reward_mean", "val/pass_at_4"]:
        assert sorted(got[key]) == sorted(want[key]), key
        values = [v for _, v in sorted(got[key].items())]
        assert values == pytest.approx([v for _, v in sorted(want[key].items())], rel=1e-5, abs=1e-7), key
    assert len(got["train/loss"]) == 4
    mismatch = got["perf/logprob_mismatch"]  # sampler vs trainer log-probs: float noise only
    assert len(mismatch) == 4 and all(math.isfinite(v) and v < 1e-4 for v in mismatch.values())

    a, b = _last(straight), _last(resumed)
    assert a["global_step"] == b["global_step"] == 4
    for key in lora_keys:
        assert not torch.equal(b["state_dict"][key], two["state_dict"][key])  # trained on after the resume
        torch.testing.assert_close(b["state_dict"][key], a["state_dict"][key], rtol=1e-5, atol=1e-6)
