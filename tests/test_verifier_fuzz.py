"""Hostile model output (and hostile records) against every verifier lit_alpha ships: no exception
escapes ``verify``, every verdict is well-formed, and each takes well under a time bound.

A new verifier module is picked up automatically and must register a record strategy below."""

from __future__ import annotations

import importlib
import pkgutil
import socket
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lit_alpha.verifiers as verifiers_pkg
from lit_alpha.verifiers.base import Verdict, Verifier
from lit_alpha.verifiers.countdown import CountdownVerifier
from lit_alpha.verifiers.function import FunctionVerifier
from lit_alpha.verifiers.guarded import GuardedVerifier, sanitize
from lit_alpha.verifiers.lean.dojo import LeanDojoVerifier
from lit_alpha.verifiers.lean.kimina import KiminaLeanVerifier
from lit_alpha.verifiers.lean.verifier import LeanVerifier
from lit_alpha.verifiers.math_answer import MathAnswerVerifier
from lit_alpha.verifiers.prefixed import PrefixedVerifier
from lit_alpha.verifiers.steps import StepsVerifier
from lit_alpha.verifiers.strategy import StrategyVerifier

BOUND_S = 0.1  # per verdict; the Countdown verifier needs microseconds, this allows a loaded machine


def _shipped_verifiers() -> list[type[Verifier]]:
    # every module, subpackages included (lit_alpha.verifiers.lean.*), so discovery does not depend
    # on which test file imported what first
    for info in pkgutil.walk_packages(verifiers_pkg.__path__, prefix=f"{verifiers_pkg.__name__}."):
        importlib.import_module(info.name)
    found, todo = [], list(Verifier.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.startswith("lit_alpha."):
            found.append(cls)
    return sorted(set(found), key=lambda c: c.__name__)


# record strategies: well-formed records of each verifier's task, plus hostile ones
numbers = st.lists(st.integers(0, 100), min_size=1, max_size=6)
countdown_records = st.one_of(
    st.fixed_dictionaries({"id": st.just("p"), "numbers": numbers, "target": st.integers(-1000, 1000)}),
    st.dictionaries(st.sampled_from(["numbers", "target", "id"]),  # missing keys, wrong types, huge values
                    st.one_of(st.none(), st.text(max_size=5), st.integers(), st.floats(allow_nan=True),
                              st.lists(st.one_of(st.integers(-10**30, 10**30), st.text(max_size=3)), max_size=8))),
)
math_answers = st.one_of(st.sampled_from(["7", "1/2", "\\frac{1}{2}", "1,000", "2\\sqrt{3}", "(1, 2)", "\\pi", "50\\%"]),
                         st.integers(-10**6, 10**6), st.text(max_size=20))
math_records = st.one_of(
    st.fixed_dictionaries({"id": st.just("p"), "question": st.just("q"), "answer": math_answers}),
    st.dictionaries(st.sampled_from(["answer", "question", "id"]),  # missing keys, wrong types, huge values
                    st.one_of(st.none(), st.booleans(), st.text(max_size=300), st.integers(-10**30, 10**30),
                              st.floats(allow_nan=True), st.lists(st.integers(), max_size=3))),
)
lean_stmt = "theorem t1 (a b : ℕ) : a + b = b + a"
lean_records = st.one_of(
    st.fixed_dictionaries({"id": st.just("p"), "theorem_statement": st.just(lean_stmt),
                           "theorem_full_name": st.just("t1"), "src_context": st.just("import Mathlib\n")}),
    st.dictionaries(st.sampled_from(["theorem_statement", "theorem_full_name", "src_context", "id"]),
                    st.one_of(st.none(), st.text(max_size=50), st.integers(), st.just(lean_stmt), st.just("t1"))),
)
lean_dojo_records = st.one_of(lean_records, st.fixed_dictionaries({
    "id": st.just("p"), "theorem_statement": st.just(lean_stmt), "theorem_full_name": st.just("t1"),
    "file_path": st.one_of(st.none(), st.just("Foo/Bar.lean"), st.text(max_size=20), st.integers())}))
# FunctionVerifier runs the README's own-task checker (examples/own_task/reward.py): rows like
# {"prompt": "15 2 | 13 = ", "answer": 13, "numbers": [15, 2]}; the middle one is solvable from `pieces`
own_task_records = st.one_of(
    st.fixed_dictionaries({"prompt": st.text(max_size=20), "answer": st.integers(-10**12, 10**12),
                           "numbers": st.lists(st.integers(0, 999999), min_size=2, max_size=2)}),
    st.fixed_dictionaries({"prompt": st.just("7 12 | 19 = "), "answer": st.just(19), "numbers": st.just([7, 12])}),
    st.dictionaries(st.sampled_from(["prompt", "answer", "numbers", "id"]),  # missing keys, wrong types, huge values
                    st.one_of(st.none(), st.text(max_size=5), st.integers(-10**30, 10**30), st.floats(allow_nan=True),
                              st.lists(st.one_of(st.integers(-10**30, 10**30), st.text(max_size=3)), max_size=4))),
)
strategy_records = st.one_of(
    st.fixed_dictionaries({"id": st.just("p"), "digits": st.text("0123456789", min_size=1, max_size=8)}),
    st.dictionaries(st.sampled_from(["digits", "accepted", "id"]),  # missing keys, wrong types, huge values
                    st.one_of(st.none(), st.text(max_size=50), st.integers(-10**30, 10**30), st.floats(allow_nan=True),
                              st.just("9" * 10**4), st.just("\u0663\u0664"), st.lists(st.text(max_size=3), max_size=3))),
)
RECORDS = {CountdownVerifier: countdown_records, StrategyVerifier: strategy_records, MathAnswerVerifier: math_records,
           LeanVerifier: lean_records, KiminaLeanVerifier: lean_records,  # LeanVerifier(): no project, no Lean
           LeanDojoVerifier: lean_dojo_records,  # rules-only path: no repo given, so the Dojo is never entered
           FunctionVerifier: own_task_records, PrefixedVerifier: countdown_records,
           StepsVerifier: countdown_records}  # step-Countdown records have Countdown's shape

# verifiers that need arguments to run here; the rest are built with cls()
_refusing = socket.socket()  # a bound, never-listening loopback port: connections are refused at once
_refusing.bind(("127.0.0.1", 0))
OWN_REWARD = str(Path(__file__).resolve().parents[1] / "examples/own_task/reward.py") + ":reward"
FACTORIES = {
    PrefixedVerifier: lambda: PrefixedVerifier(CountdownVerifier(), "<answer>"),  # ChatTask's prefill
    FunctionVerifier: lambda: FunctionVerifier(OWN_REWARD),
    StrategyVerifier: lambda: StrategyVerifier("k", {"cpy": 0.5, "rev": 0.5, "neg": 0.5}),
    KiminaLeanVerifier: lambda: KiminaLeanVerifier(f"http://127.0.0.1:{_refusing.getsockname()[1]}", retries=0,
                                                   request_timeout_s=0.05),
}


def _make(cls: type[Verifier]) -> Verifier:
    return FACTORIES.get(cls, cls)()

# completions: arbitrary unicode, and text built from the pieces a parser trips on
pieces = st.sampled_from([
    "(", ")", "((((", "))))", "+", "-", "*", "/", "**", "^", "=", " ", "\t", "\n", "\r", "\x00", "\u200f",
    "0", "7", "12", "999999", "9" * 40, "1e308", "NaN", "inf", "-0", "٣", "７", "½", "²", "<answer>", "</answer>",
    "<answer><answer>", "</answer></answer>", "\\", "\"", "'", "{", "}", "__import__('os')", "lambda", "\ufffd",
    "\\boxed{", "\\fbox{", "\\frac", "\\sqrt", "\\text{", "\\left(", "\\right)", "####", "%", "$", ".", ",", "^",
    "9^9^9", "\u2212", "```", "```lean4\n", " := by\n  ", "sorry", "#exit", "/-", "-/", "--", "theorem t1",
])
hostile = st.one_of(
    st.text(max_size=2000),
    st.lists(pieces, max_size=200).map("".join),
    st.builds(lambda n, inner: "(" * n + inner + ")" * n, st.integers(0, 5000), st.text(max_size=20)),
    st.builds(lambda k, s: s * k, st.integers(1, 3000), st.sampled_from(["1+", "(1", "1*2-", "<answer>1</answer>"])),
)
non_text = st.one_of(st.none(), st.integers(), st.binary(max_size=50), st.lists(st.text(max_size=3), max_size=3),
                     st.floats(allow_nan=True), st.dictionaries(st.text(max_size=3), st.integers(), max_size=3))


def test_every_shipped_verifier_has_a_record_strategy():
    missing = [c.__name__ for c in _shipped_verifiers() if c not in RECORDS]
    assert not missing, f"add record strategies for {missing} to tests/test_verifier_fuzz.py"


def _check(verifier: Verifier, record, completion) -> None:
    start = time.perf_counter()
    out = verifier.verify(record, completion)
    elapsed = time.perf_counter() - start
    assert isinstance(out, Verdict) and sanitize(out) is out, out  # well-formed, score in [0, 1]
    assert elapsed < BOUND_S, (elapsed, repr(completion)[:200])


@pytest.mark.parametrize("cls", _shipped_verifiers(), ids=lambda c: c.__name__)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_fuzz_hostile_completions(cls, data):
    record = data.draw(RECORDS[cls])
    _check(_make(cls), record, data.draw(hostile))


@pytest.mark.parametrize("cls", _shipped_verifiers(), ids=lambda c: c.__name__)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_non_text_completions_and_records(cls, data):
    _check(_make(cls), data.draw(RECORDS[cls]), data.draw(non_text))


# a record of the verifier's own task, so the huge text reaches its parser (default: Countdown's)
HUGE_RECORDS = {FunctionVerifier: {"prompt": "3 7 | 10 = ", "answer": 10, "numbers": [3, 7]},
                StrategyVerifier: {"id": "p", "digits": "48213"}}


def test_huge_completions_stay_within_bound():
    for cls in _shipped_verifiers():
        v = _make(cls)
        record = HUGE_RECORDS.get(cls, {"id": "p", "numbers": [3, 7, 9, 12], "target": 59})
        for text in ["(" * 10**6, "1+" * 10**6, "<answer>" * 10**5, "9" * 10**6, "\u0663" * 10**6]:
            _check(v, record, text)


@settings(max_examples=100, deadline=None)
@given(completions=st.lists(hostile, min_size=1, max_size=8))
def test_guarded_batch_is_total(completions):
    """The trainer-side guard returns exactly one well-formed verdict per sample, whatever the text."""
    record = {"id": "p", "numbers": [3, 7, 9, 12], "target": 59}
    out = GuardedVerifier(CountdownVerifier()).verify_batch([record] * len(completions), completions)
    assert len(out) == len(completions) and all(sanitize(v) is v for v in out)


def always_correct(prompts, completions, **row):
    """A reward function that scores everything 1, so FunctionVerifier's own answer handling runs."""
    return [1.0 for _ in completions]


def test_function_verifier_is_bounded_when_the_reward_accepts_anything():
    """The wrapper's own work on a 1.0 score (the canonical answer) stays bounded and total."""
    v = FunctionVerifier(f"{__name__}:always_correct")
    record = {"prompt": "p", "answer": 1}
    for text in ["( " * 10**6, "\u0663 " * 10**6, "\n" * 10**6 + "7", "9" * 10**6, None, 3, b"ab", ["a"]]:
        _check(v, record, text)
        assert v.verify(record, text).score == 1.0

