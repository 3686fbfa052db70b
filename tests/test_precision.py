"""bf16 as the fast path (lit_alpha/training/precision.py): bf16-mixed keeps float32 master weights and the fused
AdamW with the same clipped update, π_base stores bf16 linears with the very bits autocast uses, the
log-softmax and entropy stay float32, the rollout's cached autocast sees every update, and the CLI
picks bf16-mixed for pretrained models where the hardware has bf16 matmuls."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision, Precision

from lit_alpha.models import load_policy
from lit_alpha.sampling import HFSampler, SamplingParams
from lit_alpha.scoring import token_logprobs
from lit_alpha.scoring.logprobs import entropy_from_logits
from lit_alpha.training.precision import (
    auto_precision,
    bf16_supported,
    cast_frozen_linears,
    clip_gradients,
    fused_ok,
    rollout_context,
)

REPO = Path(__file__).resolve().parents[1]
BF16 = dict(device_type="cpu", dtype=torch.bfloat16)
PROMPTS = ["3 7 9 12 | 59 = ", "1 2 | 3 = "]


@pytest.fixture(scope="module")
def policy(random_model_dir):
    return load_policy(str(random_model_dir))


def _rows(model, tok, n: int = 3, seed: int = 0):
    return HFSampler().sample(model, tok, PROMPTS, n, SamplingParams(max_new_tokens=10),
                              torch.Generator().manual_seed(seed))


def test_fused_and_clipping_rules():
    bf16, fp16, full = MixedPrecision("bf16-mixed", "cpu"), MixedPrecision("16-mixed", "cpu"), Precision()
    assert fused_ok(bf16) and fused_ok(full) and not fused_ok(fp16)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.ones(2))], fused=True)
    assert clip_gradients(bf16, opt, 1.0, "norm")  # bf16: the module clips
    assert not clip_gradients(full, opt, 1.0, "norm")  # anything else: Lightning's own path
    with pytest.raises(RuntimeError, match="fused"):  # what Lightning's AMP plugin does by itself
        bf16.clip_gradients(opt, 1.0)


@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_module_clipping_then_fused_step_is_the_unfused_update(algorithm):
    """Clip in the module, hand the fused AdamW clipped gradients: the same update as Lightning's
    float32 path (clip, then the per-op AdamW) to float32 rounding."""
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(7, 5)), torch.nn.Parameter(torch.randn(5))]
    grads = [torch.randn_like(p) * 3 for p in params]
    out = []
    for fused in (True, False):
        ps = [torch.nn.Parameter(p.detach().clone()) for p in params]
        for p, g in zip(ps, grads):
            p.grad = g.clone()
        opt = torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1, fused=fused or None)
        if fused:
            assert clip_gradients(MixedPrecision("bf16-mixed", "cpu"), opt, 0.5, algorithm)
        else:
            Precision().clip_gradients(opt, 0.5, L.pytorch.utilities.GradClipAlgorithmType(algorithm))
        opt.step()
        out.append([p.detach() for p in ps])
    for a, b in zip(*out):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_bf16_base_is_bit_for_bit_the_policy_under_autocast(policy):
    """π_base with bf16 linears (tied head kept float32) scores exactly what the float32 policy scores
    under bf16 autocast: at step 0 the α-DPG ratios π_base/π_θ are exactly 1."""
    model, tok = policy
    base = copy.deepcopy(model).eval().requires_grad_(False)
    cast = cast_frozen_linears(base)
    assert cast > 0 and base.get_input_embeddings().weight.dtype == torch.float32  # tied head: not cast
    assert {p.dtype for p in base.parameters()} == {torch.float32, torch.bfloat16}
    s = _rows(model, tok)
    with torch.autocast(**BF16), torch.no_grad():
        want = token_logprobs(model, s.input_ids, s.attention_mask, s.prompt_len)
        got = token_logprobs(base, s.input_ids, s.attention_mask, s.prompt_len)
    assert want.dtype == torch.float32 and torch.equal(got, want)
    with pytest.raises(ValueError, match="trainable"):
        cast_frozen_linears(copy.deepcopy(model))


def test_entropy_and_logprobs_stay_float32_inside_bf16_autocast(policy):
    model, tok = policy
    logits = torch.randn(3, 5, 40) * 4
    want = entropy_from_logits(logits)
    with torch.autocast(**BF16):
        got = entropy_from_logits(logits)
    assert torch.equal(got, want)  # the bmm is not lowered to bf16
    s = _rows(model, tok)
    with torch.autocast(**BF16):
        lp = token_logprobs(model, s.input_ids, s.attention_mask, s.prompt_len)
    assert lp.dtype == torch.float32 and lp.requires_grad


class _Trainer:  # what rollout_context reads of a Lightning trainer
    def __init__(self, plugin):
        self.precision_plugin = plugin


def test_rollout_context_samples_in_bf16_and_sees_each_update(policy):
    """Sampling under the cached bf16 autocast records log-probs close to the training forward in bf16
    (Lightning's uncached autocast), and a weight update between two rollouts is seen (the cache is
    emptied when the block ends)."""
    model, tok = copy.deepcopy(policy[0]), policy[1]
    trainer = _Trainer(MixedPrecision("bf16-mixed", "cpu"))
    with rollout_context(trainer, torch.device("cpu")):
        s = _rows(model, tok)
    with trainer.precision_plugin.forward_context():
        lp = token_logprobs(model, s.input_ids, s.attention_mask, s.prompt_len)
    gap = ((lp.detach() - s.logprobs).abs() * s.completion_mask).sum() / s.completion_mask.sum()
    assert gap < 0.05  # bf16 rounding of two differently ordered computations, not a different model
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)
    with rollout_context(trainer, torch.device("cpu")):
        again = _rows(model, tok)
    assert not torch.equal(again.logprobs, s.logprobs)
    with torch.no_grad():
        fresh = token_logprobs(model, again.input_ids, again.attention_mask, again.prompt_len)
    assert ((fresh - again.logprobs).abs() * again.completion_mask).max() < 0.1  # the new weights, in bf16
    assert isinstance(rollout_context(_Trainer(Precision()), torch.device("cpu")), object)


@pytest.mark.slow
def test_bf16_fit_keeps_fused_adamw_and_float32_master_weights(random_model_dir):
    """A real bf16-mixed fit with clipping: fused AdamW on, float32 weights and optimizer state, a bf16
    frozen base, the weights move, and the sampler/trainer mismatch is logged."""
    from lit_alpha.data.datamodule import RolloutDataModule
    from lit_alpha.module import AlphaModule
    from lit_alpha.tasks import CountdownTask

    # a random model solves nothing (zero advantages): weight decay makes every update visible
    module = AlphaModule(model=str(random_model_dir), lr=1e-2, warmup_frac=0.0, weight_decay=0.1)
    start = [p.detach().clone() for p in module.policy.parameters()]
    data = RolloutDataModule(task=CountdownTask(num_val=2, num_test=2), prompts_per_step=2, n_samples=3,
                             max_new_tokens=8, sampler=HFSampler(), seed=0)
    trainer = L.Trainer(max_steps=2, precision="bf16-mixed", gradient_clip_val=1.0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0, accelerator="cpu", devices=1)
    trainer.fit(module, data)
    opt = trainer.optimizers[0]
    assert opt.defaults["fused"] is True
    assert all(p.dtype == torch.float32 for p in module.policy.parameters())
    assert all(v.dtype == torch.float32 for st in opt.state.values() for k, v in st.items() if k != "step")
    assert any(p.dtype == torch.bfloat16 for p in module.base.parameters())
    assert all(not torch.equal(a, b.detach()) for a, b in zip(start, module.policy.parameters()))
    assert all(float(st["step"]) == 2 for st in opt.state.values())
    assert 0 <= float(trainer.callback_metrics["perf/logprob_mismatch"]) < 0.05


def test_auto_precision_rules():
    assert auto_precision("countdown-tiny")[0] is None
    assert auto_precision("some/dir", dtype="bfloat16")[0] is None
    assert auto_precision("some/dir", accelerator="mps")[0] is None
    want = "bf16-mixed" if bf16_supported("cpu") else None
    assert auto_precision("some/dir", accelerator="cpu")[0] == want


@pytest.mark.slow
@pytest.mark.parametrize("given", [None, "32-true"])
def test_cli_picks_bf16_for_a_pretrained_model_and_the_flag_overrides(in_tmp, random_model_dir, capsys, given):
    from lit_alpha.cli.lightning import main

    sys.argv[1:] = []
    args = ["fit", "--config", str(REPO / "configs/grpo.yaml"), "--model.model", str(random_model_dir),
            "--trainer.max_steps", "1", "--trainer.logger", "false", "--trainer.callbacks", "[]",
            "--data.prompts_per_step", "2", "--data.n_samples", "2", "--data.max_new_tokens", "4",
            "--validate_at_start", "false", "--trainer.enable_progress_bar", "false"]
    if given:
        args += ["--trainer.precision", given]
    cli = main(args)
    err = capsys.readouterr().err
    if given:
        assert cli.trainer.precision == given and "precision:" not in err
    else:
        want = "bf16-mixed" if bf16_supported("cpu") else "32-true"
        assert cli.trainer.precision == want and "precision: " in err and "--trainer.precision overrides" in err
