"""Countdown: task splits, the verifier (correct, wrong, hostile), canonical answers, the guesser."""

from __future__ import annotations

import ast
import time
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lit_alpha.tasks.countdown import CountdownTask, all_expressions, solutions
from lit_alpha.tasks.countdown.guesser import exact_hit_probability, random_guesser_pass_at_k
from lit_alpha.verifiers import CountdownVerifier, Verdict, count_reasons
from lit_alpha.verifiers.countdown import canonical_answer

REC = {"id": "t", "numbers": [3, 7, 9, 12], "target": 59}  # 7*9-12/3 = 59
V = CountdownVerifier()


def independent_eval(expr: str) -> tuple[Fraction, Counter] | None:
    """Value and literal multiset of ``expr`` via Python's own parser (never executed).

    Independent of the verifier's parser; only int literals and binary + - * / are allowed.
    """
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    used: Counter = Counter()

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            used[node.value] += 1
            return Fraction(node.value)
        if isinstance(node, ast.BinOp):
            a, b = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Add):
                return a + b
            if isinstance(node.op, ast.Sub):
                return a - b
            if isinstance(node.op, ast.Mult):
                return a * b
            if isinstance(node.op, ast.Div):
                return a / b
        raise ValueError(f"disallowed node {type(node).__name__}")

    try:
        return walk(tree.body), used
    except (ValueError, ZeroDivisionError):
        return None


def legal_and_correct(expr: str, record: dict) -> bool:
    out = independent_eval(expr)
    if out is None:
        return False
    value, used = out
    given_ = Counter(record["numbers"])
    return value == record["target"] and all(c <= given_[n] for n, c in used.items())


# ---------------------------------------------------------------- task


def test_splits_disjoint_by_multiset():
    task = CountdownTask(seed=0, num_val=20, num_test=20)
    sets = {s: {tuple(sorted(m)) for m in task.multisets(s)} for s in ("train", "val", "test")}
    assert sets["val"] and sets["test"] and sets["train"]
    assert not sets["train"] & sets["val"]
    assert not sets["train"] & sets["test"]
    assert not sets["val"] & sets["test"]
    for split in ("val", "test"):
        for rec in task.problems(split):
            assert tuple(sorted(rec["numbers"])) in sets[split]
    rng = np.random.default_rng(0)
    for _ in range(100):
        assert tuple(sorted(task.sample_train(rng)["numbers"])) in sets["train"]


def test_val_test_deterministic_per_seed():
    a, b = CountdownTask(seed=3, num_val=15, num_test=15), CountdownTask(seed=3, num_val=15, num_test=15)
    c = CountdownTask(seed=4, num_val=15, num_test=15)
    assert a.problems("val") == b.problems("val")
    assert a.problems("test") == b.problems("test")
    assert a.problems("val") != c.problems("val")
    assert a.problems("test") != c.problems("test")


def test_val_problems_solvable_and_verified():
    task = CountdownTask(seed=0, num_val=20)
    assert isinstance(task.verifier, CountdownVerifier)
    for rec in task.problems("val"):
        assert task.min_target <= rec["target"] <= task.max_target
        sols = solutions(tuple(rec["numbers"]), rec["target"])
        assert sols, rec
        assert task.verifier.verify(rec, sols[0]) == Verdict(1.0, "ok", canonical_answer(sols[0]))


def test_prompt_format():
    task = CountdownTask(num_val=1, num_test=1)
    assert task.prompt(REC) == "3 7 9 12 | 59 = "


# ---------------------------------------------------------------- verifier: ordinary answers


@pytest.mark.parametrize(
    "completion",
    [
        "7*9-12/3",
        "9*7-12/3",
        "(7*9)-(12/3)",
        " 7 * 9 - 12 / 3 ",
        "7*9-12/3\nand some trailing text",
        "((7))*9-12/3",
        "<answer>7*9-12/3</answer>",
        "Let me think: 7*9=63, 63-4=59.\n<answer> 7*9 - 12/3 </answer>",
        "<answer>1+1</answer> no wait <answer>7*9-12/3</answer>",  # last tag wins
    ],
)
def test_correct(completion):
    v = V.verify(REC, completion)
    assert v.correct and v.reason == "ok" and v.answer == "7*9-12/3"


