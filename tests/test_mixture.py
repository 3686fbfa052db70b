"""MixtureAlphaDPG (π_θ and π_base samples in one group), its rollout side, and α-DPG's ESS diagnostic."""

from __future__ import annotations

import inspect
import math
from dataclasses import replace

import pytest
import torch

from lit_alpha.batch import ObjectiveInputs, RolloutBatch
from lit_alpha.data.mixture import join_groups
from lit_alpha.objectives import GRPO, AlphaDPG, MixtureAlphaDPG, alpha_dpg

E = math.exp


def seq_inputs(lp, lp_base, rewards, group_size) -> ObjectiveInputs:
    """One token per sample, so the sequence log-probs are the given numbers (a mixture group: its last
    ``base_samples`` rows are the π_base samples)."""
    t = torch.tensor(lp, dtype=torch.float32)[:, None].requires_grad_(True)  # [N, 1]
    n = t.shape[0]
    return ObjectiveInputs(
        logprobs=t, old_logprobs=t.detach().clone(),
        base_logprobs=torch.tensor(lp_base, dtype=torch.float32)[:, None], mask=torch.ones(n, 1),
        rewards=torch.tensor(rewards, dtype=torch.float32),
        group_ids=torch.arange(n // group_size).repeat_interleave(group_size),
    )


def test_mixture_golden_alpha0():
    # one group: y1 from π_θ (log π = −1, log π_base = −3), y2 from π_base (−3, −2); both correct; λ = 1/2
    inputs = seq_inputs([-1.0, -3.0], [-3.0, -2.0], [1, 1], 2)
    q1, q2 = 0.5 * E(-1) + 0.5 * E(-3), 0.5 * E(-3) + 0.5 * E(-2)  # mixture densities
    w1, w2 = E(-3) / q1, E(-2) / q2  # v·π_base/q = 0.238, 1.462
    z = (w1 + w2) / 2  # ẑ = 0.850 (≤ 1, no clamp)
    assert z < 1
    rho1, rho2 = E(-1) / q1, E(-3) / q2  # π_θ/q
    r1, r2 = E(-3) / (z * E(-1)) - 1, E(-2) / (z * E(-3)) - 1  # α = 0: R = p/π − 1
    s1, s2 = rho1 * r1, min(rho2 * r2, 10.0)  # S = ρR clipped at M = 10: ρ2·R2 = 1.36, no clip
    want = [s1 - rho1 * s2, s2 - rho2 * s1]  # A_i = S_i − ρ_i · S_other
    adv, metrics = MixtureAlphaDPG(base_samples=1, alpha=0.0, clip=10.0).advantages(inputs)
    assert adv.tolist() == pytest.approx(want, rel=1e-5)
    assert metrics["z_mean"].item() == pytest.approx(z, rel=1e-6)
    assert metrics["ess_frac"].item() == pytest.approx((w1 + w2) ** 2 / (2 * (w1**2 + w2**2)), rel=1e-6)


def test_mixture_clip_and_incorrect_base_sample():
    # group 0: y0 from π_θ (π = π_base = e^−1), y1 from π_base and very unlikely under π_θ (e^−30)
    # group 1: y2 from π_θ, wrong; y3 from π_base (π = π_base = e^−1)
    inputs = seq_inputs([-1.0, -30.0, -2.0, -1.0], [-1.0, -1.0, -1.0, -1.0], [1, 1, 0, 1], 2)
    adv, metrics = MixtureAlphaDPG(base_samples=1, alpha=0.0, clip=1.5).advantages(inputs)
    # q0 = e^−1 → w0 = 1;  q1 = ½e^−30 + ½e^−1 → w1 ≈ 2;  ẑ0 = min(1, 1.5) = 1.  group 1: w = [0, 1] → ẑ1 = ½
    assert metrics["z_mean"].item() == pytest.approx(0.75, rel=1e-6)
    # S = ρ(p/π) − ρ: y0: 1·1 − 1 = 0;  y1: ≈ 2 − 2e^−29 → clipped at M = 1.5;  y2: −ρ2;  y3: 1·2 − 1 = 1
    assert metrics["pseudo_reward_clip_frac"].item() == pytest.approx(0.25)
    rho1 = E(-30) / (0.5 * E(-30) + 0.5 * E(-1))
    rho2 = E(-2) / (0.5 * E(-2) + 0.5 * E(-1))
    want = [0.0 - 1.0 * 1.5, 1.5 - rho1 * 0.0, -rho2 - rho2 * 1.0, 1.0 - 1.0 * (-rho2)]
    assert adv.tolist() == pytest.approx(want, rel=1e-5, abs=1e-9)


def test_mixture_reduces_to_on_policy_when_policy_is_base():
    # π_θ = π_base everywhere: q = π, ρ = 1, and the mixture advantage is the plain one over all N rows
    lp = [-1.0, -2.0, -0.5, -3.0, -1.5, -2.5]
    rewards = [1, 0, 1, 1, 0, 1]
    for alpha in (0.0, 0.25, 0.5, 1.0):
        mixed, m1 = MixtureAlphaDPG(base_samples=1, alpha=alpha).advantages(seq_inputs(lp, lp, rewards, 3))
        plain, m2 = AlphaDPG(alpha=alpha).advantages(seq_inputs(lp, lp, rewards, 3))
        assert mixed.tolist() == pytest.approx(plain.tolist(), abs=1e-6)
        assert m1["ess_frac"].item() == pytest.approx(m2["ess_frac"].item())


def test_ess_golden_and_zero_without_correct():
    # on-policy, one group of 3: w = v·π_base/π = [1, 3, 0] → ESS = 16/10, over N = 3
    inputs = seq_inputs([-1.0, -1.0, -1.0], [-1.0, -1.0 + math.log(3), -1.0], [1, 1, 0], 3)
    _, metrics = AlphaDPG(alpha=0.5).advantages(inputs)
    assert metrics["ess_frac"].item() == pytest.approx(1.6 / 3, rel=1e-6)
    _, none = AlphaDPG(alpha=0.5).advantages(seq_inputs([-1.0, -2.0], [-1.0, -1.0], [0, 0], 2))
    assert none["ess_frac"].item() == 0.0  # no group with a correct sample: 0, still logged


def test_only_the_mixture_asks_for_base_samples():
    assert MixtureAlphaDPG().base_samples == 8 and MixtureAlphaDPG(base_samples=3).base_samples == 3
    assert AlphaDPG().base_samples == 0 and GRPO().base_samples == 0
    source = inspect.getsource(alpha_dpg)  # the paper's page holds no mixture code
    assert not [word for word in ("base_samples", "from_base", "log_proposal", "log_rho", "λ") if word in source]


def test_mixture_bad_arguments():
    with pytest.raises(ValueError, match="base_samples must be >= 1"):
        MixtureAlphaDPG(base_samples=0)
    with pytest.raises(ValueError, match="scale released only"):
        MixtureAlphaDPG(scale="amari")
    with pytest.raises(ValueError, match="groups of 2 rows cannot hold 2"):  # no policy row left
        MixtureAlphaDPG(base_samples=2).advantages(seq_inputs([-1.0, -1.0], [-1.0, -1.0], [1, 0], 2))


def test_mixture_never_nan_at_the_edges():
    # π_base = 0 on a correct sample, π_θ underflowing, a group with nothing correct; α = 0, 0.5, 1
    inputs = seq_inputs([-1.0, -1e4, -2.0, -3.0], [-math.inf, -1.0, -1.0, -1.0], [1, 1, 0, 0], 2)
    for alpha in (0.0, 0.5, 1.0):
        adv, metrics = MixtureAlphaDPG(base_samples=1, alpha=alpha).advantages(inputs)
        assert torch.isfinite(adv).all() and all(torch.isfinite(v).all() for v in metrics.values())


def _batch(rows: int, width: int, fill: int, prompt_len: int = 2) -> RolloutBatch:
    ids = torch.full((rows, width), fill)
    return RolloutBatch(input_ids=ids, attention_mask=torch.ones_like(ids), completion_mask=torch.ones(rows, width),
                        old_logprobs=torch.zeros(rows, width), rewards=torch.arange(rows, dtype=torch.float32) + fill,
                        group_ids=torch.zeros(rows, dtype=torch.long), completions=[f"{fill}:{i}" for i in range(rows)],
                        prompt_len=prompt_len)


def test_join_groups_layout():
    policy, base = _batch(4, 5, 1), _batch(2, 3, 7)  # 2 prompts: G = 2 policy rows, K = 1 base row each
    out = join_groups(policy, base, g=2, k=1, pad_id=0)
    assert out.completions == ["1:0", "1:1", "7:0", "1:2", "1:3", "7:1"]
    assert out.group_ids.tolist() == [0, 0, 0, 1, 1, 1]
    assert out.from_base.tolist() == [False, False, True] * 2
    assert out.input_ids.shape == (6, 5) and out.input_ids[2].tolist() == [7, 7, 7, 0, 0]
    assert out.attention_mask[2].tolist() == [1, 1, 1, 0, 0]
    with pytest.raises(ValueError, match="prompt layouts"):
        join_groups(policy, replace(base, prompt_len=3), 2, 1, 0)


@pytest.mark.slow
def test_fit_with_base_samples(in_tmp, random_model_dir, capsys):
    """MixtureAlphaDPG's base_samples: each group gets K π_base rows and trains on them; the removed
    data.base_samples is refused with a pointer to the new class, and so is the mixture with offline RFT."""
    from conftest import REPO
    from mlflow.tracking import MlflowClient

    from lit_alpha.cli.lightning import main as cli_main

    small = ["--model.model", str(random_model_dir), "--data.task.init_args.num_val", "2", "--data.val_samples", "2",
             "--data.prompts_per_step", "2", "--data.n_samples", "2",
             "--trainer.max_steps", "2", "--validate_at_start", "false", "--trainer.limit_val_batches", "0",
             "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.experiment_name", "mix"]
    cli_main(["fit", "--config", str(REPO / "configs/a0_mix.yaml"), "--model.objective.init_args.base_samples", "3",
              *small])
    client = MlflowClient(f"sqlite:///{in_tmp}/mlruns/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("mix").experiment_id])
    assert run.info.status == "FINISHED"
    m = run.data.metrics
    assert "perf/base_proposal_sample_s" in m and m["perf/base_proposal_completion_tokens"] > 0
    assert math.isfinite(m["train/loss"]) and m["train/skipped_steps"] == 0
    with pytest.raises(SystemExit):
        cli_main(["fit", "--config", str(REPO / "configs/a0.yaml"), "--data.base_samples", "3", *small])
    err = capsys.readouterr().err
    assert "data.base_samples" in err and "lit_alpha.objectives.MixtureAlphaDPG" in err
    with pytest.raises(SystemExit):  # offline RFT's cached groups hold no π_base rows: refused, not misread
        cli_main(["fit", "--config", str(REPO / "configs/a0_mix.yaml"), "--data.offline",
                  "lit_alpha.data.offline.OfflineRFT", *small])
    err = capsys.readouterr().err
    assert "data.offline" in err and "MixtureAlphaDPG" in err
