"""MathAnswerVerifier (extraction, normalisation, exact equivalence, hostile input) and MathTask (JSONL)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from lit_alpha.errors import UserError
from lit_alpha.tasks.math import MathTask, reference_answer
from lit_alpha.verifiers.math_answer import MathAnswerVerifier, canonical_answer, extract, extract_boxed

DATA = Path(__file__).parent / "data"
V = MathAnswerVerifier()


def boxed(gold: object, answer: str, verifier: MathAnswerVerifier = V):
    return verifier.verify({"id": "p", "answer": gold}, f"Reasoning... so the answer is \\boxed{{{answer}}}.")


@pytest.mark.parametrize("gold, answer", [
    ("1/2", "0.5"), ("1/2", "\\frac{1}{2}"), ("1/2", "\\dfrac{1}{2}"), ("1/2", "\\frac12"), ("0.5", "2/4"),
    ("1000", "1,000"), ("1000", "1{,}000"), ("1,234,567.5", "1234567.5"), ("-3", "\u22123"), ("-3", "- 3"),
    ("50", "50\\%"), ("50", "50%"), ("18", "\\$18.00"), ("18", "$18"), ("5", "5 cm"), ("10", "\\text{10 apples}"),
    ("7", "7."), ("5", "x = 5"), ("90", "90^\\circ"), ("5/2", "2\\frac{1}{2}"), ("2.5", "\\frac{5}{2}"),
    ("2\\sqrt{3}", "\\sqrt{12}"), ("\\frac{\\sqrt{2}}{2}", "1/\\sqrt{2}"), ("\\sqrt{2}", "2^{1}\\sqrt{2}/2"),
    ("9", "3^2"), ("1/8", "2^{-3}"), ("512", "2^3^2"), ("-4", "-2^2"), ("6", "2(3)"), ("6", "2 \\times 3"),
    ("6", "2\\cdot 3"), ("3", "6 \\div 2"), ("7", "\\left( 7 \\right)"), ("(1, 2)", "(1,2)"), ("(1/2, 3)", "(0.5, 3)"),
    ("1, 2, 3", "1,2,3"), ("\\pi", "\\pi"), ("4\\pi", "4 \\pi"), (7, "7"), (0.5, "1/2"), ("0", "-0"),
    (1e-7, "0.0000001"), (2.0, "2"), (10**20, "10^{20}"),
])
def test_equivalent(gold, answer):
    out = boxed(gold, answer)
    assert out.correct and out.reason == "ok", (gold, answer, out)


@pytest.mark.parametrize("gold, answer", [
    ("1/2", "50%"),  # percent sign dropped: 50% is 50, not 0.5 (the GSM8K/MATH convention)
    ("1/2", "0.51"), ("1000", "100"), ("3", "-3"), ("(1,2)", "[1,2]"), ("(1,2)", "(2,1)"), ("1,2", "1,2,3"),
    ("2x", "2"), ("\\sqrt{2}", "1.414"), ("2\\sqrt{3}", "3\\sqrt{2}"), ("7", "7x"), ("\\pi", "3.14159"),
])
def test_not_equivalent(gold, answer):
    out = boxed(gold, answer)
    assert not out.correct and out.reason == "wrong", (gold, answer, out)


def test_canonical_answer_is_the_verdict_answer_and_distinguishes():
    assert boxed("1/2", "0.5").answer == canonical_answer("\\frac{1}{2}") == "1/2"
    assert canonical_answer("\\sqrt{8}") == "2*sqrt(2)" and canonical_answer("1,000") == "1000"


@pytest.mark.parametrize("text, expected", [
    ("\\boxed{1} then \\boxed{2}", "2"),  # several: the last
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),  # nested braces
    ("\\boxed{{a}{b}}", "{a}{b}"),
    ("\\boxed{3} and finally \\boxed{4", "3"),  # the last one is unterminated: the last complete one
    ("\\boxed {5}", "5"), ("\\fbox{6}", "6"), ("no box here", None), ("\\boxed", None), ("\\boxed{", None),
])
def test_extract_boxed(text, expected):
    assert extract_boxed(text, 256) == expected


def test_extract_formats():
    text = "<answer>3</answer> ... #### 4\nmore \\boxed{5}"
    assert extract(text, "boxed") == "5" and extract(text, "tag") == "3" and extract(text, "gsm8k").strip() == "4"
    assert extract("<answer>3</answer>\n#### 4", "any") == "3" and extract("#### 4", "any").strip() == "4"
    assert extract("#### 4", "boxed") is None and extract("\\boxed{1}", "tag") is None
    gsm = MathAnswerVerifier(answer_format="gsm8k")
    assert gsm.verify({"answer": "72"}, "48/2 = 24; 48 + 24 = 72\n#### 72").correct
    tag = MathAnswerVerifier(answer_format="tag", answer_tag="final")
    assert tag.verify({"answer": "1/3"}, "<final>\\frac{1}{3}</final>").correct


@pytest.mark.parametrize("completion, reason", [
    ("The answer is 7.", "no_answer"), ("\\boxed{}", "empty"), ("\\boxed{  }", "empty"),
    ("\\boxed{" + "1" * 300 + "}", "too_long"), ("x" * 70000 + "\\boxed{7}", "too_long"),
])
def test_failure_reasons(completion, reason):
    assert V.verify({"answer": "7"}, completion).reason == reason


def test_bad_records_and_non_text():
    for record in [{}, {"answer": None}, {"answer": True}, {"answer": ""}, {"answer": [1]}, None, "7"]:
        assert V.verify(record, "\\boxed{7}").reason == "bad_record"
    for completion in [None, 7, b"\\boxed{7}", ["\\boxed{7}"]]:
        assert V.verify({"answer": "7"}, completion).reason == "no_answer"


HOSTILE = [
    "9^9^9", "9^{9^{9}}", "10^{1000000}", "2^64^64", "(2^64)^64", "99999999999999999999^64",
    "(" * 60 + "1" + ")" * 60, "{" * 60 + "1" + "}" * 60, "\\sqrt{" * 40 + "2" + "}" * 40, "-" * 200 + "1",
    "\\frac{" * 30 + "1" + "}{2}" * 30, "(\\sqrt2+\\sqrt3+\\sqrt5+\\sqrt7+\\sqrt{11}+\\sqrt{13})^{64}",
    "\\sqrt{999999}" * 15, "1/0", "\\frac{1}{0}", "0^{-1}", "(\\sqrt2+\\sqrt3)^{-1}", "\\sqrt{-4}",
    "__import__('os').system('echo pwned')", "exec('1')", "lambda: 7", "7; import os", "\x00\ufffd\u202e7",
    "1" * 10_000, "1e308", "NaN", "inf", "." * 100, "1.2.3", "\\text{" * 50,
]


@pytest.mark.parametrize("answer", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_answers_are_zero_and_fast(answer):
    start = time.perf_counter()
    out = boxed("7", answer)
    assert time.perf_counter() - start < 0.05, answer[:40]
    assert not out.correct and isinstance(out.reason, str) and (out.answer is None or len(out.answer) <= 1024)


def test_huge_completions_are_fast():
    for text in ["\\boxed{" * 10**5, "{" * 10**6, "\\boxed{" + "(" * 10**6, "#" * 10**5, "\\boxed{1}" * 10**4]:
        start = time.perf_counter()
        out = MathAnswerVerifier(max_completion_chars=10**7).verify({"answer": "7"}, text)
        assert time.perf_counter() - start < 0.1 and not out.correct


def test_constructor_rejects_bad_settings():
    for kwargs in [{"answer_format": "latex"}, {"answer_tag": "<a>"}, {"max_answer_chars": 0}]:
        with pytest.raises(ValueError):
            MathAnswerVerifier(**kwargs)


# -- MathTask ---------------------------------------------------------------------------------------
def test_reference_answer_reduces_gsm8k_and_math_solutions():
    assert reference_answer("48/2 = 24\n#### 72") == "72"
    assert reference_answer("so it is $\\boxed{\\frac{1}{2}}$.") == "\\frac{1}{2}"
    assert reference_answer(-3) == "-3" and reference_answer(" 7 ") == "7" and reference_answer(1e-7) == "0.0000001"
    for bad in ["", "####", True, None, [1], "x" * 300]:
        with pytest.raises(ValueError):
            reference_answer(bad)


def test_math_task_reads_the_example_files():
    task = MathTask(str(DATA / "math_tiny_train.jsonl"), str(DATA / "math_tiny_val.jsonl"))
    train, val = task.problems("train"), task.problems("val")
    assert len(train) == 6 and len(val) == 2 and task.problems("test") == val
    assert train[0]["id"] == "math_tiny_train-1" and train[2]["id"] == "half-third"
    assert [r["answer"] for r in train] == ["7", "27", "\\frac{1}{6}", "1,500", "2\\sqrt{3}", "-3"]
    assert task.prompt(train[0]).endswith("How many apples does he have?\nPut the final answer in \\boxed{}.")
    assert task.sample_train(np.random.default_rng(0)) in train
    for r in train + val:  # every reference is verified correct against itself, boxed
        assert task.verifier.verify(r, f"\\boxed{{{r['answer']}}}").correct, r


def test_math_task_holdout_and_template(tmp_path):
    task = MathTask(str(DATA / "math_tiny_train.jsonl"), holdout=2, prompt_template="Q: {question}\nA: {x}")
    assert len(task.problems("train")) == 4 and len(task.problems("val")) == 2
    assert not {r["id"] for r in task.problems("train")} & {r["id"] for r in task.problems("val")}
    assert task.prompt({"question": "1+1?"}) == "Q: 1+1?\nA: {x}"  # plain replacement, other braces kept
    with pytest.raises(UserError, match="holdout"):
        MathTask(str(DATA / "math_tiny_train.jsonl"))
    with pytest.raises(UserError, match="question"):
        MathTask(str(DATA / "math_tiny_train.jsonl"), holdout=1, prompt_template="no placeholder")
    with pytest.raises(UserError, match="answer_format"):
        MathTask(str(DATA / "math_tiny_train.jsonl"), holdout=1, answer_format="nope")


@pytest.mark.parametrize("line, message", [
    ("not json", "not valid JSON"), ("[1, 2]", "expected a JSON object"), ('{"answer": "1"}', "'question'"),
    ('{"question": "", "answer": "1"}', "'question'"), ('{"question": "q"}', "missing 'answer'"),
    ('{"question": "q", "answer": ""}', "'answer' is empty"), ('{"question": "q", "answer": null}', "'answer'"),
    ('{"question": "q", "answer": "' + "9" * 300 + '"}', "longer than"),
    ('{"question": "q", "answer": "1", "id": []}', "'id'"),
    ('{"question": "q", "answer": "1", "id": "half-third"}', "duplicate id"),
])
def test_bad_rows_name_file_and_line(tmp_path, line, message):
    val = tmp_path / "val.jsonl"
    val.write_text('{"question": "ok", "answer": "1"}\n\n' + line + "\n")
    with pytest.raises(UserError) as err:
        MathTask(str(DATA / "math_tiny_train.jsonl"), str(val))
    text = str(err.value)
    assert f"data.task.init_args.val_file: {val}:3: " in text and message in text, text


def test_unreadable_and_empty_files(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    for path, message in [(tmp_path / "missing.jsonl", "cannot read"), (empty, "holds no problems")]:
        with pytest.raises(UserError, match=message) as err:
            MathTask(str(path), holdout=1)
        assert str(err.value).startswith("data.task.init_args.train_file: ")


def test_math_config_builds_its_task():
    config = yaml.safe_load((Path(__file__).parents[1] / "configs" / "math" / "a05.yaml").read_text())
    spec = config["data"]["task"]
    assert spec["class_path"] == "lit_alpha.tasks.MathTask"
    args = dict(spec["init_args"])
    root = Path(__file__).parents[1]
    args["train_file"], args["val_file"] = str(root / args["train_file"]), str(root / args["val_file"])
    task = MathTask(**args)
    assert len(task.problems("val")) == 2 and "\\boxed{}" in task.prompt(task.problems("val")[0])


@pytest.mark.slow
def test_math_config_trains_on_user_files(in_tmp, random_model_dir):
    """configs/math/a05.yaml end to end on the example files (a tiny random model; nothing is solved)."""
    from conftest import store_client

    from lit_alpha.cli.lightning import main

    root = Path(__file__).parents[1]
    main(["fit", "--config", str(root / "configs/math/a05.yaml"), "--model.model", str(random_model_dir),
          "--model.dtype", "float32", "--data.task.init_args.train_file", str(DATA / "math_tiny_train.jsonl"),
          "--data.task.init_args.val_file", str(DATA / "math_tiny_val.jsonl"), "--data.prompts_per_step", "2",
          "--data.n_samples", "2", "--data.val_samples", "2", "--data.eval_prompts_per_batch", "2",
          "--data.max_new_tokens", "4", "--trainer.max_steps", "1", "--trainer.val_check_interval", "1",
          "--trainer.enable_progress_bar", "false"])
    client = store_client()
    (run,) = client.search_runs([client.get_experiment_by_name("lit_alpha_math").experiment_id])
    assert run.info.status == "FINISHED"
    assert "val/pass_at_1" in run.data.metrics and "train/loss" in run.data.metrics
