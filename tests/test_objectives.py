"""Golden values (worked out by hand in the comments) and finiteness properties of the objectives."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from lit_alpha.batch import ObjectiveInputs
from lit_alpha.objectives import GRPO, RFT, SFT, AlphaDPG, MixtureAlphaDPG, Objective

LN = math.log


def make_inputs(logprobs, rewards, group_size, base=None, old=None, mask=None) -> ObjectiveInputs:
    lp = torch.tensor(logprobs, dtype=torch.float32, requires_grad=True)  # [N, T]
    n = lp.shape[0]
    return ObjectiveInputs(
        logprobs=lp,
        old_logprobs=lp.detach().clone() if old is None else torch.tensor(old, dtype=torch.float32),
        base_logprobs=lp.detach().clone() if base is None else torch.tensor(base, dtype=torch.float32),
        mask=torch.ones_like(lp.detach()) if mask is None else torch.tensor(mask, dtype=torch.float32),
        rewards=torch.tensor(rewards, dtype=torch.float32),
        group_ids=torch.arange(n // group_size).repeat_interleave(group_size),
    )


# ---------------------------------------------------------------- α-DPG fixture: 3 groups × 2, T=2
# sample          0      1      2      3      4      5
# group           0      0      1      1      2      2
# v               1      0      1      1      0      0
# w = π_base/π    1      (5)    1/2    1      (5)    (5)      (lp_base − lp_θ = log w, on token 0)
# Σ_t log π_θ    −1     −2     −3     −1     −2     −1        (sample 3 has one token + padding −9)
# ẑ: group 0 (1 + 0)/2 = 1/2;  group 1 (1/2 + 1)/2 = 3/4;  group 2 no correct sample → z_default 1e-4
# p/π = w·v/ẑ:  [2, 0, (1/2)/(3/4) = 2/3, 1/(3/4) = 4/3, 0, 0]
RATIO = [2.0, 0.0, 2 / 3, 4 / 3, 0.0, 0.0]
SEQ_LP = [-1.0, -2.0, -3.0, -1.0, -2.0, -1.0]


def fixture_inputs() -> ObjectiveInputs:
    lp = [[-0.5, -0.5], [-1.0, -1.0], [-2.0, -1.0], [-1.0, -9.0], [-1.5, -0.5], [-0.25, -0.75]]
    log_w = [0.0, LN(5), LN(0.5), 0.0, LN(5), LN(5)]
    base = [[row[0] + w, row[1]] for row, w in zip(lp, log_w)]
    mask = [[1, 1], [1, 1], [1, 1], [1, 0], [1, 1], [1, 1]]
    return make_inputs(lp, [1, 0, 1, 1, 0, 0], 2, base=base, mask=mask)


def loo(r: list[float]) -> list[float]:  # pairs: A_i = R_i − R_other
    return [r[i] - r[i ^ 1] for i in range(len(r))]


def released(alpha: float) -> list[float]:  # (p/π)^{1−α} − 1; −1 for incorrect (α<1); limit 1[v>0]−1 at α=1
    if alpha == 1.0:
        return [0.0 if q > 0 else -1.0 for q in RATIO]
    return [q ** (1 - alpha) - 1 if q > 0 else -1.0 for q in RATIO]


@pytest.mark.parametrize("alpha", [0.0, 1e-6, 0.5, 1 - 1e-6, 1.0])
def test_alpha_dpg_pseudo_rewards_and_advantages(alpha: float) -> None:
    obj = AlphaDPG(alpha=alpha, normalizer=2.0)
    inputs = fixture_inputs()
    r, hit, log_z = obj.pseudo_rewards(inputs)
    assert_close(r.float(), torch.tensor(released(alpha)), rtol=1e-5, atol=1e-5)
    assert not hit.any()
    assert_close(log_z.exp().float(), torch.tensor([0.5, 0.75, 1e-4]))  # group 2 all wrong: z_default
    adv, _ = obj.advantages(inputs)
    assert_close(adv, torch.tensor(loo(released(alpha))), rtol=1e-5, atol=1e-5)
    assert adv[4] == 0 and adv[5] == 0  # all-wrong group: R = −1 for both, A = 0 exactly


def test_alpha_dpg_golden_numbers() -> None:
    inputs = fixture_inputs()
    # α=0: R = p/π − 1 = [1, −1, −1/3, 1/3, −1, −1];  A = [2, −2, −2/3, 2/3, 0, 0]
    # loss (C=2) = mean_i(−A_i·s_i)/C = (2 − 4 − 2 + 2/3 + 0 + 0)/6/2 = (−10/3)/12 = −5/18
    out = AlphaDPG(alpha=0.0, normalizer=2.0)(inputs)
    assert_close(out.loss, torch.tensor(-5 / 18))
    assert_close(out.metrics["z_mean"], torch.tensor((0.5 + 0.75 + 1e-4) / 3))
    assert_close(out.metrics["pseudo_reward_mean"], torch.tensor(-1 / 3))  # (1−1−1/3+1/3−1−1)/6
    assert_close(out.metrics["pseudo_reward_clip_frac"], torch.tensor(0.0))
    assert_close(out.metrics["zero_success_frac"], torch.tensor(1 / 3))  # group 2
    assert_close(out.metrics["all_success_frac"], torch.tensor(1 / 3))  # group 1
    # groups with ≥ 2 correct (α's lever): group 1 (both correct); group 0 has one, group 2 none
    assert_close(out.metrics["multi_success_frac"], torch.tensor(1 / 3))
    # α=0.5: R = [√2−1, −1, √(2/3)−1, √(4/3)−1, −1, −1] = [0.414214, −1, −0.183503, 0.154701, −1, −1]
    # A = [1.414214, −1.414214, −0.338204, 0.338204, 0, 0]
    # loss = (1.414214·1 − 1.414214·2 − 0.338204·3 + 0.338204·1)/6/2 = (−1.414214 − 0.676408)/12
    adv, _ = AlphaDPG(alpha=0.5).advantages(inputs)
    assert_close(adv, torch.tensor([1.414214, -1.414214, -0.338204, 0.338204, 0.0, 0.0]))
    assert_close(AlphaDPG(alpha=0.5, normalizer=2.0)(inputs).loss, torch.tensor(-2.090622 / 12))
    # α=1 (released): R = v − 1 = [0, −1, 0, 0, −1, −1], A = [1, −1, 0, 0, 0, 0]: REINFORCE
    # −A·s = [−1·(−1), −(−1)·(−2), 0, 0, 0, 0] = [1, −2, 0, 0, 0, 0] → loss = (−1)/6/2 = −1/12
    assert_close(AlphaDPG(alpha=1.0, normalizer=2.0)(inputs).loss, torch.tensor(-1 / 12))


def test_alpha_dpg_amari_scale() -> None:
    inputs = fixture_inputs()
    # α=0.5: R = 2·((p/π)^{1/2} − 1) = [0.828427, −2, −0.367007, 0.309401, −2, −2]
    r, _, _ = AlphaDPG(alpha=0.5, scale="amari").pseudo_rewards(inputs)
    assert_close(r.float(), torch.tensor([0.828427, -2.0, -0.367007, 0.309401, -2.0, -2.0]))
    # α=1: R = clip(log(p/π), −10, 10) = [log 2, −10, log 2/3, log 4/3, −10, −10]
    # A = [10 + log 2, −(10 + log 2), log(2/3) − log(4/3) = −log 2, log 2, 0, 0]
    obj = AlphaDPG(alpha=1.0, scale="amari")
    r, _, _ = obj.pseudo_rewards(inputs)
    assert_close(r.float(), torch.tensor([LN(2), -10.0, LN(2 / 3), LN(4 / 3), -10.0, -10.0]))
    adv, _ = obj.advantages(inputs)
    assert_close(adv, torch.tensor([10 + LN(2), -10 - LN(2), -LN(2), LN(2), 0.0, 0.0]))
    # α=0: the two scales coincide
    assert_close(
        AlphaDPG(alpha=0.0, scale="amari").pseudo_rewards(inputs)[0],
        AlphaDPG(alpha=0.0).pseudo_rewards(inputs)[0],
    )


@pytest.mark.parametrize("scale", ["released", "amari"])
def test_alpha_dpg_continuity_in_alpha(scale: str) -> None:
    g = torch.Generator().manual_seed(0)
    lp = -torch.rand(12, 3, generator=g) * 4  # [N, T]
    base = lp - torch.randn(12, 3, generator=g)
    rewards = torch.tensor([1, 0, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1.0])
    inputs = make_inputs(lp.tolist(), rewards.tolist(), 4, base=base.tolist())

    def rewards_at(alpha: float) -> torch.Tensor:
        return AlphaDPG(alpha=alpha, scale=scale).pseudo_rewards(inputs)[0]

    assert_close(rewards_at(1e-6), rewards_at(0.0), rtol=0, atol=1e-4)
    assert_close(rewards_at(1 - 1e-6), rewards_at(1.0), rtol=0, atol=1e-4)
    # the whole path approaches α=1 monotonically in error
    errs = [(rewards_at(1 - d) - rewards_at(1.0)).abs().max().item() for d in (1e-1, 1e-2, 1e-3, 1e-4)]
    assert errs == sorted(errs, reverse=True) and errs[-1] < 1e-2


def test_alpha_dpg_clipping() -> None:
    # one group: y0 correct with π_base/π = 100, y1 wrong. ẑ = (100 + 0)/2 = 50 → clamped to 1, p/π = 100
    # α=0: R0 = 100 − 1 = 99 → clipped to M = 10; R1 = −1. clip_frac = 1/2. A = [11, −11]
    # α=0.5: R0 = √100 − 1 = 9 < 10 (not clipped)
    inputs = make_inputs([[-5.0], [-1.0]], [1, 0], 2, base=[[-5.0 + LN(100)], [-1.0]])
    out = AlphaDPG(alpha=0.0)(inputs)
    assert_close(out.metrics["pseudo_reward_clip_frac"], torch.tensor(0.5))
    assert_close(out.metrics["z_mean"], torch.tensor(1.0))
    assert_close(AlphaDPG(alpha=0.0).advantages(inputs)[0], torch.tensor([11.0, -11.0]))
    assert_close(AlphaDPG(alpha=0.5).pseudo_rewards(inputs)[0].float(), torch.tensor([9.0, -1.0]))
    assert AlphaDPG(alpha=0.5)(inputs).metrics["pseudo_reward_clip_frac"] == 0
    # a custom M
    assert_close(AlphaDPG(alpha=0.0, clip=3.0).pseudo_rewards(inputs)[0].float(), torch.tensor([3.0, -1.0]))


def test_alpha_dpg_z_clamp_all_right_group() -> None:
    # all correct, w = π_base/π = (1, 3): ẑ = (1 + 3)/2 = 2 → clamped to 1; p/π = (1, 3)
    # α=0: R = (0, 2), A = (−2, 2); all_success_frac = 1
    inputs = make_inputs([[-1.0], [-2.0]], [1, 1], 2, base=[[-1.0], [-2.0 + LN(3)]])
    out = AlphaDPG(alpha=0.0)(inputs)
    assert_close(out.metrics["z_mean"], torch.tensor(1.0))
    assert_close(out.metrics["all_success_frac"], torch.tensor(1.0))
    assert_close(AlphaDPG(alpha=0.0).pseudo_rewards(inputs)[0].float(), torch.tensor([0.0, 2.0]))


def test_alpha_dpg_fractional_rewards() -> None:
    # v = (1/2, 1), w = (1, 1): ẑ = (1/2 + 1)/2 = 3/4, p/π = (2/3, 4/3) → α=0: R = (−1/3, 1/3)
    inputs = make_inputs([[-1.0], [-2.0]], [0.5, 1.0], 2)
    assert_close(AlphaDPG(alpha=0.0).pseudo_rewards(inputs)[0].float(), torch.tensor([-1 / 3, 1 / 3]))
    # α=1 released: the limit of (p/π)^{1−α} − 1 is 1[v>0] − 1 = 0 for both
    assert_close(AlphaDPG(alpha=1.0).pseudo_rewards(inputs)[0].float(), torch.tensor([0.0, 0.0]))


def test_alpha_dpg_correct_sample_the_base_cannot_produce() -> None:
    # issue 15's reproduction: Σ log π_θ = (−5, −5), Σ log π_base = (−∞, −3), v = (1, 0). The only
    # correct sample has π_base = 0, so p(y0) = 0: the group has no usable correct sample. It takes
    # ẑ = z_default like a group with no correct sample; log(p/π) = −∞ for both, R = (−1, −1), A = 0
    # (was NaN, and the non-finite guard then skipped the whole step)
    inputs = make_inputs([[-5.0], [-5.0]], [1, 0], 2, base=[[-math.inf], [-3.0]])
    obj = AlphaDPG(alpha=0.5)
    adv, metrics = obj.advantages(inputs)
    assert adv.tolist() == [0.0, 0.0]
    r, _, log_z = obj.pseudo_rewards(inputs)
    assert r.tolist() == [-1.0, -1.0] and log_z.tolist() == [LN(1e-4)]
    assert metrics["unusable_group_frac"] == 1.0 and obj(inputs).metrics["zero_success_frac"] == 0.0
    out = obj(inputs)
    assert torch.isfinite(out.loss) and out.metrics["kl_to_base"] == -2.0  # over y1 only: −5 − (−3)
    # same with π_θ(y0) = 0 too (−∞ − (−∞) would be NaN): still A = 0
    both = make_inputs([[-5.0], [-5.0]], [1, 0], 2, base=[[-math.inf], [-3.0]])
    both.logprobs.data[0, 0] = -math.inf
    assert obj.advantages(both)[0].tolist() == [0.0, 0.0]


def test_alpha_dpg_impossible_correct_sample_weighs_like_a_wrong_one() -> None:
    # Σ log π_θ = (−5, −5), Σ log π_base = (−∞, −5), v = (1, 1): w = (0, 1), ẑ = (0 + 1)/2 = 1/2,
    # p/π = (0, 2); α=½: R = (−1, √2 − 1), A = (−√2, √2); the group is usable (metric 0)
    inputs = make_inputs([[-5.0], [-5.0]], [1, 1], 2, base=[[-math.inf], [-5.0]])
    adv, metrics = AlphaDPG(alpha=0.5).advantages(inputs)
    assert_close(adv, torch.tensor([-math.sqrt(2), math.sqrt(2)]))
    assert metrics["unusable_group_frac"] == 0.0
    # a policy that gave its own sample probability 0 (underflow): w = +∞ → ẑ = 1, R clipped at M
    lp = make_inputs([[-5.0], [-5.0]], [1, 0], 2, base=[[-3.0], [-3.0]])
    lp.logprobs.data[0, 0] = -math.inf
    r = AlphaDPG(alpha=0.5).pseudo_rewards(lp)[0]
    assert r.tolist() == pytest.approx([10.0, -1.0])


@pytest.mark.parametrize("alpha", [0.0, 1e-6, 0.5, 1 - 1e-6, 1.0])
def test_alpha_dpg_huge_logprob_magnitudes(alpha: float) -> None:
    # group 0: π_base/π = e^{−2e4} (base −1e4/token, policy 0): ẑ = e^{−2e4}/2, p/π(y0) = 2, y1 wrong
    # group 1: π_base/π = e^{+2e4}: ẑ clamped at 1, p/π astronomically large → R clipped at M (α<1)
    lp = [[0.0, 0.0], [0.0, 0.0], [-1e4, -1e4], [-1e4, -1e4]]
    base = [[-1e4, -1e4], [-1e4, -1e4], [0.0, 0.0], [0.0, 0.0]]
    inputs = make_inputs(lp, [1, 0, 1, 0], 2, base=base)
    for scale in ("released", "amari"):
        obj = AlphaDPG(alpha=alpha, scale=scale)
        r = obj.pseudo_rewards(inputs)[0]
        expect0 = math.expm1((1 - alpha) * LN(2)) / (1 - alpha if scale == "amari" and alpha < 1 else 1)
        if alpha == 1.0:
            expect0 = LN(2) if scale == "amari" else 0.0
        assert_close(r[0].item(), expect0, rtol=1e-5, atol=1e-6)
        out = obj(inputs)
        out.loss.backward()
        assert torch.isfinite(out.loss) and torch.isfinite(inputs.logprobs.grad).all()
        assert all(torch.isfinite(v) for v in out.metrics.values())
        inputs.logprobs.grad = None


def test_alpha_dpg_gradient_is_minus_advantage_over_nc() -> None:
    inputs = fixture_inputs()
    obj = AlphaDPG(alpha=0.0, normalizer=2.0)
    obj(inputs).loss.backward()
    # α=0: A = [2, −2, −2/3, 2/3, 0, 0]; ∂L/∂log π(y_{i,t}) = −A_i/(N·C) = −A_i/12 on completion tokens
    a = torch.tensor([2.0, -2.0, -2 / 3, 2 / 3, 0.0, 0.0])
    assert_close(inputs.logprobs.grad, (-a / 12)[:, None] * inputs.mask)
    assert inputs.logprobs.grad[3, 1] == 0  # padding
    # and in general for any α: grad = −A/(N·C)·mask (the reward is computed from detached log-probs)
    for alpha in (0.3, 0.9, 1.0):
        inputs.logprobs.grad = None
        obj = AlphaDPG(alpha=alpha, scale="amari", normalizer=2.0)
        adv, _ = obj.advantages(inputs)
        obj(inputs).loss.backward()
        assert_close(inputs.logprobs.grad, (-adv / 12)[:, None] * inputs.mask)


def test_alpha_dpg_validation() -> None:
    with pytest.raises(ValueError, match="alpha"):
        AlphaDPG(alpha=1.5)
    with pytest.raises(ValueError, match="alpha"):
        AlphaDPG(alpha=float("nan"))
    with pytest.raises(ValueError, match="clip"):
        AlphaDPG(clip=0.0)
    with pytest.raises(ValueError, match="scale"):
        AlphaDPG(scale="kl")


# ---------------------------------------------------------------- GRPO
def test_grpo_advantages() -> None:
    # group 0 r = (1, 0, 0): mean 1/3 → A = (2/3, −1/3, −1/3); group 1 r = (1, 1, 1) → A = 0
    inputs = make_inputs([[-1.0]] * 6, [1, 0, 0, 1, 1, 1], 3)
    adv, metrics = GRPO().advantages(inputs)
    assert_close(adv, torch.tensor([2 / 3, -1 / 3, -1 / 3, 0, 0, 0]))
    metrics = GRPO()(inputs).metrics  # degenerate-group counts: added once, by Objective.__call__
    assert_close(metrics["all_success_frac"], torch.tensor(0.5))
    assert_close(metrics["zero_success_frac"], torch.tensor(0.0))
    # std (unbiased) of (1, 0, 0) = √(((2/3)² + 2·(1/3)²)/2) = √(1/3) = 0.577350
    adv, _ = GRPO(std_normalize=True).advantages(inputs)
    assert_close(adv, torch.tensor([2 / 3, -1 / 3, -1 / 3, 0, 0, 0]) / (0.577350 + 1e-4))


def clip_inputs() -> ObjectiveInputs:
    # 1 group, r = (1, 0) → A = (+1/2, −1/2). T=3; ratios ρ = exp(logp − old):
    # sample 0: ρ = (1.5, 0.5, 1.0), mask (1,1,1);  sample 1: ρ = (1.5, 0.5, pad), mask (1,1,0)
    old = [[-1.0, -1.0, -1.0], [-2.0, -2.0, -2.0]]
    lp = [[-1.0 + LN(1.5), -1.0 + LN(0.5), -1.0], [-2.0 + LN(1.5), -2.0 + LN(0.5), 5.0]]
    return make_inputs(lp, [1, 0], 2, old=old, mask=[[1, 1, 1], [1, 1, 0]])


# per-token ℓ = −min(ρA, clip(ρ, 0.8, 1.2)A), ε = 0.2:
# s0 (A=+½): ρ=1.5 → −min(0.75, 0.6) = −0.6 (clip active, grad 0); ρ=0.5 → −min(0.25, 0.4) = −0.25
#            (grad −ρA = −0.25); ρ=1 → −0.5 (grad −0.5)
# s1 (A=−½): ρ=1.5 → −min(−0.75, −0.6) = 0.75 (grad −ρA = +0.75); ρ=0.5 → −min(−0.25, −0.4) = 0.4
#            (clip active, grad 0)
# Σℓ = −0.6 − 0.25 − 0.5 + 0.75 + 0.4 = −0.2 over 5 tokens; clip_frac = 2/5
@pytest.mark.parametrize(
    "aggregation, loss, grad_scale",
    [
        ("constant", -0.2 / (2 * 1.0), 1 / 2),  # Σℓ/(N·C), C=1
        ("token", -0.2 / 5, 1 / 5),  # Σℓ/#tokens
        ("sequence", ((-0.6 - 0.25 - 0.5) / 3 + (0.75 + 0.4) / 2) / 2, None),  # (−0.45 + 0.575)/2
    ],
)
def test_grpo_clipped_surrogate(aggregation: str, loss: float, grad_scale: float | None) -> None:
    inputs = clip_inputs()
    out = GRPO(aggregation=aggregation, normalizer=1.0)(inputs)
    assert_close(out.loss, torch.tensor(loss))
    assert_close(out.metrics["clip_frac"], torch.tensor(0.4))
    out.loss.backward()
    token_grads = torch.tensor([[0.0, -0.25, -0.5], [0.75, 0.0, 0.0]])
    if grad_scale is None:  # sequence: divided by N=2 and each sequence's length (3, 2)
        expected = token_grads / torch.tensor([[6.0], [4.0]])
    else:
        expected = token_grads * grad_scale
    assert_close(inputs.logprobs.grad, expected)


def test_grpo_clip_higher() -> None:
    # ε_high = 0.6: s0's ρ=1.5 < 1.6 is no longer clipped: ℓ = −0.75, grad −0.75; s1's ρ=0.5 still is
    # Σℓ = −0.75 − 0.25 − 0.5 + 0.75 + 0.4 = −0.35; constant C=1: −0.35/2; clip_frac 1/5
    inputs = clip_inputs()
    out = GRPO(clip_eps_high=0.6, normalizer=1.0)(inputs)
    assert_close(out.loss, torch.tensor(-0.35 / 2))
    assert_close(out.metrics["clip_frac"], torch.tensor(0.2))
    out.loss.backward()
    assert_close(inputs.logprobs.grad, torch.tensor([[-0.75, -0.25, -0.5], [0.75, 0.0, 0.0]]) / 2)


def test_grpo_k3_kl_value_and_gradient_sign() -> None:
    # equal rewards → A = 0, only the KL term. Token 0: π_base/π = 2 → k3 = 2 − ln 2 − 1 = 0.306853;
    # token 1: π_base/π = 1/2 → k3 = 1/2 + ln 2 − 1 = 0.193147. kl = mean = 0.25
    # β = 1, constant, C=1, N=2: loss = 2·(0.306853 + 0.193147)/2 = 0.5
    # ∂k3/∂log π = 1 − π_base/π: −1 on token 0 (π below base: descent raises it), +1/2 on token 1
    lp = [[-2.0, -1.0], [-2.0, -1.0]]
    base = [[-2.0 + LN(2), -1.0 - LN(2)]] * 2
    inputs = make_inputs(lp, [1, 1], 2, base=base)
    out = GRPO(beta=1.0, normalizer=1.0)(inputs)
    assert_close(out.metrics["kl"], torch.tensor(0.25))
    assert_close(out.loss, torch.tensor(0.5))
    out.loss.backward()
    assert_close(inputs.logprobs.grad, torch.tensor([[-1.0, 0.5], [-1.0, 0.5]]) / 2)
    assert GRPO(beta=0.0)(inputs).metrics["kl"] > 0  # reported even when unused


def test_grpo_kl_bias_correction_golden() -> None:
    # the k3 fixture above, off-policy: ρ = π_θ/π_old = 2 on token 0, 1/2 on token 1 (A = 0: KL term only)
    # on (TRL's use_bias_correction_kl): ρ·k3 = 2(1 − ln 2) and (ln 2 − 1/2)/2; loss = 2·Σ/(N·C) = 7/4 − 3/2·ln 2
    # ∂(ρ·k3)/∂log π = ρ·k3 + ρ·(1 − π_base/π) = −2 ln 2 on token 0, ln 2 / 2 on token 1 (then / N·C = 2)
    lp = [[-2.0, -1.0], [-2.0, -1.0]]
    base = [[-2.0 + LN(2), -1.0 - LN(2)]] * 2
    old = [[-2.0 - LN(2), -1.0 + LN(2)]] * 2
    inputs = make_inputs(lp, [1, 1], 2, base=base, old=old)
    out = GRPO(beta=1.0, normalizer=1.0, bias_correction_kl=True)(inputs)
    assert_close(out.loss, torch.tensor(1.75 - 1.5 * LN(2)))
    assert_close(out.metrics["kl"], torch.tensor((1.75 - 1.5 * LN(2)) / 2))  # the corrected term, as TRL logs it
    out.loss.backward()
    assert_close(inputs.logprobs.grad, torch.tensor([[-LN(2), LN(2) / 4]] * 2))
    # off (the default): plain k3, the ratio plays no part: the numbers of the on-policy fixture above
    inputs = make_inputs(lp, [1, 1], 2, base=base, old=old)
    out = GRPO(beta=1.0, normalizer=1.0)(inputs)
    assert_close(out.loss, torch.tensor(0.5))
    out.loss.backward()
    assert_close(inputs.logprobs.grad, torch.tensor([[-1.0, 0.5], [-1.0, 0.5]]) / 2)
    # on-policy (ρ = 1): the same value, and each token's gradient is k3 + 1 − π_base/π = log π_θ − log π_base
    g = torch.Generator().manual_seed(3)
    lp = (-torch.rand(4, 3, generator=g) * 3).tolist()
    base = (torch.tensor(lp) + torch.randn(4, 3, generator=g)).tolist()
    on, off = make_inputs(lp, [1, 1, 0, 0], 2, base=base), make_inputs(lp, [1, 1, 0, 0], 2, base=base)
    a = GRPO(beta=0.5, normalizer=3.0, bias_correction_kl=True)(on)
    b = GRPO(beta=0.5, normalizer=3.0)(off)
    assert_close(a.loss, b.loss)
    a.loss.backward()
    b.loss.backward()
    delta = torch.tensor(base) - torch.tensor(lp)  # [N, T] log π_base/π_θ; A = 0 in both groups
    assert_close(on.logprobs.grad, 0.5 * -delta / (4 * 3.0))  # β·(log π_θ − log π_base)/(N·C)
    assert_close(off.logprobs.grad, 0.5 * (1 - delta.exp()) / (4 * 3.0))  # β·∂k3/(N·C)


def test_grpo_kl_bias_correction_finite_at_the_edges() -> None:
    # π_old and π_base −∞ on completion tokens, π_θ far below them, NaN on padding: finite loss and gradient
    lp = [[-1e4, -1.0, math.nan], [-0.5, -60.0, -1.0]]
    old = [[-math.inf, -1.0, 0.0], [-1e4, 0.0, -1.0]]
    base = [[-1.0, -math.inf, 0.0], [-math.inf, -1.0, -1.0]]
    inputs = make_inputs(lp, [1, 0], 2, base=base, old=old, mask=[[1, 1, 0], [1, 1, 1]])
    out = GRPO(beta=0.1, bias_correction_kl=True)(inputs)
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(inputs.logprobs.grad).all()
    assert all(torch.isfinite(v) for v in out.metrics.values())


def test_grpo_first_step_equals_reinforce_with_group_mean_baseline() -> None:
    g = torch.Generator().manual_seed(1)
    lp = (-torch.rand(8, 4, generator=g) * 3).tolist()
    mask = (torch.rand(8, 4, generator=g) > 0.3).float().tolist()
    rewards = [1, 0, 0, 1, 0.5, 1, 1, 0]
    inputs = make_inputs(lp, rewards, 4, mask=mask, base=(torch.tensor(lp) - 1).tolist())  # ratio = 1
    GRPO(beta=0.0, normalizer=16.0)(inputs).loss.backward()
    r = torch.tensor(rewards).view(2, 4)
    adv = (r - r.mean(1, keepdim=True)).reshape(-1)  # A_i = r_i − group mean
    assert_close(inputs.logprobs.grad, (-adv / (8 * 16.0))[:, None] * inputs.mask)
    # same gradient as the base class's REINFORCE loss with those advantages
    ref = make_inputs(lp, rewards, 4, mask=mask)
    Objective(normalizer=16.0).loss(ref, adv)[0].backward()
    assert_close(inputs.logprobs.grad, ref.logprobs.grad)


def test_needs_base_follows_what_the_loss_reads() -> None:
    from lit_alpha.objectives import RLOO, GRPOPassAtK

    assert AlphaDPG(alpha=0.5).needs_base and Objective().needs_base
    assert not GRPO(beta=0.0).needs_base and GRPO(beta=0.1).needs_base
    assert not GRPOPassAtK().needs_base and GRPOPassAtK(beta=0.1).needs_base  # subclasses follow β
    assert not RLOO().needs_base and not RFT().needs_base and not SFT().needs_base


def test_grpo_without_base_logprobs() -> None:
    # β = 0 never reads π_base: the same loss and gradient as with base log-probs, minus the KL metrics
    g = torch.Generator().manual_seed(2)
    lp = (-torch.rand(4, 3, generator=g) * 2).tolist()
    old = (torch.tensor(lp) + 0.3 * torch.randn(4, 3, generator=g)).tolist()  # ratios ≠ 1, some clipped
    with_base = make_inputs(lp, [1, 0, 0, 1], 2, old=old, base=(torch.tensor(lp) - 1).tolist())
    without = make_inputs(lp, [1, 0, 0, 1], 2, old=old)
    without.base_logprobs = None
    a, b = GRPO(normalizer=3.0)(with_base), GRPO(normalizer=3.0)(without)
    assert_close(b.loss, a.loss)
    a.loss.backward()
    b.loss.backward()
    assert_close(without.logprobs.grad, with_base.logprobs.grad)
    assert "kl" in a.metrics and "kl_to_base" in a.metrics
    assert "kl" not in b.metrics and "kl_to_base" not in b.metrics
    assert set(a.metrics) - set(b.metrics) == {"kl", "kl_to_base"}
    without.base_logprobs = None
    with pytest.raises(ValueError, match="base_logprobs"):
        GRPO(beta=0.1)(without)
    with pytest.raises(ValueError, match="base_logprobs"):
        AlphaDPG(alpha=0.5)(without)


def test_grpo_validation() -> None:
    with pytest.raises(ValueError, match="aggregation"):
        GRPO(aggregation="mean")
    with pytest.raises(ValueError, match="beta"):
        GRPO(beta=-1.0)


# ---------------------------------------------------------------- RFT / SFT
def test_rft_and_sft_losses() -> None:
    # Σ_t log π = (−1, −2, −3, −4) (two tokens each), r = (1, 0, 1, 1/2), C = 2, N = 4
    lp = [[-0.5, -0.5], [-1.0, -1.0], [-1.5, -1.5], [-2.0, -2.0]]
    inputs = make_inputs(lp, [1, 0, 1, 0.5], 2)
    # RFT threshold 1: keep (1, 0, 1, 0): loss = (1 + 3)/(4·2) = 0.5, kept 1/2
    out = RFT(normalizer=2.0)(inputs)
    assert_close(out.loss, torch.tensor(0.5))
    assert_close(out.metrics["kept_frac"], torch.tensor(0.5))
    out.loss.backward()
    assert_close(inputs.logprobs.grad, torch.tensor([[-1.0], [0.0], [-1.0], [0.0]]).expand(4, 2) / 8)
    # threshold 0.5: keep (1, 0, 1, 1): loss = (1 + 3 + 4)/8 = 1.0, kept 3/4
    out = RFT(threshold=0.5, normalizer=2.0)(inputs)
    assert_close(out.loss, torch.tensor(1.0))
    assert_close(out.metrics["kept_frac"], torch.tensor(0.75))
    # SFT: every sequence: (1 + 2 + 3 + 4)/8 = 1.25
    assert_close(SFT(normalizer=2.0)(inputs).loss, torch.tensor(1.25))


# ---------------------------------------------------------------- property: always finite
LOGPROB = st.one_of(st.floats(-50.0, 0.0), st.sampled_from([-50.0, 0.0, -1e-9, -1e4, -1e30]))
# π_old and π_base are data: a token may be impossible under them (−∞: top-k/top-p, masked tokens,
# fp16 underflow); π_θ's own log-probs are finite on completion tokens, anything on padding
DATA_LOGPROB = st.one_of(LOGPROB, st.just(-math.inf))
PAD = st.sampled_from([0.0, -1e30, -math.inf, math.nan])
REWARD = st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0))
ALPHA = st.one_of(st.sampled_from([0.0, 1e-6, 0.5, 1 - 1e-6, 1.0]), st.floats(0.0, 1.0))


@st.composite
def objective_inputs(draw) -> ObjectiveInputs:
    groups, size, t = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 3))
    n = groups * size

    def grid(elem):
        return [[draw(elem) for _ in range(t)] for _ in range(n)]

    lp, old, base = grid(LOGPROB), grid(DATA_LOGPROB), grid(DATA_LOGPROB)
    mask = grid(st.sampled_from([0.0, 1.0]))
    pad = draw(PAD)
    lp = [[x if m else pad for x, m in zip(row, mrow)] for row, mrow in zip(lp, mask)]
    rewards = [draw(REWARD) for _ in range(n)]
    return make_inputs(lp, rewards, size, base=base, old=old, mask=mask)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs=objective_inputs(), alpha=ALPHA, beta=st.sampled_from([0.0, 0.04, 1.0]), data=st.data())
def test_property_everything_finite(inputs: ObjectiveInputs, alpha: float, beta: float, data) -> None:
    objectives = [
        AlphaDPG(alpha=alpha),
        AlphaDPG(alpha=alpha, scale="amari", clip=data.draw(st.sampled_from([1.0, 10.0]))),
        GRPO(
            beta=beta,
            bias_correction_kl=data.draw(st.booleans()),
            std_normalize=data.draw(st.booleans()),
            aggregation=data.draw(st.sampled_from(["constant", "token", "sequence"])),
        ),
        RFT(),
        SFT(),
    ]
    size = inputs.group_ids.numel() // (int(inputs.group_ids.max()) + 1)
    if size > 1:  # groups of G ≥ 1 policy rows and K = size − G π_base rows
        objectives.append(MixtureAlphaDPG(base_samples=data.draw(st.integers(1, size - 1)), alpha=alpha))
    for obj in objectives:
        inputs.logprobs.grad = None
        out = obj(inputs)
        out.loss.backward()
        assert torch.isfinite(out.loss), obj
        assert torch.isfinite(inputs.logprobs.grad).all(), obj
        for name, value in out.metrics.items():
            assert torch.isfinite(value), (obj, name)
            assert not value.requires_grad


def test_correct_is_one_definition_everywhere() -> None:
    # "correct" = reward > 0 (lit_alpha.verifiers.base.is_correct), the same for a verdict, the
    # degenerate-group counts, pass@k's c and the evaluation table: partial credit 0.5 counts, 0 does not
    from lit_alpha.analysis.evaluate import problem_row
    from lit_alpha.module import AlphaModule
    from lit_alpha.objectives import GRPOPassAtK
    from lit_alpha.verifiers.base import Verdict, is_correct

    assert is_correct(0.5) and is_correct(1.0) and not is_correct(0.0)
    assert Verdict(0.5).correct and Verdict(1.0).correct and not Verdict(0.0, "wrong").correct
    assert_close(is_correct(torch.tensor([0.0, 0.25, 1.0])), torch.tensor([False, True, True]))
    # groups (0.5, 0) and (0, 0): one group with a success, none with all
    out = GRPO()(make_inputs([[-1.0]] * 4, [0.5, 0.0, 0.0, 0.0], 2))
    assert_close(out.metrics["zero_success_frac"], torch.tensor(0.5))
    assert_close(out.metrics["all_success_frac"], torch.tensor(0.0))
    # analytic pass@k with k=1 on (0.5, 0): one correct of two, R̄ = 1/2
    adv, metrics = GRPOPassAtK(k=1, mode="analytic").advantages(make_inputs([[-1.0]] * 2, [0.5, 0.0], 2))
    assert_close(metrics["passk_expected"], torch.tensor(0.5))
    assert adv[0] > 0 > adv[1]
    row = problem_row({"id": "p"}, [0.5, 0.0, 1.0], ["a", None, "b"])
    assert row["c"] == 2 and row["distinct_correct"] == 2
    # the trainer's pass@k counts (n, c) per problem, from a batch's rewards
    batch = SimpleNamespace(group_ids=torch.tensor([0, 0, 1, 1]), num_groups=2,
                            rewards=torch.tensor([0.5, 0.0, 0.0, 1.0]), answers=["a", None, None, "b"])
    n, c, answers = AlphaModule._per_problem(batch)
    assert n.tolist() == [2, 2] and c.tolist() == [1, 1] and answers == [{"a"}, {"b"}]
