"""Evaluation metrics: unbiased pass@k (precision = pass@1, coverage = pass@k), diversity."""

from lit_alpha.metrics.pass_at_k import DistinctCorrect, PassAtK, default_ks, pass_at_k

__all__ = ["PassAtK", "DistinctCorrect", "pass_at_k", "default_ks"]
