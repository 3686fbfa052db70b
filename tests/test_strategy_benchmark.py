"""The strategy benchmark: task, verifier, closed-form optima (by hand), the control arm's flatness,
the pretraining of its base (a few steps) and the ``Task.eval_metrics`` hook."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lit_alpha.tasks import CountdownTask, StrategyTask
from lit_alpha.tasks.base import Task, has_eval_metrics
from lit_alpha.tasks.strategy import optima as O
from lit_alpha.verifiers.strategy import TRANSFORMS, StrategyVerifier, accepted, parse_answer, unit_hash


# -- transformations and verifier ---------------------------------------------------------------
def test_transformations_by_hand():
    x = "48219"
    assert TRANSFORMS["cpy"](x) == "48219"
    assert TRANSFORMS["rev"](x) == "91284"
    assert TRANSFORMS["inc"](x) == "59320"
    assert TRANSFORMS["sft"](x) == "82194"
    assert TRANSFORMS["neg"](x) == "51780"
    assert len({n[0] for n in TRANSFORMS}) == len(TRANSFORMS)  # the first token decides the strategy


def test_acceptance_is_the_keyed_hash_at_each_rate():
    rates = {"cpy": 0.2, "rev": 0.1, "inc": 0.05, "sft": 0.2, "neg": 0.5}
    rng = np.random.default_rng(0)
    strings = ["".join(map(str, rng.integers(0, 10, 5))) for _ in range(20000)]
    for name, rate in rates.items():
        freq = np.mean([name in accepted("k", s, rates) for s in strings])
        assert abs(freq - rate) < 4 * math.sqrt(rate * (1 - rate) / len(strings)), (name, freq)
    assert accepted("k", "12345", rates) != accepted("other key", "12345", rates) or \
        [unit_hash("k", "12345", n) for n in rates] != [unit_hash("other key", "12345", n) for n in rates]


def _some(verifier: StrategyVerifier, want_accepted: bool, name: str) -> str:
    for i in range(10000):
        digits = f"{i:05d}"
        if (name in verifier.accepted(digits)) == want_accepted:
            return digits
    raise AssertionError("no such string")


def test_verifier_verdicts():
    v = StrategyVerifier("k", {"rev": 0.5, "neg": 0.5})
    yes, no = _some(v, True, "rev"), _some(v, False, "rev")
    good = TRANSFORMS["rev"](yes)
    assert v.verify({"digits": yes}, f"rev:{good}").score == 1.0
    assert v.verify({"digits": yes}, f" rev:{good} \nanything").reason == "ok"  # first line, stripped
    assert v.verify({"digits": yes}, f"rev:{good}").answer == f"rev:{good}"
    slip = good[:-1] + str((int(good[-1]) + 1) % 10)
    assert v.verify({"digits": yes}, f"rev:{slip}").reason == "wrong"
    assert v.verify({"digits": no}, f"rev:{TRANSFORMS['rev'](no)}").reason == "rejected"
    assert v.verify({"digits": yes}, f"cpy:{yes}").reason == "name"  # a transformation this task does not use
    assert v.verify({"digits": yes}, "xyz:123").reason == "name"
    assert v.verify({"digits": yes}, "rev 123").reason == "parse"
    assert v.verify({"digits": yes}, "").reason == "empty"
    assert v.verify({"digits": yes}, "rev:" + "1" * 100).reason == "too_long"
    assert v.verify({"digits": "12a"}, "rev:21").reason == "record"
    assert v.verify({}, "rev:21").reason == "record"
    assert v.verify({"digits": yes}, None).reason == "parse"
    assert parse_answer("neg:0123") == ("neg", "0123")
    with pytest.raises(ValueError, match="unknown"):
        StrategyVerifier("k", {"mul": 0.5})
    with pytest.raises(ValueError, match="rate"):
        StrategyVerifier("k", {"rev": 1.5})


# -- the task -------------------------------------------------------------------------------------
def test_splits_are_disjoint_seeded_and_distinct():
    t = StrategyTask()
    val, test = t.problems("val"), t.problems("test")
    assert len(val) == len(test) == 200
    assert all(t.split_of(r["digits"]) == "val" for r in val)
    assert all(t.split_of(r["digits"]) == "test" for r in test)
    assert len({r["digits"] for r in val}) == 200 and not {r["digits"] for r in val} & {r["digits"] for r in test}
    rng = np.random.default_rng(3)
    assert all(t.split_of(t.sample_train(rng)["digits"]) == "train" for _ in range(300))
    assert [r["digits"] for r in StrategyTask().problems("val")] == [r["digits"] for r in val]  # seeded
    assert [r["digits"] for r in StrategyTask(seed=1).problems("val")] != [r["digits"] for r in val]
    r = val[0]
    assert r["accepted"] == t.verifier.accepted(r["digits"]) and len(r["digits"]) == 5


def test_prompts_of_both_arms():
    hidden, reveal = StrategyTask(), StrategyTask(reveal=True)
    r = {"id": "x", "digits": "48213"}
    assert hidden.prompt(r) == "48213>"
    assert reveal.prompt(r) == "48213|" + ",".join(reveal.verifier.accepted("48213")) + ">"
    with pytest.raises(ValueError, match="same strategies"):
        StrategyTask(prior={"rev": 1.0}, rates={"neg": 0.5})
    with pytest.raises(ValueError, match="unknown"):
        StrategyTask(prior={"mul": 1.0}, rates={"mul": 0.5})


# -- optima by hand -------------------------------------------------------------------------------
# Two strategies, prior (0.75, 0.25), each accepted with probability 1/2, independently. Patterns
# 00, 10, 01, 11 have weight 1/4 each; 00 is unsolvable, so the optima average over the other three
# (1/3 each). The filtered base p_x: 10 -> (1, 0), 01 -> (0, 1), 11 -> (0.75, 0.25).
PRIOR, RATES = [0.75, 0.25], [0.5, 0.5]


def test_optimum_alpha0_is_the_mean_filtered_base():
    A, w = O.all_patterns(RATES)
    # q0 = ((1 + 0 + 0.75)/3, (0 + 1 + 0.25)/3) = (7/12, 5/12)
    assert np.allclose(O.optimum(PRIOR, A, w, 0.0), [7 / 12, 5 / 12])


def test_optimum_alpha_half_by_hand():
    A, w = O.all_patterns(RATES)
    # E sqrt(p): (1 + sqrt(0.75))/3 = 0.6220085 and (1 + 0.5)/3 = 0.5; squared 0.3868946 and 0.25
    # -> q = (0.3868946, 0.25) / 0.6368946 = (0.607473, 0.392527)
    assert np.allclose(O.optimum(PRIOR, A, w, 0.5), [0.607473, 0.392527], atol=1e-6)


def test_optimum_alpha_near_one_is_stable():
    A, w = O.all_patterns(RATES)
    # equal acceptance: q_0/q_1 -> exp(E[log p_0 | p_0>0] - E[log p_1 | p_1>0]) = exp((ln .75 - ln .25)/2) = sqrt(3)
    q = O.optimum(PRIOR, A, w, 0.999)
    assert np.all(np.isfinite(q)) and abs(q[0] - math.sqrt(3) / (1 + math.sqrt(3))) < 2e-3
    # unequal acceptance (0.6 vs 0.5): (E p^0.001)^1000 ~ P(accepted)^1000 -> all mass on the first
    A2, w2 = O.all_patterns([0.6, 0.5])
    assert O.optimum(PRIOR, A2, w2, 0.999)[0] > 1 - 1e-9
    assert np.allclose(O.pass1_optimum(A2, w2), [1.0, 0.0])


def test_pass_at_k_of_the_optima_by_hand():
    A, w = O.all_patterns(RATES)
    q = O.optimum(PRIOR, A, w, 0.0)
    sigma = O.success(q, A)  # 00: 0, 10: 7/12, 01: 5/12, 11: 1
    assert np.allclose(sigma, [0, 5 / 12, 7 / 12, 1])  # itertools.product order: 00, 01, 10, 11
    # pass@1 = (0 + 5/12 + 7/12 + 1)/4 = 0.5
    assert O.pass_at_k(sigma, w, 1) == pytest.approx(0.5)
    # pass@2 = (0 + (1-(7/12)^2) + (1-(5/12)^2) + 1)/4 = (0.6597222 + 0.8263889 + 1)/4 = 0.6215278
    assert O.pass_at_k(sigma, w, 2) == pytest.approx(0.6215278, abs=1e-7)
    # the base with exact execution 0.5: sigma = (0, 0.125, 0.375, 0.5), pass@1 = 0.25
    table = O.optima_table(PRIOR, A, w, ks=(1, 2), execution=0.5, names=["x", "y"])
    assert table["base"]["pass@1"] == pytest.approx(0.25)
    assert table["optimum_a0"]["pass@2"] == pytest.approx(0.6215278, abs=1e-7)
    assert table["ceiling"]["pass@inf"] == pytest.approx(0.75)
    # groups of 8 with >= 2 correct for sigma = 1 on a quarter, 0 elsewhere: 0.25
    assert O.groups_with_two(np.array([0, 0, 0, 1.0]), np.ones(4)) == pytest.approx(0.25)


def test_records_table_matches_hand_counts():
    # three problems: {x}, {x, y}, {} -> q0 over the solvable two = ((1 + 0.75)/2, 0.25/2) = (0.875, 0.125)
    table = O.records_table(PRIOR, [["x"], ["x", "y"], []], ["x", "y"], ks=(1,))
    assert table["optimum_a0"]["q"] == pytest.approx({"x": 0.875, "y": 0.125})
    # pass@1 = (0.875 + 1 + 0)/3
    assert table["optimum_a0"]["pass@1"] == pytest.approx(1.875 / 3)
    assert table["optimum_pass1"]["q"] == {"x": 1.0, "y": 0.0}


def test_distribution_optimum_agrees_with_a_large_problem_list():
    t = StrategyTask(num_val=2000, num_test=200, length=6)
    recs = t.problems("val")
    prior = [t.prior[n] for n in t.names]
    exact = O.distribution_table(prior, [t.rates[n] for n in t.names], names=t.names, ks=(1, 8))
    sample = O.records_table(prior, [r["accepted"] for r in recs], t.names, ks=(1, 8))
    for label in ("optimum_a0", "optimum_a05", "base"):
        assert sample[label]["pass@8"] == pytest.approx(exact[label]["pass@8"], abs=0.04)


# -- the control arm: every α has the same optimum -------------------------------------------------
def test_control_arm_optimum_is_flat_in_alpha():
    A, w = O.all_patterns([0.2, 0.1, 0.05, 0.2, 0.5])
    prior = [0.6, 0.3, 0.087, 0.01, 0.003]
    p = O.filtered_mass(prior, A)
    for alpha in O.ALPHAS:
        assert np.allclose(O.conditional_optimum(prior, A, w, alpha), p)
    table = O.optima_table(prior, A, w, ks=(1, 256), reveal=True)
    rows = [table[f"optimum_{O.alpha_tag(a)}"] for a in O.ALPHAS]
    assert all(r == rows[0] for r in rows)
    assert rows[0]["pass@1"] == pytest.approx(table["ceiling"]["pass@inf"])  # perfect on every solvable problem
    hidden = O.optima_table(prior, A, w, ks=(256,))
    assert hidden["optimum_a0"]["pass@256"] - hidden["optimum_a0999"]["pass@256"] > 0.1  # hidden arm: not flat
    task = StrategyTask(reveal=True)
    opt = task.optima(task.problems("val"))
    assert all(opt[O.alpha_tag(a)] == opt["a0"] for a in O.ALPHAS)


def test_alpha_tags():
    assert [O.alpha_tag(a) for a in O.ALPHAS] == ["a0", "a025", "a05", "a075", "a0999"]


# -- the eval_metrics hook -------------------------------------------------------------------------
def test_default_hook_is_empty_and_countdown_has_none():
    assert Task().eval_metrics([], [], []) == {}
    assert not has_eval_metrics(CountdownTask()) and has_eval_metrics(StrategyTask())


def test_strategy_eval_metrics_by_hand():
    t = StrategyTask()
    recs = [r for r in t.problems("val") if r["accepted"]][:2]
    x0, x1 = recs[0]["digits"], recs[1]["digits"]
    neg0 = TRANSFORMS["neg"](x0)
    slip0 = str((int(neg0[0]) + 1) % 10) + neg0[1:]
    completions = [[f"neg:{neg0}", f"neg:{slip0}", f"cpy:{x0}", "garbage"], [f"rev:{x1[::-1]}"] * 4]
    out = t.eval_metrics(recs, completions, [[0] * 4, [0] * 4])
    assert out["strategy/neg"] == pytest.approx(2 / 8) and out["strategy/rev"] == pytest.approx(4 / 8)
    assert out["strategy/cpy"] == pytest.approx(1 / 8) and out["strategy/other"] == pytest.approx(1 / 8)
    assert out["strategy/slip_rate"] == pytest.approx(1 / 35)  # one wrong digit in 7 parsed answers of 5
    assert out["strategy/exact"] == pytest.approx(6 / 8)
    # the pass@1 optimum is all "neg": TV = 1 - 2/8
    assert out["strategy/tv_to_opt_pass1"] == pytest.approx(0.75)
    q0 = t.optima()["a0"]
    policy = {"neg": 0.25, "rev": 0.5, "cpy": 0.125, "<other>": 0.125}
    want = 0.5 * (sum(abs(policy.get(n, 0) - q0[n]) for n in t.names) + 0.125)
    assert out["strategy/tv_to_opt_a0"] == pytest.approx(want)
    assert t.eval_metrics([], [], []) == {}


# -- pretraining (a few steps) and the hook through the trainer's validation -----------------------
@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    from lit_alpha.tasks.strategy.pretrain import pretrain

    out = tmp_path_factory.mktemp("strategy-base")
    info = pretrain(str(out), steps=4, hidden=16, layers=1, heads=2, batch_size=8, warmup=1,
                    eval_problems=2, eval_samples=2)
    return out, info


def test_pretrain_smoke(tiny_base):
    from lit_alpha.models import load_policy

    out, info = tiny_base
    assert {"model.safetensors", "tokenizer.json", "training_info.json", "config.json"} <= {p.name for p in out.iterdir()}
    assert info["args"]["steps"] == 4 and math.isfinite(info["final_loss"])
    assert set(info["quick_val_hidden"]) >= {"pass@1", "strategy/neg", "strategy/tv_to_opt_a0"}
    model, tok = load_policy(str(out))
    assert tok("48213>")["input_ids"][0] == tok.bos_token_id and tok.unk_token_id not in tok("48213|cpy,neg>")["input_ids"]


def test_pretrain_is_seeded(tiny_base, tmp_path):
    from safetensors.torch import load_file

    from lit_alpha.tasks.strategy.pretrain import pretrain

    pretrain(str(tmp_path), steps=4, hidden=16, layers=1, heads=2, batch_size=8, warmup=1, eval_problems=0)
    a, b = load_file(tiny_base[0] / "model.safetensors"), load_file(tmp_path / "model.safetensors")
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)


def test_attempts_follow_the_prior_and_the_slip_rate():
    from lit_alpha.tasks.strategy.pretrain import attempt, slipped

    rng = np.random.default_rng(0)
    out = [slipped("00000", 0.2, rng) for _ in range(4000)]
    rate = np.mean([c != "0" for s in out for c in s])
    assert abs(rate - 0.2) < 0.01
    t = StrategyTask(prior={"rev": 0.9, "neg": 0.1}, rates={"rev": 0.5, "neg": 0.5})
    names = [attempt(t, "48213", 0.0, rng) for _ in range(4000)]
    assert set(names) == {"rev:31284", "neg:51786"}
    assert abs(names.count("neg:51786") / 4000 - 0.1) < 0.02


def _validate(model: str, task, max_new_tokens: int) -> dict[str, float]:
    import lightning as L

    from lit_alpha.data.datamodule import RolloutDataModule
    from lit_alpha.module import AlphaModule

    module = AlphaModule(model=model, num_threads=1)
    dm = RolloutDataModule(task=task, val_samples=4, max_new_tokens=max_new_tokens, eval_prompts_per_batch=3)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    return trainer.validate(module, datamodule=dm, verbose=False)[0]


def test_validation_logs_the_task_metrics(tiny_base):
    out = _validate(str(tiny_base[0]), StrategyTask(num_val=3), 12)
    assert {"val/strategy/neg", "val/strategy/other", "val/strategy/tv_to_opt_a0", "val/pass@1"} <= set(out)
    assert sum(out[f"val/strategy/{n}"] for n in ("cpy", "rev", "inc", "sft", "neg", "other")) == pytest.approx(1.0)


def test_countdown_validation_logs_only_what_it_did():
    from lit_alpha.models import EMBEDDED

    if not (EMBEDDED["countdown-tiny"] / "config.json").exists():
        pytest.skip("needs the embedded model")
    out = _validate("countdown-tiny", CountdownTask(num_val=2), 16)
    assert set(out) == {"val/pass@1", "val/pass@2", "val/pass@4", "val/distinct_correct", "step"}


def test_groups_with_two_from_counts_by_hand():
    from lit_alpha.tasks.strategy.stats import groups_ge2

    # n = 8: the group is all samples, so it is the indicator of c >= 2
    assert groups_ge2([8, 8, 8, 8], [0, 1, 2, 8]).tolist() == [0.0, 0.0, 1.0, 1.0]
    # n = 9, c = 2: a group of 8 misses one of the 9 samples; it holds both unless it misses a correct
    # one: 1 - [C(7,8) + 2 C(7,7)] / C(9,8) = 1 - 2/9
    assert groups_ge2([9], [2])[0] == pytest.approx(7 / 9)


def test_base_statistics_from_a_table():
    from lit_alpha.tasks.strategy.stats import base_statistics

    t = StrategyTask()
    rec = next(r for r in t.problems("val") if "neg" in r["accepted"])
    x = rec["digits"]
    neg = TRANSFORMS["neg"](x)
    slip = str((int(neg[0]) + 1) % 10) + neg[1:]
    rows = [{"n": 8, "c": 3, "digits": x, "answers": {f"neg:{neg}": 3, f"neg:{slip}": 1, f"cpy:{x}": 2, "<invalid>": 2}}]
    out = base_statistics(rows, t, ks=(1, 8))
    m = out["measured"]
    assert m["pass@1"] == pytest.approx(3 / 8) and m["pass@8"] == 1.0 and m["groups_ge2_of_8"] == 1.0
    assert m["strategy"]["neg"] == pytest.approx(0.5) and m["strategy"]["other"] == pytest.approx(0.25)
    assert m["slip_rate"] == pytest.approx(1 / 30) and m["slip_rate_by_strategy"]["neg"] == pytest.approx(1 / 20)
    assert m["ceiling"] == 1.0 and out["closed_form_problems"]["optimum_pass1"]["pass@1"] in (0.0, 1.0)


def test_distribution_optima_scored_on_a_list():
    # fitted on the distribution (q0 = (7/12, 5/12)), scored on the list {x}, {x, y}: pass@1 = (7/12 + 1)/2
    A, w = O.all_patterns(RATES)
    table = O.records_table(PRIOR, [["x"], ["x", "y"]], ["x", "y"], ks=(1,), fit=(A, w))
    assert table["optimum_a0"]["pass@1"] == pytest.approx((7 / 12 + 1) / 2)
    assert table["optimum_pass1"]["q"] == {"x": 1.0, "y": 0.0}  # tie in the distribution: the first


# -- the shipped base ----------------------------------------------------------------------------
def test_shipped_base_is_small_resolvable_and_meets_its_gates():
    import json

    from lit_alpha.models import EMBEDDED, load_policy, resolve_model_path

    path = EMBEDDED["strategy-tiny"]
    if not (path / "config.json").exists():
        pytest.skip("the strategy base is not built")
    assert resolve_model_path("strategy-tiny") == str(path)
    assert sum(p.stat().st_size for p in path.iterdir()) < 4 * 2**20
    model, tok = load_policy("strategy-tiny")
    assert tok.unk_token_id not in tok("48213|cpy,neg>")["input_ids"]
    info = json.loads((path / "training_info.json").read_text())
    task = StrategyTask()
    assert info["task"]["prior"] == task.prior and info["task"]["rates"] == task.rates  # built for these knobs
    hidden = info["base_statistics"]["hidden"]["measured"]
    assert 0.08 <= hidden["pass@1"] <= 0.25 and hidden["groups_ge2_of_8"] >= 0.2 and hidden["pass@256"] <= 0.9
    optimum = info["base_statistics"]["hidden"]["closed_form_problems"]["optimum_a0"]["pass@256"]
    assert optimum - hidden["pass@256"] >= 0.10


# -- configs: a benchmark folder merged over a method config -------------------------------------
@pytest.mark.parametrize("arm,reveal", [("task", False), ("control", True)])
def test_benchmark_configs_merge_over_a_method_config(arm, reveal):
    from pathlib import Path

    from test_configs import resolve

    repo = Path(__file__).resolve().parents[1]
    flat = resolve("--config", str(repo / "configs/a05.yaml"), "--config", str(repo / f"configs/strategy/{arm}.yaml"))
    assert flat["data.task.class_path"] == "lit_alpha.tasks.StrategyTask"
    assert flat["data.task.init_args.reveal"] is reveal and "data.task.init_args.n_numbers" not in flat
    assert flat["model.model"] == "strategy-tiny" and flat["data.max_new_tokens"] == 12
    assert flat["model.objective.init_args.normalizer"] == 12  # the method's ${data.max_new_tokens}
    assert flat["model.objective.init_args.alpha"] == 0.5 and flat["trainer.max_steps"] == 200