def test_correct_subset_and_duplicates():
    assert V.verify({"numbers": [3, 7, 9, 12], "target": 16}, "7+9").correct  # subset
    assert V.verify({"numbers": [3, 7, 9, 12], "target": 4}, "(7+9)/(12/3)").correct
    assert V.verify({"numbers": [5, 5, 2], "target": 50}, "5*5*2").correct  # listed twice: twice
    assert V.verify({"numbers": [2, 4], "target": 2}, "4/2").correct
    assert V.verify({"numbers": [1, 2], "target": Fraction(1, 2)}, "1/2").correct  # exact rationals


@pytest.mark.parametrize(
    "record, completion, reason",
    [
        (REC, "7*9-3/12", "wrong"),
        (REC, "12/3*7", "wrong"),
        (REC, "<answer>3+7</answer>\n<answer>7*9-12/3", "wrong"),  # last *complete* block
        (REC, "7*9-12/3+3-3", "numbers"),  # too many literals
        (REC, "12*3+7+7", "numbers"),
        (REC, "7*7+9+3", "numbers"),  # 7 reused
        (REC, "60-1", "numbers"),  # not given
        (REC, "59", "numbers"),
        ({"numbers": [3, 3, 12], "target": 4}, "12/(3-3)", "divzero"),
        (REC, "", "empty"),
        (REC, "   \nabc", "empty"),
        (REC, "<answer> </answer>", "empty"),
        (REC, "7" * 300, "too_long"),
        (REC, "x" * 100_000, "too_long"),
    ],
)
def test_failures(record, completion, reason):
    v = V.verify(record, completion)
    assert v.score == 0.0 and v.reason == reason, v
    if reason in ("wrong", "numbers", "divzero") and "+3-3" not in completion:
        assert v.answer == canonical_answer(completion)


def test_count_reasons():
    vs = V.verify_batch([REC] * 3, ["7*9-12/3", "2**3", "1"])
    assert count_reasons(vs) == Counter({"ok": 1, "parse": 1, "numbers": 1})


# ---------------------------------------------------------------- verifier: hostile text

HOSTILE = [
    "2**99999",
    "9^9^9",
    "__import__('os').system('x')",
    'eval("1")',
    "exec('7*9-12/3')",
    "lambda: 59",
    "３*７",  # fullwidth digits
    "٣+٧",  # Arabic-Indic digits
    "7²",
    "⁵⁹",
    "(" * 1_000_000,
    "(" * 10_000 + "7" + ")" * 10_000,
    "9" * 1_000_000,
    "(" * 33 + "7" + ")" * 33,  # within the char bound, over the depth bound
    "1234567",  # 7-digit literal
    "007*9-12/3",  # leading zeros
    "7*9\x00-12/3",
    "\x00",
    "\u202e7*9-12/3",  # RTL override
    "7*9-12/3\u200f",  # RTL mark inside the stripped line
    "1+2\n<answer>target</answer>",
    "1+2\n<answer>59</answer>",
    "1+1 ; import os",
    "1.5",
    "-3+62",
    "+7*9-12/3",
    "7*-9",
    "7*9-12/3=59",
    "59 = 7*9-12/3",
    "0x3B",
    "1e6",
    "7 9",
    "()",
    "(7*9-12/3",
    "7*9-12/3)",
    "7*9-12/",
    "[7]*9",
    "7*9-12/3\t",  # trailing tab is stripped: correct, so tested separately below
    "7*9\t-12/3",
    "<answer>" * 2000,
    "</answer>" * 2000,
    "<answer>" * 1000 + "</answer>",
    "<answer>" + "(" * 40 + "</answer>",
    "\n" * 10_000,
    "7" * 256 + "\n" + "7*9-12/3",
]


