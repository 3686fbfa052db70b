"""Step-Countdown: the verifier (golden cases by hand), the task, the slipped traces, eval_metrics and a
pretraining smoke run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lit_alpha.tasks.countdown.steps import StepsTask, format_steps, random_trace, slipped_trace
from lit_alpha.verifiers.steps import Step, StepsVerifier, exact_value, parse_steps, slip_counts

V = StepsVerifier()
P4 = {"id": "p", "numbers": [3, 4, 5, 2], "target": 15}


# -- the verifier -----------------------------------------------------------------------------------
@pytest.mark.parametrize("completion, reason, plan", [
    ("3*4=12 12+5=17 17-2=15", "ok", "(((3*4)+5)-2)"),
    ("4*3=12 5+12=17 17-2=15", "ok", "(((3*4)+5)-2)"),      # + and * operands sorted: same plan
    ("5*3=15", "ok", "(3*5)"),                                # not every number has to be used
    ("4*2=8 8+3=11 5+11=16", "wrong_final", "(((2*4)+3)+5)"),
    ("3*4=12", "wrong_final", "(3*4)"),
    ("3*4=13 13+5=18 18-3=15", "slip", None),                 # first step's arithmetic is wrong
    ("3*4=12 12+5=17 17-2=14", "slip", None),
    ("5/2=2", "slip", None),                                  # inexact division: no result is exact
    ("2-5=0", "slip", None),                                  # below zero is not a natural number
    ("3*4=12 12+3=15", "reuse", None),                        # 3 given once, used twice
    ("3*4=12 12+12=24", "reuse", None),                       # 12 produced once, used twice
    ("6+9=15", "reuse", None),                                # 6 is not given
    ("3*4=12 12+5=17 12+3=15", "reuse", None),                # 12 already consumed
    ("5-7=-2", "parse", None),                                # no signs
    ("3 * 4 = 12", "parse", None),
    ("3*4=12,12+5=17", "parse", None),
    ("03*5=15", "parse", None),                               # no leading zeros
    ("3*5=15 <eos> junk", "parse", None),
    ("3*5=15=15", "parse", None),
    ("1234567+1=1234568", "parse", None),                     # 7 digits
    ("", "empty", None),
    ("   \n", "empty", None),
    ("3+4=7 " * 17, "too_long", None),
    ("3" * 10_000, "too_long", None),
])
def test_verifier_golden(completion, reason, plan):
    verdict = V.verify(P4, completion)
    assert verdict.reason == reason
    assert verdict.score == (1.0 if reason == "ok" else 0.0)
    assert verdict.answer == plan


def test_verifier_multiset_semantics():
    assert V.verify({"numbers": [4, 4, 5], "target": 8}, "4+4=8").reason == "ok"
    assert V.verify({"numbers": [4, 5], "target": 8}, "4+4=8").reason == "reuse"
    # a given 3 and a produced 3: each may be used once, so 3*3 is legal here
    assert V.verify({"numbers": [1, 2, 3], "target": 9}, "1+2=3 3*3=9").reason == "ok"
    # independent steps in either order are one plan
    a = V.verify({"numbers": [2, 3, 4, 5], "target": 26}, "2*3=6 4*5=20 6+20=26")
    b = V.verify({"numbers": [2, 3, 4, 5], "target": 26}, "5*4=20 3*2=6 20+6=26")
    assert a.correct and b.correct and a.answer == b.answer == "((2*3)+(4*5))"


@pytest.mark.parametrize("record", [{}, {"numbers": [3], "target": -1}, {"numbers": "34", "target": 7},
                                    {"numbers": [3, True], "target": 4}, {"numbers": [3, 4], "target": 10**9},
                                    {"numbers": [3.0, 4], "target": 7}])
def test_malformed_records_are_zero_with_reason(record):
    assert V.verify(record, "3+4=7") == V.verify(record, "3+4=7") and V.verify(record, "3+4=7").reason == "record"


def test_exact_value_in_the_naturals():
    assert [exact_value(7, op, 2) for op in "+-*/"] == [9, 5, 14, None]
    assert exact_value(2, "-", 7) is None and exact_value(8, "/", 0) is None and exact_value(8, "/", 4) == 2


def test_slip_counts_by_hand():
    assert slip_counts("3*4=13 13+5=18") == (1, 2)
    assert slip_counts("3*4=12 xx 5+5=11") == (0, 1)      # counting stops at the first non-step
    assert slip_counts("7/2=3 9-10=0 1+1=2") == (2, 3)
    assert slip_counts("") == (0, 0) and slip_counts(None) == (0, 0)  # type: ignore[arg-type]


def test_parse_steps():
    steps, err = parse_steps(" 3*4=12  12+5=17 ")
    assert err is None and steps == [Step(3, "*", 4, 12), Step(12, "+", 5, 17)]


# -- the task ---------------------------------------------------------------------------------------
def test_task_splits_mixture_and_prompts():
    task = StepsTask(n_numbers=[3, 4], n_weights=[1, 3], max_number=10, min_target=10, max_target=99, num_val=20)
    val = task.problems("val")
    assert [len(r["numbers"]) for r in val] == [3] * 5 + [4] * 15
    assert val == StepsTask(n_numbers=[3, 4], n_weights=[1, 3], max_number=10, min_target=10,
                            max_target=99, num_val=20).problems("val")      # seeded
    for r in val:
        assert task.split_of(r["numbers"]) == "val" and 10 <= r["target"] <= 99
        assert all(1 <= n <= 10 for n in r["numbers"])
    train_sets = {tuple(sorted(task.sample_train(np.random.default_rng(i))["numbers"])) for i in range(200)}
    assert not train_sets & {tuple(sorted(r["numbers"])) for r in val + task.problems("test")}
    assert task.prompt({"numbers": [3, 4, 5], "target": 17}) == "3 4 5 | 17 | "
    with pytest.raises(ValueError, match="n_weights"):
        StepsTask(n_numbers=[3, 4], n_weights=[1])


def test_defining_trace_solves_every_problem():
    task = StepsTask(n_numbers=[3, 4, 5], max_number=20, min_target=100, max_target=999)
    rng = np.random.default_rng(0)
    for i in range(100):
        record, trace = task.sample_solved("train", i, rng)
        assert len(trace) == len(record["numbers"]) - 1
        verdict = V.verify(record, format_steps(trace))
        assert verdict.correct, (record, format_steps(trace))


# -- slips ------------------------------------------------------------------------------------------
def _available(numbers, steps) -> bool:
    """Every operand is available (multiset of given numbers and written results), arithmetic ignored."""
    pool = list(numbers)
    for s in steps:
        for v in (s.a, s.b):
            if v not in pool:
                return False
            pool.remove(v)
        pool.append(s.c)
    return True


def test_slipped_trace_rate_and_consistency():
    rng = np.random.default_rng(1)
    numbers = [7, 3, 9, 2, 5]
    slipped = total = 0
    for _ in range(1500):
        trace = random_trace(numbers, rng)
        assert slipped_trace(trace, 0.0, rng) == trace
        written = slipped_trace(trace, 0.2, rng)
        assert [s.op for s in written] == [s.op for s in trace]          # same plan
        assert _available(numbers, written)                              # continues from the written value
        slipped += sum(not s.exact for s in written)
        total += len(written)
    # injected at 0.2 per step; a slipped operand can force a later slip (inexact / or -), so a bit more
    assert 0.19 < slipped / total < 0.26
    for _ in range(200):
        assert all(not s.exact for s in slipped_trace(random_trace(numbers, rng), 1.0, rng))


def test_slip_continues_from_the_written_value_by_hand():
    trace = [Step(3, "*", 4, 12), Step(12, "+", 5, 17), Step(17, "-", 2, 15)]

    class FirstStepSlips:  # a generator stand-in that makes only the first step slip, by +1
        def __init__(self):
            self.calls = 0

        def random(self):
            self.calls += 1
            return 0.0 if self.calls == 1 else 1.0

        def integers(self, n):
            return 3  # SLIP_DELTAS[3] == +1

    written = slipped_trace(trace, 0.5, FirstStepSlips())  # type: ignore[arg-type]
    assert format_steps(written) == "3*4=13 13+5=18 18-2=16"
    assert V.verify(P4, format_steps(written)).reason == "slip"


# -- diagnostics ------------------------------------------------------------------------------------
def test_eval_metrics_by_hand():
    task = StepsTask()
    records = [P4, {"id": "q", "numbers": [2, 3, 4, 5], "target": 26}]
    completions = [
        ["3*4=12 12+5=17 17-2=15", "4*3=12 5+12=17 17-2=15", "5*3=15", "3*4=13 13+2=16"],
        ["2*3=6 4*5=20 6+20=26", "oops"],
    ]
    rewards = [[1, 1, 1, 0], [1, 0]]
    m = task.eval_metrics(records, completions, rewards)
    # steps written: 3 + 3 + 1 + 2 + 3 + 0 = 12; slipped: 3*4=13 and 13+2=16 -> 2
    assert m["slip_rate"] == pytest.approx(2 / 12)
    assert m["steps_per_sample"] == pytest.approx(12 / 6)
    # problem 1: plans (((3*4)+5)-2) twice and (3*5) -> 2; problem 2: 1 -> mean 1.5
    assert m["distinct_plans"] == pytest.approx(1.5)
    assert task.eval_metrics([], [], []) == {"slip_rate": 0.0, "steps_per_sample": 0.0, "distinct_plans": 0.0}
    with pytest.raises(ValueError, match="2 completions for 1 rewards"):
        task.eval_metrics([P4], [["a", "b"]], [[1]])


# -- pretraining ------------------------------------------------------------------------------------
def test_base_and_twin_see_the_same_problems_and_plans():
    from lit_alpha.tasks.countdown.steps_pretrain import trace_batch

    task = StepsTask()
    p0, t0, s0 = trace_batch(task, np.random.default_rng(5), 64, 0.0)
    p1, t1, s1 = trace_batch(task, np.random.default_rng(5), 64, 0.3)
    assert p0 == p1 and s0 == 0 and s1 > 0 and t0 != t1
    assert [t.count("=") for t in t0] == [t.count("=") for t in t1]
    assert all(V.verify({"numbers": list(map(int, p.split(" | ")[0].split())), "target": int(p.split(" | ")[1])},
                        t).correct for p, t in zip(p0, t0))


def test_pretrain_steps_smoke(tmp_path):
    from lit_alpha.models.loading import load_policy
    from lit_alpha.tasks.countdown.steps_pretrain import pretrain_steps

    info = pretrain_steps(tmp_path / "m", slip_rate=0.2, steps=3, batch_size=8, hidden=32, layers=1, heads=2,
                          eval_samples=8, eval_problems=4, guesser_draws=5)
    assert info["steps_done"] == 3 and np.isfinite(info["final_loss"])
    assert 0.0 < info["train_slip_rate"] < 1.0 and info["longest_train_sequence"] <= 96
    assert {"pass@1", "pass@8", "groups8_ge2", "slip_rate", "distinct_plans", "by_count"} <= set(info["val_model"])
    saved = json.loads((tmp_path / "m" / "training_info.json").read_text())
    assert saved["args"]["slip_rate"] == 0.2 and saved["task"]["n_numbers"] == [3, 4]
    model, tok = load_policy(str(tmp_path / "m"))
    assert model.config.max_position_embeddings == 96 and model.generation_config.max_new_tokens == 48
    assert tok("3 4 | 12 | 3*4=12")["input_ids"][0] == tok.bos_token_id
