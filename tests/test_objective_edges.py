"""Edges of the objectives that the golden-value tests do not reach: the range checks of their
hyper-parameters, groups of two, the mixture proposal at α = 1 and with every sample from π_base.
(Each was a surviving mutant of ``scripts/mutate.py``.)"""

from __future__ import annotations

import math

import pytest
import torch

from lit_alpha.batch import ObjectiveInputs
from lit_alpha.objectives import GRPO, AlphaDPG, MixtureAlphaDPG
from lit_alpha.objectives.schedule import Linear

E = math.exp


def seq_inputs(lp, lp_base, rewards, group_size) -> ObjectiveInputs:
    """One token per sample, so the sequence log-probs are the given numbers."""
    t = torch.tensor(lp, dtype=torch.float32)[:, None].requires_grad_(True)  # [N, 1]
    n = t.shape[0]
    return ObjectiveInputs(
        logprobs=t, old_logprobs=t.detach().clone(),
        base_logprobs=torch.tensor(lp_base, dtype=torch.float32)[:, None], mask=torch.ones(n, 1),
        rewards=torch.tensor(rewards, dtype=torch.float32),
        group_ids=torch.arange(n // group_size).repeat_interleave(group_size),
    )


# -- range checks ----------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [Linear(0.5, 1.5, steps=10), Linear(-0.5, 0.5, steps=10), 1.5, -0.1, math.nan])
def test_alpha_dpg_rejects_an_alpha_outside_0_1_at_either_end(alpha) -> None:
    with pytest.raises(ValueError, match="alpha"):
        AlphaDPG(alpha=alpha)


def test_alpha_dpg_accepts_the_closed_interval() -> None:
    for alpha in (0.0, 1.0, Linear(0.0, 1.0, steps=10)):
        AlphaDPG(alpha=alpha)


@pytest.mark.parametrize("kwargs", [{"clip_eps": 0.0}, {"clip_eps": 1.0}, {"clip_eps": 1.5}, {"clip_eps": -0.1},
                                    {"clip_eps_high": 0.0}, {"clip_eps_high": -1.0}, {"beta": -0.1}])
def test_grpo_rejects_out_of_range_settings(kwargs) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        GRPO(**kwargs)


def test_grpo_accepts_the_open_interval() -> None:
    assert GRPO(clip_eps=0.999, clip_eps_high=0.001).clip_eps_high == 0.001
    assert GRPO(clip_eps=0.001).clip_eps_high == 0.001


# -- GRPO's std normalisation on the smallest group ------------------------------------------------
def test_grpo_std_normalises_a_group_of_two() -> None:
    # rewards [1, 0]: mean 1/2, sample std (n − 1) = √½; A = ±½ / (√½ + 1e-4)
    inputs = seq_inputs([-1.0, -1.0], [-1.0, -1.0], [1, 0], 2)
    adv, _ = GRPO(std_normalize=True).advantages(inputs)
    want = 0.5 / (math.sqrt(0.5) + 1e-4)
    assert adv.tolist() == pytest.approx([want, -want], rel=1e-6)
    one = seq_inputs([-1.0], [-1.0], [1], 1)  # a group of one: no spread, advantage 0 (no NaN)
    assert GRPO(std_normalize=True).advantages(one)[0].tolist() == [0.0]


# -- the mixture proposal's edges --------------------------------------------------------------------
def test_mixture_proposal_weights_the_policy_by_its_share_of_the_group() -> None:
    # groups of 2 with K = 1 π_base row: λ = 1/2, log q = log(½π_θ + ½π_base)
    inputs = seq_inputs([-1.0, -2.0], [-3.0, -4.0], [1, 1], 2)
    want = [math.log(0.5 * E(-1) + 0.5 * E(-3)), math.log(0.5 * E(-2) + 0.5 * E(-4))]
    assert MixtureAlphaDPG(base_samples=1).log_proposal(inputs).tolist() == pytest.approx(want, abs=1e-12)
    with pytest.raises(ValueError, match="cannot hold"):  # no policy row left: λ = 0 is refused
        MixtureAlphaDPG(base_samples=2).log_proposal(inputs)


def test_mixture_at_alpha_1_is_finite_with_wrong_samples() -> None:
    # α = 1 (released): S = ρ·(1[v>0] − 1): 0 for a correct sample, −ρ for a wrong one (its x = −∞)
    inputs = seq_inputs([-1.0, -2.0, -1.0, -1.0], [-1.0, -1.0, -1.0, -1.0], [1, 0, 1, 1], 2)
    s, hits, _ = MixtureAlphaDPG(alpha=1.0, base_samples=1).pseudo_rewards(inputs)
    rho1 = E(-2) / (0.5 * E(-2) + 0.5 * E(-1))
    assert torch.isfinite(s).all() and not hits.any()
    assert s.tolist() == pytest.approx([0.0, -rho1, 0.0, 0.0], abs=1e-12)


@pytest.mark.parametrize("alpha", [0.5, 1.0])
def test_mixture_with_amari_scale_is_refused(alpha) -> None:
    inputs = seq_inputs([-1.0, -2.0], [-1.0, -1.0], [1, 0], 2)
    with pytest.raises(ValueError, match="scale"):
        MixtureAlphaDPG(alpha=alpha, scale="amari", base_samples=1)
    s, _, _ = MixtureAlphaDPG(alpha=alpha, scale="released", base_samples=1).pseudo_rewards(inputs)
    assert torch.isfinite(s).all()


# -- groups ---------------------------------------------------------------------------------------
def test_group_view_refuses_an_empty_batch_and_unequal_groups() -> None:
    from lit_alpha.objectives.base import group_view

    with pytest.raises(ValueError, match="equal groups"):
        group_view(torch.zeros(0), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="equal groups"):
        group_view(torch.zeros(3), torch.tensor([0, 0, 1]))
    assert group_view(torch.arange(4.0), torch.tensor([0, 0, 1, 1])).tolist() == [[0.0, 1.0], [2.0, 3.0]]


# -- the metrics every objective logs --------------------------------------------------------------
def test_common_metrics_golden() -> None:
    from dataclasses import replace

    # one group of two: log π_θ = [−1, −3], log π_base = [−2, −1], rewards [1, 0], entropies [0.5, 1.5]
    inputs = replace(seq_inputs([-1.0, -3.0], [-2.0, -1.0], [1, 0], 2), old_entropy=torch.tensor([[0.5], [1.5]]))
    out = GRPO().__call__(inputs)
    m = {k: float(v) for k, v in out.metrics.items()}
    assert m["advantage_mean"] == pytest.approx(0.0) and m["advantage_std"] == pytest.approx(0.5)  # A = ±½
    assert m["reward_mean"] == pytest.approx(0.5) and m["logprob_mean"] == pytest.approx(-2.0)
    assert m["kl_to_base"] == pytest.approx(((-1 + 2) + (-3 + 1)) / 2)  # mean of log π_θ − log π_base
    assert m["entropy"] == pytest.approx(1.0) and m["loss"] == pytest.approx(float(out.loss))
    assert m["zero_success_frac"] == 0.0 and m["all_success_frac"] == 0.0


# -- RLOO and pass@k "best" on small groups -------------------------------------------------------------
def test_rloo_advantage_golden() -> None:
    from lit_alpha.objectives import RLOO

    # rewards [1, 0, 0]: leave-one-out baselines [0, ½, ½] → A = r − b = [1, −½, −½]
    adv, _ = RLOO().advantages(seq_inputs([-1.0] * 3, [-1.0] * 3, [1, 0, 0], 3))
    assert adv.tolist() == pytest.approx([1.0, -0.5, -0.5])


def test_passk_best_on_a_group_of_two() -> None:
    from lit_alpha.objectives import GRPOPassAtK

    # rewards [0, 1]: the best sample (index 1) gets r_(1) − r_(2) = 1; the other 0
    adv, metrics = GRPOPassAtK(k=2, mode="best", std_normalize=False).advantages(
        seq_inputs([-1.0, -1.0], [-1.0, -1.0], [0, 1], 2))
    assert adv.tolist() == [0.0, 1.0] and float(metrics["passk_active_frac"]) == 1.0
    one, _ = GRPOPassAtK(k=1, mode="best").advantages(seq_inputs([-1.0], [-1.0], [1], 1))  # a group of one
    assert one.tolist() == [0.0]


# -- the rivals' range checks ---------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,field", [
    ({"gamma_p": -0.1}, "gamma"), ({"gamma_n": -0.1}, "gamma"), ({"gamma_p": math.nan}, "gamma"),
    ({"logprob_norm": "max"}, "logprob_norm"),
])
def test_differential_smoothing_rejects(kwargs, field) -> None:
    from lit_alpha.objectives import GRPODifferentialSmoothing

    with pytest.raises(ValueError, match=field):
        GRPODifferentialSmoothing(**kwargs)


