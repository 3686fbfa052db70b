"""The shipped tiny Countdown base model (``lit_alpha/assets/countdown-tiny``) and its builder."""

from __future__ import annotations

import json

import pytest
import torch
import transformers

from lit_alpha.metrics.pass_at_k import pass_at_k_per_problem
from lit_alpha.tasks.countdown import COUNTDOWN4, CountdownTask, solutions
from lit_alpha.tasks.countdown.pretrain import (
    ALPHABET,
    EMBEDDED_DIR,
    build_tokenizer,
    evaluate_guesser,
    evaluate_model,
    solution_table,
)


def pass_at_k(n: int, c: int, k: int) -> float:
    """The package's one estimator, for one problem (pretraining reports it)."""
    return float(pass_at_k_per_problem([n], [c], k)[0])



@pytest.fixture(scope="module")
def tok():
    return transformers.AutoTokenizer.from_pretrained(EMBEDDED_DIR)


@pytest.fixture(scope="module")
def model():
    m = transformers.AutoModelForCausalLM.from_pretrained(EMBEDDED_DIR, dtype=torch.float32)
    return m.eval()


@pytest.fixture(scope="module")
def task():
    return CountdownTask(**COUNTDOWN4)


def test_files_are_small_safetensors():
    files = {p.name: p.stat().st_size for p in EMBEDDED_DIR.iterdir()}
    assert "model.safetensors" in files and "tokenizer.json" in files and "training_info.json" in files
    assert not any(name.endswith(".bin") for name in files)
    assert sum(files.values()) < 8 * 2**20


def test_tokenizer_special_tokens(tok, model):
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<bos>", "<eos>", "<pad>")
    assert len({tok.bos_token_id, tok.eos_token_id, tok.pad_token_id}) == 3
    assert model.config.bos_token_id == tok.bos_token_id
    assert model.config.eos_token_id == tok.eos_token_id
    assert model.config.pad_token_id == tok.pad_token_id
    assert model.generation_config.eos_token_id == tok.eos_token_id
    assert model.generation_config.pad_token_id == tok.pad_token_id
    assert model.config.vocab_size >= len(tok)


def test_tokenizer_round_trip_and_bos(tok, task):
    prompt = task.prompt(task.problems("val")[0])
    ids = tok(prompt)["input_ids"]
    assert ids[0] == tok.bos_token_id
    assert tok.eos_token_id not in ids  # no eos appended
    assert len(ids) == len(prompt) + 1  # char level
    assert tok.decode(ids, skip_special_tokens=True) == prompt
    plain = tok("(12-3)*4/6", add_special_tokens=False)["input_ids"]
    assert tok.bos_token_id not in plain
    assert tok.decode(plain) == "(12-3)*4/6"
    for c in ALPHABET:
        assert tok.convert_ids_to_tokens(tok(c, add_special_tokens=False)["input_ids"]) == [c]


def test_builder_matches_shipped_tokenizer(tok):
    fresh = build_tokenizer()
    assert fresh.get_vocab() == tok.get_vocab()
    text = "3 7 9 12 | 59 = 7*9-12/3"
    assert fresh(text)["input_ids"] == tok(text)["input_ids"]


def _check_completion(tok, new_ids: torch.Tensor) -> str:
    ids = new_ids.tolist()
    assert tok.eos_token_id in ids, "no <eos> within 32 new tokens"
    ids = ids[: ids.index(tok.eos_token_id) + 1]
    text = tok.decode(ids, skip_special_tokens=True)
    assert text and set(text) <= set(ALPHABET)
    return text


def test_generation_ends_with_eos_over_alphabet(tok, model, task):
    record = task.problems("val")[0]
    enc = tok(task.prompt(record), return_tensors="pt")
    width = enc["input_ids"].shape[1]
    with torch.no_grad():
        greedy = model.generate(**enc, do_sample=False, max_new_tokens=32)
        torch.manual_seed(0)
        sampled = model.generate(
            **enc, do_sample=True, temperature=1.0, top_p=1.0, top_k=0, num_return_sequences=8, max_new_tokens=32
        )
    _check_completion(tok, greedy[0, width:])
    for row in sampled:
        _check_completion(tok, row[width:])


def test_training_info_meets_targets():
    info = json.loads((EMBEDDED_DIR / "training_info.json").read_text())
    m, g = info["val_model"], info["val_guesser"]
    assert 0.05 <= m["pass@1"] <= 0.40
    assert m["pass@64"] >= 2 * m["pass@1"]
    assert m["pass@1"] > 2 * g["pass@1"] and m["pass@64"] > g["pass@64"]
    assert info["args"]["max_number"] == 12 and info["args"]["n_numbers"] == 4


def test_evaluate_runs_on_a_few_problems(tok, model, task):
    records = task.problems("val")[:3]
    result = evaluate_model(model, tok, task, records, n=8, batch_prompts=3, seed=0)
    assert set(result) == {"pass@1", "pass@8", "eos_rate"}
    assert 0.0 <= result["pass@1"] <= result["pass@8"] <= 1.0
    guess = evaluate_guesser(records, draws=50, seed=0)
    assert 0.0 <= guess["pass@1"] <= guess["pass@8"] <= guess["pass@64"] <= 1.0


def test_solution_table_equals_solutions():
    table = solution_table([(2, 3, 5, 12)], 1, 99)[(2, 3, 5, 12)]
    for target in (1, 7, 30, 60, 97):
        assert table.get(target, []) == solutions((12, 5, 3, 2), target)


def test_pass_at_k():
    assert pass_at_k(64, 0, 1) == 0.0 and pass_at_k(64, 64, 64) == 1.0
    assert pass_at_k(64, 16, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)
