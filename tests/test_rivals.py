"""Golden values (worked out by hand in the comments) for the rival objectives, α schedules and
non-binary α-DPG targets; chunked entropy; a finiteness property over every new objective."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from lit_alpha.batch import ObjectiveInputs
from lit_alpha.objectives import (
    GRPO,
    RLOO,
    AlphaDPG,
    Constant,
    Cosine,
    GRPODifferentialSmoothing,
    GRPOEntropyRatioClip,
    GRPOPassAtK,
    GRPOUnlikely,
    Linear,
    Step,
)
from lit_alpha.objectives.passk import passk_advantage_table
from lit_alpha.scoring.logprobs import entropy_from_logits

LN = math.log


def make_inputs(logprobs, rewards, group_size, base=None, old=None, mask=None, entropy=None,
                old_entropy=None, step=0, max_steps=0) -> ObjectiveInputs:
    lp = torch.tensor(logprobs, dtype=torch.float32, requires_grad=True)  # [N, T]
    n = lp.shape[0]

    def t(x):
        return None if x is None else torch.tensor(x, dtype=torch.float32)

    return ObjectiveInputs(
        logprobs=lp,
        old_logprobs=lp.detach().clone() if old is None else t(old),
        base_logprobs=lp.detach().clone() if base is None else t(base),
        mask=torch.ones_like(lp.detach()) if mask is None else t(mask),
        rewards=t(rewards),
        group_ids=torch.arange(n // group_size).repeat_interleave(group_size),
        entropy=t(entropy),
        old_entropy=t(old_entropy),
        step=step,
        max_steps=max_steps,
    )


# ---------------------------------------------------------------- RLOO
def test_rloo_golden() -> None:
    # group 0 r = (1, 0, 0, 1): A_i = r_i − mean of the other three
    #   A0 = 1 − (0+0+1)/3 = 2/3, A1 = 0 − 2/3, A2 = −2/3, A3 = 2/3
    # group 1 r = (1, 1, 1, 0): A = 1 − 2/3 = 1/3 (×3), A3 = 0 − 1 = −1
    lp = [[-1.0, -1.0]] * 8  # Σ_t log π = −2 for every sample
    inputs = make_inputs(lp, [1, 0, 0, 1, 1, 1, 1, 0], 4)
    adv, _ = RLOO().advantages(inputs)
    assert_close(adv, torch.tensor([2 / 3, -2 / 3, -2 / 3, 2 / 3, 1 / 3, 1 / 3, 1 / 3, -1.0]))
    assert_close(RLOO()(inputs).metrics["all_success_frac"], torch.tensor(0.0))  # added by Objective.__call__
    # loss = mean_i(−A_i·(−2))/C = 2·mean(A)/C = 2·(0 + 0)/8/C = 0; gradient −A_i/(N·C) per token
    out = RLOO(normalizer=2.0)(inputs)
    assert_close(out.loss, torch.tensor(0.0))
    out.loss.backward()
    assert_close(inputs.logprobs.grad, (-adv / 16)[:, None].expand(8, 2))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rloo_is_alpha_dpg_at_alpha_one(seed: int) -> None:
    # α=1 (released scale): R = v − 1 for binary v; the leave-one-out baseline is shift invariant
    g = torch.Generator().manual_seed(seed)
    lp = -torch.rand(12, 3, generator=g) * 4
    base = lp - torch.randn(12, 3, generator=g)
    rewards = (torch.rand(12, generator=g) > 0.5).float()
    inputs = make_inputs(lp.tolist(), rewards.tolist(), 4, base=base.tolist())
    rloo, _ = RLOO().advantages(inputs)
    dpg, _ = AlphaDPG(alpha=1.0).advantages(inputs)
    assert_close(rloo, dpg)
    near, _ = AlphaDPG(alpha=1 - 1e-7).advantages(inputs)  # and the limit from below
    assert_close(rloo, near, atol=1e-4, rtol=0)


# ---------------------------------------------------------------- GRPO-Pass@k
def test_passk_analytic_table_by_hand() -> None:
    # N = 4, k = 2, C(4,2) = 6
    # N_neg=2: R̄ = 1 − C(2,2)/6 = 5/6, σ = √(5/6·1/6) = √5/6
    #          A⁺ = (1/6)/(√5/6) = 1/√5;  A⁻ = (1/6 − C(1,1)/C(3,1))/σ = (1/6 − 1/3)/(√5/6) = −1/√5
    # N_neg=3: R̄ = 1 − C(3,2)/6 = 1/2, σ = 1/2;  A⁺ = (1/2)/(1/2) = 1;  A⁻ = (1/2 − C(2,1)/C(3,1))/(1/2) = −1/3
    # N_neg ∈ {0, 1}: every pair holds a correct sample, R̄ = 1, σ = 0 → 0;  N_neg = 4: R̄ = 0 → 0
    mean, pos, neg = passk_advantage_table(4, 2)
    s5 = 1 / math.sqrt(5)
    assert mean == pytest.approx([1.0, 1.0, 5 / 6, 0.5, 0.0])
    assert pos == pytest.approx([0.0, 0.0, s5, 1.0, 0.0])
    assert neg == pytest.approx([0.0, 0.0, -s5, -1 / 3, 0.0])
    # unnormalised: A⁺ = 1 − R̄, A⁻ = 1 − R̄ − C(N_neg−1,k−1)/C(N−1,k−1)
    _, pos_u, neg_u = passk_advantage_table(4, 2, normalize=False)
    assert pos_u[3] == pytest.approx(0.5) and neg_u[3] == pytest.approx(-1 / 6)


def test_passk_analytic_advantages_and_k1_is_grpo_with_population_std() -> None:
    rewards = [1, 0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0]
    inputs = make_inputs([[-1.0]] * 16, rewards, 4)
    adv, metrics = GRPOPassAtK(k=2, mode="analytic").advantages(inputs)
    s5 = 1 / math.sqrt(5)
    expected = [1, -1 / 3, -1 / 3, -1 / 3, s5, s5, -s5, -s5, 0, 0, 0, 0, 0, 0, 0, 0]
    assert_close(adv, torch.tensor(expected))
    # mean of R̄ over groups = (1/2 + 5/6 + 1 + 0)/4 = 7/12: the unbiased pass@2 of the batch
    assert_close(metrics["passk_expected"], torch.tensor(7 / 12))
    # k = 1: R̄ = p, σ = √(p(1−p)) → A⁺ = (1−p)/σ, A⁻ = −p/σ; group 0: p = 1/4, σ = √3/4
    adv1, _ = GRPOPassAtK(k=1, mode="analytic").advantages(inputs)
    assert_close(adv1[:4], torch.tensor([3 / math.sqrt(3), -1 / math.sqrt(3), -1 / math.sqrt(3), -1 / math.sqrt(3)]))
    with pytest.raises(ValueError, match="exceeds the group size"):
        GRPOPassAtK(k=5, mode="analytic").advantages(inputs)


def test_passk_best_only_the_best_sample_moves() -> None:
    # group 0 r = (0.2, 0.9, 0.5, 0.1): best = sample 1, gap r_(1) − r_(2) = 0.9 − 0.5 = 0.4;
    #   unbiased std: mean 0.425, Σ dev² = 0.3875, /3 → std 0.359398 → A = 0.4/(0.359398 + 1e-4) = 1.112664
    # group 1 r = (0.2, 0.9, 0.5, 0.9): tie at the top → gap 0 → all zero
    # group 2 r = (1, 0, 0, 0): gap 1, std = √((0.75² + 3·0.25²)/3) = 0.5 → A = 1/0.5001
    # group 3 r = (1, 1, 0, 0): two correct → gap 0 → nobody moves
    rewards = [0.2, 0.9, 0.5, 0.1, 0.2, 0.9, 0.5, 0.9, 1, 0, 0, 0, 1, 1, 0, 0]
    inputs = make_inputs([[-1.0]] * 16, rewards, 4)
    adv, metrics = GRPOPassAtK(mode="best").advantages(inputs)
    expected = torch.zeros(16)
    expected[1], expected[8] = 1.112664, 1 / 0.5001
    assert_close(adv, expected)
    assert_close(metrics["passk_active_frac"], torch.tensor(0.5))
    raw, _ = GRPOPassAtK(mode="best", std_normalize=False).advantages(inputs)
    assert_close(raw[[1, 8]], torch.tensor([0.4, 1.0]))
    assert raw.count_nonzero() == 2
    # the GRPO surrogate at ratio 1: ∂L/∂log π(y_{i,t}) = −A_i/(N·C)
    GRPOPassAtK(mode="best", normalizer=1.0)(inputs).loss.backward()
    assert_close(inputs.logprobs.grad, (-adv / 16)[:, None])


# ---------------------------------------------------------------- unlikeliness reward
def unlikely_inputs(rewards=(1, 1, 0, 1)) -> ObjectiveInputs:
    # per-token log π_old constant within a row → mean ℓ = (−1, −3, −5, −2); the current policy's
    # log-probs differ from π_old on purpose: ranking must use π_old
    old = [[-1.0, -1.0], [-3.0, -3.0], [-5.0, -5.0], [-2.0, -2.0]]
    lp = [[-4.0, -4.0], [-0.5, -0.5], [-1.0, -1.0], [-3.0, -3.0]]
    return make_inputs(lp, list(rewards), 4, old=old)


def test_unlikeliness_ranks_by_likelihood_among_correct() -> None:
    # correct: 0 (ℓ −1), 1 (ℓ −3), 3 (ℓ −2); ascending ℓ among them: 1 → rank 0, 3 → 1, 0 → 2
    # scale 1 − 0.25·rank/4: (0.875, 1, ·, 0.9375); r̃ = (0.875, 1.0, 0, 0.9375)
    # GRPO (unbiased std): mean 0.703125, std 0.471520 → A = (r̃ − mean)/(std + 1e-4)
    obj = GRPOUnlikely()
    inputs = unlikely_inputs()
    assert obj.ranks(inputs)[[0, 1, 3]].tolist() == [2, 0, 1]
    shaped, metrics = obj.shaped_rewards(inputs)
    assert_close(shaped, torch.tensor([0.875, 1.0, 0.0, 0.9375]))
    assert_close(metrics["unlikely_scale_mean"], torch.tensor((0.875 + 1 + 0.9375) / 3))
    adv, _ = obj.advantages(inputs)
    assert_close(adv, torch.tensor([0.364436, 0.629480, -1.490873, 0.496958]), atol=1e-5, rtol=0)
    # the released code ranks all G samples: 2 (−5) → 0, 1 (−3) → 1, 3 (−2) → 2, 0 (−1) → 3
    # scales (0.8125, 0.9375, ·, 0.875)
    shaped_all, _ = GRPOUnlikely(rank_over="all").shaped_rewards(inputs)
    assert_close(shaped_all, torch.tensor([0.8125, 0.9375, 0.0, 0.875]))
    # λ = 0: plain GRPO with std normalisation
    assert_close(GRPOUnlikely(rank_penalty=0.0).advantages(inputs)[0], GRPO(std_normalize=True).advantages(inputs)[0])


def test_unlikeliness_uses_likelihood_not_reward() -> None:
    # r = (0.5, 1.0), ℓ = (−1, −2): the least likely is sample 1 (rank 0, scale 1), sample 0 has
    # rank 1 → scale 1 − 0.25·1/2 = 0.875 → r̃ = (0.4375, 1.0). Ranking by reward would swap them.
    inputs = make_inputs([[-1.0], [-2.0]], [0.5, 1.0], 2)
    shaped, _ = GRPOUnlikely().shaped_rewards(inputs)
    assert_close(shaped, torch.tensor([0.4375, 1.0]))
    # permuting rewards among correct samples never changes the scales (they follow ℓ only)
    a, _ = GRPOUnlikely().shaped_rewards(unlikely_inputs((1, 0.5, 0, 0.25)))
    b, _ = GRPOUnlikely().shaped_rewards(unlikely_inputs((0.25, 1, 0, 0.5)))
    assert_close(a / torch.tensor([1, 0.5, 1, 0.25]), b / torch.tensor([0.25, 1, 1, 0.5]))


def test_unlikeliness_mean_vs_sum_normalisation() -> None:
    # A: one token of −2 (mean −2, sum −2); B: four tokens of −1 (mean −1, sum −4)
    # mean: A is less likely → A rank 0, B rank 1 → r̃ = (1, 0.875); sum: B is → r̃ = (0.875, 1)
    old = [[-2.0, 0.0, 0.0, 0.0], [-1.0, -1.0, -1.0, -1.0]]
    mask = [[1, 0, 0, 0], [1, 1, 1, 1]]
    inputs = make_inputs(old, [1, 1], 2, old=old, mask=mask)
    assert_close(GRPOUnlikely().shaped_rewards(inputs)[0], torch.tensor([1.0, 0.875]))
    assert_close(GRPOUnlikely(logprob_norm="sum").shaped_rewards(inputs)[0], torch.tensor([0.875, 1.0]))


# ---------------------------------------------------------------- differential smoothing
def test_differential_smoothing_signs_and_values() -> None:
    # group 0 r = (1, 0), mean ℓ = (−2, −4): GRPO A = (0.5, −0.5)
    #   correct: A − γ_p·ℓ = 0.5 + 0.1·2 = 0.7;  incorrect: A + γ_n·ℓ = −0.5 − 0.05·4 = −0.7
    # group 1 r = (0, 0), ℓ = (−1, −3): A = 0 → (−0.05, −0.15): less likely wrong answers pushed harder
    # group 2 r = (1, 1), ℓ = (−1, −3): A = 0 → (0.1, 0.3): less likely right answers rewarded more
    old = [[-2.0, -2.0], [-4.0, -4.0], [-1.0, -1.0], [-3.0, -3.0], [-1.0, -1.0], [-3.0, -3.0]]
    inputs = make_inputs(old, [1, 0, 0, 0, 1, 1], 2, old=old)
    obj = GRPODifferentialSmoothing(gamma_p=0.1, gamma_n=0.05)
    adv, metrics = obj.advantages(inputs)
    assert_close(adv, torch.tensor([0.7, -0.7, -0.05, -0.15, 0.1, 0.3]))
    assert_close(metrics["smoothing_term_mean"], torch.tensor((0.2 - 0.2 - 0.05 - 0.15 + 0.1 + 0.3) / 6))
    # sum: ℓ doubles (two tokens) → group 0: 0.5 + 0.1·4 = 0.9, −0.5 − 0.05·8 = −0.9
    adv_sum, _ = GRPODifferentialSmoothing(gamma_p=0.1, gamma_n=0.05, logprob_norm="sum").advantages(inputs)
    assert_close(adv_sum[:2], torch.tensor([0.9, -0.9]))
    # γ = 0 is GRPO; the loss is GRPO's surrogate on the smoothed advantages
    assert_close(GRPODifferentialSmoothing(0.0, 0.0).advantages(inputs)[0], GRPO().advantages(inputs)[0])
    obj(inputs).loss.backward()
    assert_close(inputs.logprobs.grad, (-adv / (6 * 1024.0))[:, None].expand(6, 2))
    with pytest.raises(ValueError, match="gamma"):
        GRPODifferentialSmoothing(gamma_p=-0.1)


# ---------------------------------------------------------------- entropy-ratio clipping
def erc_inputs() -> ObjectiveInputs:
    # one group r = (1, 0) → A = (½, −½); ratio ρ = 1 everywhere (lp = old)
    # entropy ratios H/H_old: sample 0 (1.0, 1.04, 1.06), sample 1 (0.96, 0.94, pad)
    # band (0.95, 1.05): keep (1, 1, 0) and (1, 0, ·) → 2 of 5 completion tokens clipped
    old_h = [[2.0, 1.0, 1.0], [1.0, 2.0, 3.0]]
    new_h = [[2.0, 1.04, 1.06], [0.96, 1.88, 0.0]]
    lp = [[-1.0, -1.0, -1.0], [-2.0, -2.0, -2.0]]
    return make_inputs(lp, [1, 0], 2, mask=[[1, 1, 1], [1, 1, 0]], entropy=new_h, old_entropy=old_h)


def test_entropy_ratio_clipping_masks_hand_made_entropies() -> None:
    obj = GRPOEntropyRatioClip(normalizer=1.0)
    assert obj.needs_entropy and not GRPO.needs_entropy
    inputs = erc_inputs()
    out = obj(inputs)
    assert_close(out.metrics["entropy_ratio_clip_frac"], torch.tensor(0.4))
    assert_close(out.metrics["clip_frac"], torch.tensor(0.0))  # the probability ratio is 1: no PPO clip
    out.loss.backward()
    # kept tokens get −A/(N·C) = ∓½/2; gated tokens and padding get 0
    assert_close(inputs.logprobs.grad, torch.tensor([[-0.25, -0.25, 0.0], [0.25, 0.0, 0.0]]))
    # wider band: nothing gated → plain GRPO
    wide = GRPOEntropyRatioClip(erc_low=0.5, erc_high=0.5, normalizer=1.0)
    ref = erc_inputs()
    assert_close(wide(erc_inputs()).loss, GRPO(normalizer=1.0)(ref).loss)


def test_entropy_ratio_clipping_needs_entropies() -> None:
    inputs = make_inputs([[-1.0], [-1.0]], [1, 0], 2)
    with pytest.raises(ValueError, match="entropy"):
        GRPOEntropyRatioClip()(inputs)


def test_chunked_entropy_equals_unchunked() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 11, generator=g) * 4  # [N, L, V]
    direct = -(logits.softmax(-1) * logits.log_softmax(-1)).sum(-1)  # [N, L]
    for chunk in (1, 4, 5, 21, 1000):
        assert_close(entropy_from_logits(logits, chunk), direct, atol=1e-5, rtol=1e-5)
    # uniform logits: H = log V; one-hot-ish: H ≈ 0
    assert_close(entropy_from_logits(torch.zeros(2, 11)), torch.full((2,), LN(11)))
    assert entropy_from_logits(torch.tensor([[100.0, 0.0, 0.0]])).item() < 1e-30
    assert not entropy_from_logits(logits.requires_grad_()).requires_grad


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU to measure peak memory")
def test_chunked_entropy_peak_memory_cuda() -> None:
    # beyond the logits and the [M] outputs, at most ~one [chunk, V] float32 tensor may be alive
    m, v, chunk = 4096, 50_000, 256
    logits = torch.randn(m, v, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    ent = entropy_from_logits(logits, chunk)
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - before
    assert extra < 1.5 * chunk * v * 4 + 8 * 2**20, extra / (chunk * v * 4)
    assert_close(ent[:8], -(logits[:8].softmax(-1) * logits[:8].log_softmax(-1)).sum(-1), atol=1e-3, rtol=1e-4)


# ---------------------------------------------------------------- α schedules
def test_schedules_values_at_chosen_steps() -> None:
    lin = Linear(0.0, 0.9)  # over the whole run
    assert [lin(s, 200) for s in (0, 100, 200, 300)] == pytest.approx([0.0, 0.45, 0.9, 0.9])
    assert lin(50, 0) == 0.0  # unknown length: stay at start
    ramp = Linear(0.2, 1.0, steps=10, begin=5)  # 0.2 until step 5, then +0.08 per step
    assert [ramp(s) for s in (0, 5, 10, 15, 99)] == pytest.approx([0.2, 0.2, 0.6, 1.0, 1.0])
    cos = Cosine(0.0, 1.0, steps=100)  # (1 − cos(π u))/2: u=¼ → (1 − √2/2)/2 = 0.146447
    assert [cos(s) for s in (0, 25, 50, 100)] == pytest.approx([0.0, 0.146447, 0.5, 1.0], abs=1e-6)
    down = Cosine(0.9, 0.1, steps=None)
    assert down(100, 200) == pytest.approx(0.5)
    step = Step([0.0, 0.5, 0.9], [50, 100])
    assert [step(s) for s in (0, 49, 50, 99, 100, 500)] == [0.0, 0.0, 0.5, 0.5, 0.9, 0.9]
    assert Constant(0.3)(7, 10) == 0.3
    assert step.bounds() == (0.0, 0.9) and down.bounds() == (0.1, 0.9)
    with pytest.raises(ValueError):
        Step([0.0, 1.0], [10, 20])
    with pytest.raises(ValueError):
        Step([0.0, 1.0, 2.0], [20, 10])
    with pytest.raises(ValueError):
        Linear(0.0, 1.0, steps=0)


def test_alpha_dpg_follows_its_schedule() -> None:
    # Linear 0 → 1 over 100 steps: at step 50 it must equal AlphaDPG(alpha=0.5), and log alpha = 0.5
    g = torch.Generator().manual_seed(3)
    lp = -torch.rand(8, 2, generator=g) * 3
    base = lp - torch.randn(8, 2, generator=g)
    rewards = [1, 0, 1, 1, 0, 0, 1, 0]
    obj = AlphaDPG(alpha=Linear(0.0, 1.0, steps=100))
    for step, alpha in [(0, 0.0), (50, 0.5), (100, 1.0), (150, 1.0)]:
        inputs = make_inputs(lp.tolist(), rewards, 4, base=base.tolist(), step=step, max_steps=200)
        out = obj(inputs)
        assert_close(out.metrics["alpha"], torch.tensor(alpha))
        assert_close(out.loss, AlphaDPG(alpha=alpha)(inputs).loss)
    const = AlphaDPG(alpha=0.25)(make_inputs(lp.tolist(), rewards, 4, base=base.tolist()))
    assert_close(const.metrics["alpha"], torch.tensor(0.25))
    with pytest.raises(ValueError, match="alpha"):
        AlphaDPG(alpha=Linear(0.0, 1.5))


# ---------------------------------------------------------------- non-binary rewards in α-DPG
def test_alpha_dpg_non_binary_target_golden() -> None:
    # one group of 3: v = (1/4, 1, 0), w = π_base/π = (2, 1, 1)
    # ẑ = mean(v·w) = (1/2 + 1 + 0)/3 = 1/2;  p/π = v·w/ẑ = (1, 2, 0)
    # α=0: R = p/π − 1 = (0, 1, −1);  LOO A = (0 − 0/2, 1 + 1/2, −1 − 1/2) = (0, 1.5, −1.5)
    # α=½: R = (0, √2 − 1, −1);  A = (0.292893, 0.914214, −1.207107)
    inputs = make_inputs([[-1.0], [-2.0], [-3.0]], [0.25, 1.0, 0.0], 3, base=[[-1.0 + LN(2)], [-2.0], [-3.0]])
    r, _, log_z = AlphaDPG(alpha=0.0).pseudo_rewards(inputs)
    assert_close(log_z.exp().float(), torch.tensor([0.5]))
    assert_close(r.float(), torch.tensor([0.0, 1.0, -1.0]))
    assert_close(AlphaDPG(alpha=0.0).advantages(inputs)[0], torch.tensor([0.0, 1.5, -1.5]))
    assert_close(AlphaDPG(alpha=0.5).advantages(inputs)[0], torch.tensor([0.292893, 0.914214, -1.207107]))


def test_alpha_dpg_non_binary_moves_policy_to_reward_weighted_base() -> None:
    # K = 4 one-token sequences, π_base = (0.4, 0.3, 0.2, 0.1), r = (1, 1/2, 1/4, 0):
    # p ∝ π_base·r = (0.4, 0.15, 0.05, 0)/0.6. α-DPG (α=½) with SGD on the logits must approach p.
    pi_base = torch.tensor([0.4, 0.3, 0.2, 0.1])
    r = torch.tensor([1.0, 0.5, 0.25, 0.0])
    p = pi_base * r / (pi_base * r).sum()
    gen = torch.Generator().manual_seed(0)
    theta = pi_base.log().clone().requires_grad_(True)
    opt = torch.optim.SGD([theta], lr=1.0)
    groups, size = 16, 4
    obj = AlphaDPG(alpha=0.5, normalizer=1.0)

    def kl_p_pi() -> float:
        pi = theta.detach().softmax(0)
        s = p > 0
        return float((p[s] * (p[s] / pi[s]).log()).sum())

    start = kl_p_pi()  # KL(p‖π_base) ≈ 0.222
    for _ in range(150):
        y = torch.multinomial(theta.detach().softmax(0), groups * size, replacement=True, generator=gen)
        lp = theta.log_softmax(0)[y][:, None]  # [N, 1]
        inputs = ObjectiveInputs(
            logprobs=lp, old_logprobs=lp.detach(), base_logprobs=pi_base.log()[y][:, None],
            mask=torch.ones_like(lp.detach()), rewards=r[y],
            group_ids=torch.arange(groups).repeat_interleave(size),
        )
        opt.zero_grad()
        obj(inputs).loss.backward()
        opt.step()
    assert kl_p_pi() < start / 5
    assert theta.softmax(0)[3] < 0.02  # the zero-reward sequence is filtered out


# ---------------------------------------------------------------- property: always finite
LOGPROB = st.one_of(st.floats(-50.0, 0.0), st.sampled_from([-50.0, 0.0, -1e-9, -1e4, -1e30]))
DATA_LOGPROB = st.one_of(LOGPROB, st.just(-math.inf))  # π_old, π_base: −∞ possible (see test_objectives)
PAD = st.sampled_from([0.0, -1e30, -math.inf, math.nan])  # π_θ on padding: anything
REWARD = st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0))
ENTROPY = st.one_of(st.floats(0.0, 20.0), st.sampled_from([0.0, 1e-12, 1e-3]))


@st.composite
def rival_inputs(draw) -> ObjectiveInputs:
    groups, size, t = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 3))
    n = groups * size

    def grid(elem):
        return [[draw(elem) for _ in range(t)] for _ in range(n)]

    mask, pad = grid(st.sampled_from([0.0, 1.0])), draw(PAD)
    lp = [[x if m else pad for x, m in zip(row, mrow)] for row, mrow in zip(grid(LOGPROB), mask)]
    return make_inputs(
        lp, [draw(REWARD) for _ in range(n)], size, base=grid(DATA_LOGPROB), old=grid(DATA_LOGPROB),
        mask=mask, entropy=grid(ENTROPY), old_entropy=grid(ENTROPY),
        step=draw(st.integers(0, 300)), max_steps=draw(st.sampled_from([0, 1, 200])),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs=rival_inputs(), data=st.data())
def test_property_rivals_finite(inputs: ObjectiveInputs, data) -> None:
    size = int(inputs.group_ids.numel() // (inputs.group_ids.max() + 1))
    norm = data.draw(st.sampled_from(["mean", "sum"]))
    aggregation = data.draw(st.sampled_from(["constant", "token", "sequence"]))
    objectives = [
        RLOO(),
        GRPOPassAtK(mode="best", std_normalize=data.draw(st.booleans()), aggregation=aggregation),
        GRPOPassAtK(k=data.draw(st.integers(1, size)), mode="analytic", std_normalize=data.draw(st.booleans())),
        GRPOUnlikely(rank_over=data.draw(st.sampled_from(["correct", "all"])), logprob_norm=norm),
        GRPODifferentialSmoothing(logprob_norm=norm, std_normalize=data.draw(st.booleans()), beta=0.04),
        GRPOEntropyRatioClip(aggregation=aggregation),
        AlphaDPG(alpha=data.draw(st.sampled_from([Linear(0.0, 1.0), Cosine(1.0, 0.0, steps=50),
                                                  Step([0.0, 0.5, 1.0], [1, 100])]))),
    ]
    for obj in objectives:
        inputs.logprobs.grad = None
        out = obj(inputs)
        out.loss.backward()
        assert torch.isfinite(out.loss), obj
        assert torch.isfinite(inputs.logprobs.grad).all(), obj
        for name, value in out.metrics.items():
            assert torch.isfinite(value), (obj, name)
            assert not value.requires_grad


VARIANTS = [(GRPOPassAtK, "k", True), (GRPOUnlikely, "rank_penalty", True),
            (GRPODifferentialSmoothing, "gamma_p", False), (GRPOEntropyRatioClip, "erc_low", False)]
GRPO_FIELDS = {"beta", "std_normalize", "clip_eps", "clip_eps_high", "aggregation", "normalizer"}


@pytest.mark.parametrize("cls,own,std", VARIANTS, ids=[v[0].__name__ for v in VARIANTS])
def test_variant_forwards_grpo_arguments_and_the_cli_sees_them(cls, own: str, std: bool) -> None:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(cls, "obj")
    defaults = vars(parser.get_defaults().obj)
    assert GRPO_FIELDS | {own} <= set(defaults)  # every GRPO field, through **grpo
    assert defaults["std_normalize"] is std and defaults["beta"] == 0.0 and defaults["normalizer"] == 1024.0
    assert "weight of the per-token k3" in parser.format_help()  # with GRPO's docstring
    obj = parser.instantiate_classes(parser.parse_args(["--obj.beta", "0.1", "--obj.normalizer", "8"])).obj
    assert isinstance(obj, cls) and obj.beta == 0.1 and obj.normalizer == 8.0 and obj.needs_base
    assert obj.std_normalize is std and obj.clip_eps == 0.2 and obj.aggregation == "constant"
    with pytest.raises(TypeError, match="nope"):
        cls(nope=1)
    with pytest.raises(ValueError, match="aggregation"):
        cls(aggregation="max")  # GRPO's own validation still runs