def test_hostile_corpus_rejected_fast():
    worst = 0.0
    for text in HOSTILE:
        best = float("inf")
        for _ in range(3):  # min of 3 runs: robust to a busy shared machine, still a real bound
            start = time.perf_counter()
            v = V.verify(REC, text)
            best = min(best, time.perf_counter() - start)
        worst = max(worst, best)
        assert isinstance(v, Verdict)
        if text == "7*9-12/3\t":
            assert v.correct
            continue
        assert v.score == 0.0, (text[:40], v)
        assert not v.reason.startswith("crash"), (text[:40], v)
    print(f"worst verify time on hostile corpus: {worst * 1e3:.3f} ms")
    assert worst < 0.010


def test_hostile_fails_fast_even_with_huge_bounds():
    """The parser's own bounds (depth, literal length) stop hostile input, not just max_chars."""
    v = CountdownVerifier(max_chars=10**7, max_completion_chars=10**7)
    for text in ("(" * 1_000_000, "(" * 10_000 + "7" + ")" * 10_000, "9" * 1_000_000):
        start = time.perf_counter()
        out = v.verify(REC, text)
        assert out.reason == "parse" and time.perf_counter() - start < 0.010


def test_non_string_and_bad_record_never_raise():
    assert V.verify(REC, None).score == 0.0  # type: ignore[arg-type]
    assert V.verify({"numbers": [1]}, "1").reason.startswith("crash")


# ---------------------------------------------------------------- verifier: properties

ALPHABET = "0123456789+-*/() "
SMALL = {"numbers": [1, 2, 3, 4], "target": 10}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_property_arbitrary_text(text):
    v = V.verify(REC, text)
    assert isinstance(v, Verdict) and v.score in (0.0, 1.0)
    if v.score == 1.0:
        assert legal_and_correct(v.answer, REC)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=ALPHABET, max_size=24))
def test_property_expression_alphabet(text):
    v = V.verify(SMALL, text)
    assert isinstance(v, Verdict) and v.score in (0.0, 1.0)
    if v.score == 1.0:
        assert legal_and_correct(text, SMALL)  # the text itself, checked independently
        assert legal_and_correct(v.answer, SMALL)


@st.composite
def expressions(draw):
    """A well-formed expression over a subset of 1..4 (each at most once), fully parenthesised."""
    nums = draw(st.permutations([1, 2, 3, 4]))[: draw(st.integers(1, 4))]
    items = [str(n) for n in nums]
    while len(items) > 1:
        i = draw(st.integers(0, len(items) - 2))
        op = draw(st.sampled_from("+-*/"))
        sep = draw(st.sampled_from(["", " "]))
        items[i : i + 2] = [f"({items[i]}{sep}{op}{sep}{items[i + 1]})"]
    return items[0]


@settings(max_examples=300, deadline=None)
@given(expressions())
def test_property_generated_expressions(expr):
    out = independent_eval(expr)
    if out is None:  # division by zero
        assert V.verify(SMALL, expr).reason == "divzero"
        return
    value = out[0]
    record = {"numbers": [1, 2, 3, 4], "target": value}
    v = V.verify(record, expr)
    assert v.correct, (expr, v)
    # the canonical text is a legal expression with the same value, and canonical is idempotent
    assert legal_and_correct(v.answer, record)
    assert canonical_answer(v.answer) == v.answer
    wrong = V.verify({"numbers": [1, 2, 3, 4], "target": value + 1}, expr)
    assert wrong.reason == "wrong" and wrong.answer == v.answer


# ---------------------------------------------------------------- canonical


def test_canonical_equalities():
    same = ["9*7-12/3", "7*9-12/3", "(7*9)-(12/3)", "(9*7)-12/3", "7*9-(12/3)", "((7*9))-12/3"]
    assert len({canonical_answer(s) for s in same}) == 1
    assert len({canonical_answer(s) for s in ["7*9+3-12", "3+9*7-12", "3-12+7*9", "(3-12)+7*9"]}) == 1
    assert canonical_answer("12-(3-7)") == canonical_answer("12+7-3")
    assert canonical_answer("12/(3/7)") == canonical_answer("7*12/3")
    assert canonical_answer("(1+2)*3") == canonical_answer("3*(2+1)")
    assert canonical_answer("<answer>9*7-12/3</answer>") == canonical_answer("7*9-12/3")