def test_differential_smoothing_accepts_zero_and_small_weights() -> None:
    from lit_alpha.objectives import GRPODifferentialSmoothing

    for gp, gn in ((0.0, 0.0), (0.5, 0.0), (0.0, 0.5)):
        assert GRPODifferentialSmoothing(gamma_p=gp, gamma_n=gn, logprob_norm="sum").gamma_p == gp


@pytest.mark.parametrize("kwargs,ok", [
    ({"rank_penalty": 0.0}, True), ({"rank_penalty": 1.0}, True), ({"rank_penalty": 1.01}, False),
    ({"rank_penalty": -0.01}, False), ({"rank_over": "nobody"}, False), ({"logprob_norm": "max"}, False),
])
def test_unlikeliness_range_checks(kwargs, ok) -> None:
    from lit_alpha.objectives import GRPOUnlikely

    if ok:
        GRPOUnlikely(**kwargs)
    else:
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            GRPOUnlikely(**kwargs)


@pytest.mark.parametrize("kwargs,ok", [
    ({"erc_low": 0.5, "erc_high": 2.0}, True), ({"erc_low": 0.999, "erc_high": 0.001}, True),
    ({"erc_low": 0.0}, False), ({"erc_low": 1.0}, False), ({"erc_high": 0.0}, False), ({"erc_low": math.nan}, False),
])
def test_entropy_ratio_clip_range_checks(kwargs, ok) -> None:
    from lit_alpha.objectives import GRPOEntropyRatioClip

    if ok:
        GRPOEntropyRatioClip(**kwargs)
    else:
        with pytest.raises(ValueError, match="erc_low"):
            GRPOEntropyRatioClip(**kwargs)


