"""pass@k against brute-force enumeration of k-subsets; the torchmetric's averaging."""

import itertools
import math

import pytest
import torch

from lit_alpha.metrics import DistinctCorrect, PassAtK, default_ks, pass_at_k


def brute_force(n: int, c: int, k: int) -> float:
    """Fraction of the k-subsets of n samples (c of them correct) that contain a correct one."""
    samples = [1] * c + [0] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 5, 7])
def test_pass_at_k_matches_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            got = pass_at_k(torch.tensor([n]), torch.tensor([c]), k).item()
            assert got == pytest.approx(brute_force(n, c, k), abs=1e-12), (n, c, k)


def test_pass_at_k_large_n_is_stable():
    # n=256, c=1: pass@k = k/n exactly
    for k in [1, 16, 256]:
        assert pass_at_k(torch.tensor([256]), torch.tensor([1]), k).item() == pytest.approx(k / 256)
    assert pass_at_k(torch.tensor([256]), torch.tensor([0]), 256).item() == 0.0


def test_pass_at_k_needs_enough_samples():
    with pytest.raises(ValueError, match="pass@8"):
        pass_at_k(torch.tensor([4]), torch.tensor([1]), 8)


def test_metric_averages_over_problems_and_keeps_counts():
    m = PassAtK(default_ks(4))
    m.update(torch.tensor([4, 4]), torch.tensor([0, 2]))
    m.update(torch.tensor([4]), torch.tensor([4]))
    out = m.compute()
    assert sorted(out) == [1, 2, 4]
    # per problem pass@1 = c/n: (0 + 0.5 + 1) / 3
    assert out[1].item() == pytest.approx(0.5)
    # pass@2: 0, 1 - C(2,2)/C(4,2) = 5/6, 1
    assert out[2].item() == pytest.approx((0 + 5 / 6 + 1) / 3)
    n, c = m.counts()
    assert n.tolist() == [4, 4, 4] and c.tolist() == [0, 2, 4]


def test_default_ks():
    assert default_ks(64) == [1, 2, 4, 8, 16, 32, 64]
    assert default_ks(6) == [1, 2, 4, 6]
    assert default_ks(1) == [1]


def test_distinct_correct():
    d = DistinctCorrect()
    d.update([{"a", "b"}, set()])
    d.update([{"c"}])
    assert d.compute().item() == pytest.approx(1.0)
    assert not math.isnan(DistinctCorrect().compute().item())