def test_canonical_inequalities():
    for a, b in [("12/3", "3/12"), ("12-3", "3-12"), ("7*9-12/3", "7*9-3/12"), ("(1+2)*3", "1+2*3")]:
        assert canonical_answer(a) != canonical_answer(b)
    assert canonical_answer("2**3") is None and canonical_answer("") is None


# ---------------------------------------------------------------- random guesser


def test_guesser_hand_computed():
    # numbers [2, 3], target 6. The guesser picks an ordered pair uniformly among 2*1 = 2 and an op
    # uniformly among 4, so 8 equally likely guesses:
    #   (2,3): 2+3=5, 2-3=-1, 2*3=6, 2/3      (3,2): 3+2=5, 3-2=1, 3*2=6, 3/2
    # two of them equal 6, so p = 2/8 = 1/4; pass@1 = 1/4, pass@4 = 1 - (3/4)^4 = 175/256.
    rec = {"numbers": [2, 3], "target": 6}
    assert exact_hit_probability([2, 3], 6) == Fraction(1, 4)
    out = random_guesser_pass_at_k([rec], [1, 4, 16])
    assert out[1] == pytest.approx(0.25, abs=1e-12)
    assert out[4] == pytest.approx(175 / 256, abs=1e-12)
    assert out[16] == pytest.approx(1 - 0.75**16, abs=1e-12)
    # numbers [0, 3], target 3: (0,3): 3, -3, 0, 0   (3,0): 3, 3, 0, 3/0 -> falls back to 3+0 = 3
    # so 4 of 8 hit: p = 1/2. Averaged with the first problem: pass@1 = (1/4 + 1/2) / 2 = 3/8.
    rec0 = {"numbers": [0, 3], "target": 3}
    assert exact_hit_probability([0, 3], 3) == Fraction(1, 2)
    assert random_guesser_pass_at_k([rec, rec0], [1])[1] == pytest.approx(3 / 8, abs=1e-12)


def test_guesser_exact_matches_enumeration_and_sampling():
    # With distinct positive numbers and 3 of them no divisor is ever 0, so all_expressions yields
    # exactly the guesser's 6*4 * 2*4 = 192 equally likely paths.
    values = [v for v, _ in all_expressions((2, 3, 5))]
    assert len(values) == 192
    for target in (10, 1, 30, 4):
        p = exact_hit_probability([2, 3, 5], target)
        assert p == Fraction(sum(v == target for v in values), 192)
    rec = {"numbers": [2, 3, 5], "target": 10}
    p = float(exact_hit_probability([2, 3, 5], 10))
    est = random_guesser_pass_at_k([rec], [1], n_draws=3000, seed=1, exact=False)[1]
    assert abs(est - p) < 5 * (p * (1 - p) / 3000) ** 0.5
    assert random_guesser_pass_at_k([], [1, 2]) == {1: 0.0, 2: 0.0}


# -- the one-pass verifier gives the verdicts of the previous implementation ------------------------
def test_verdicts_equal_the_frozen_reference_on_100k_random_and_hostile_completions():
    """``tests/countdown_reference.py`` is the AST implementation before the rewrite (issue 15): the
    same verdict, reason and canonical answer on every completion, and the same canonical_answer."""
    import countdown_reference as ref
    from countdown_corpus import HOSTILE, corpus

    from lit_alpha.verifiers import countdown as new

    pairs = corpus(100_000, seed=15)
    old_v, new_v = ref.CountdownVerifier(), new.CountdownVerifier()
    got = [new_v.verify(rec, c) for rec, c in pairs]
    differ = [(rec, c, v) for (rec, c), v in zip(pairs, got) if old_v.verify(rec, c) != v]
    assert not differ, differ[:5]
    reasons = Counter(v.reason for v in got)
    assert all(reasons[r] > 500 for r in ("ok", "wrong", "numbers", "parse", "divzero")), reasons
    for text in HOSTILE + [c for _, c in pairs[:2000]]:
        assert ref.canonical_answer(text) == new.canonical_answer(text), text