def test_step_schedule_checks_and_repr() -> None:
    from lit_alpha.objectives.schedule import Step

    with pytest.raises(ValueError, match="len"):
        Step([0.0, 1.0], [5, 10])
    with pytest.raises(ValueError, match="len"):
        Step([0.0], [5])
    with pytest.raises(ValueError, match="increasing"):
        Step([0.0, 1.0, 2.0], [5, 5])
    s = Step([0.0, 0.5, 0.9], [50, 100])
    assert repr(s) == "Step([0.0, 0.5, 0.9], boundaries=[50, 100])"
    assert [s(49), s(50), s(99), s(100)] == [0.0, 0.5, 0.5, 0.9] and s.bounds() == (0.0, 0.9)


def test_differential_smoothing_logs_the_grpo_advantage_it_smooths() -> None:
    from lit_alpha.objectives import GRPODifferentialSmoothing

    # rewards [1, 0] → GRPO A = ±½ (mean 0); [1, 1] → 0: the mean before smoothing is 0, after it is not
    inputs = seq_inputs([-1.0, -2.0, -1.0, -3.0], [-1.0] * 4, [1, 0, 1, 1], 2)
    adv, metrics = GRPODifferentialSmoothing(gamma_p=0.1, gamma_n=0.05).advantages(inputs)
    assert float(metrics["grpo_advantage_mean"]) == pytest.approx(0.0, abs=1e-7)
    assert float(metrics["smoothing_term_mean"]) == pytest.approx(float(adv.mean()))


def test_entropy_ratio_of_zero_entropies_is_one() -> None:
    """A token whose entropy is 0 before and after (a certain token) keeps ratio (0+δ)/(0+δ) = 1."""
    from dataclasses import replace

    from lit_alpha.objectives import GRPOEntropyRatioClip
    from lit_alpha.objectives.entropy_clip import _DELTA

    zeros = torch.zeros(2, 1)
    inputs = replace(seq_inputs([-1.0, -2.0], [-1.0, -1.0], [1, 0], 2), entropy=zeros, old_entropy=zeros)
    assert GRPOEntropyRatioClip().entropy_ratio(inputs).tolist() == [[1.0], [1.0]]
    inputs = replace(inputs, entropy=torch.full((2, 1), 1.0), old_entropy=torch.full((2, 1), 3.0))
    ratio = GRPOEntropyRatioClip().entropy_ratio(inputs)
    assert ratio.reshape(-1).tolist() == pytest.approx([(1 + _DELTA) / (3 + _DELTA)] * 2, rel=1e-12)
