"""Shared fixtures: a tiny *random* Llama with the embedded char tokenizer, and a temp MLflow cwd."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
TINY_TASK = ("--model.model", "countdown-tiny", "--data.task", "lit_alpha.tasks.CountdownTask",
             "--data.task.init_args.n_numbers", "4",
             "--data.task.init_args.max_number", "12", "--data.task.init_args.min_target", "1",
             "--data.task.init_args.max_target", "99", "--data.max_new_tokens", "32")
"""The first benchmark (Countdown-4 with countdown-tiny, 12% pass@1) over the shipped configs, whose task is
the strategy benchmark: tests that need Countdown's correct samples in a 2-step run (weights that move,
groups with signal) use it."""
COUNTDOWN5 = ("--config", str(REPO / "configs/countdown5/task.yaml"))
"""Countdown-5 with countdown5-tiny over a shipped method config (a second ``--config``)."""


def save_random_model(out: Path) -> Path:
    """A 2-layer random Llama sharing the embedded model's tokenizer (fast, no training), saved to
    ``out`` (also the model of ``scripts/golden.py``'s Lean and math configs)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from lit_alpha.models import resolve_model_path

    tok = AutoTokenizer.from_pretrained(resolve_model_path("countdown-tiny"))
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def random_model_dir(tmp_path_factory) -> Path:
    """:func:`save_random_model` once per test session."""
    return save_random_model(tmp_path_factory.mktemp("random_model"))


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    """Run in an empty directory (the default MLflow store ``mlruns/`` lands there)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def store_client():
    """An MlflowClient on ``./mlruns/mlflow.db`` of the *current* directory.

    The URI is absolute on purpose: MLflow caches stores by URI string, so a relative URI would keep
    pointing at the first test's database after a chdir.
    """
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{Path('mlruns/mlflow.db').resolve()}")
