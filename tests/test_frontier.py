"""The precision–coverage tooling: pass@k curves, hull, bootstrap, transitions, evaluate, sweep, notebook."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from lit_alpha.analysis import evaluate as ev
from lit_alpha.analysis import frontier as fr
from lit_alpha.analysis import stats as st
from lit_alpha.analysis import sweep, tables
from lit_alpha.cli import evaluate as evaluate_cmd
from lit_alpha.cli import tools
from lit_alpha.metrics.pass_at_k import pass_at_k
from lit_alpha.tasks.countdown import CountdownTask
from lit_alpha.tasks.countdown.guesser import hit_probabilities, random_guesser_pass_at_k

REPO = Path(__file__).resolve().parents[1]


def _run(name, n, c, ids=None, records=None):
    ids = ids or [f"p{i:03d}" for i in range(len(n))]
    return st.RunResult(name, list(ids), np.asarray(n), np.asarray(c), records=records or [])


# -- pass@k curves ------------------------------------------------------------------------
def test_pass_at_k_known_values():
    # n=4, c=2: pass@1 = 1/2, pass@2 = 1 - C(2,2)/C(4,2) = 5/6, pass@4 = 1; c=0 → 0; c=n → 1
    m = st.pass_at_k_matrix([4, 4, 4], [2, 0, 4], [1, 2, 4])
    np.testing.assert_allclose(m, [[0.5, 5 / 6, 1.0], [0, 0, 0], [1, 1, 1]], atol=1e-12)
    run = _run("r", [4, 4, 4], [2, 0, 4])
    np.testing.assert_allclose(st.pass_at_k_curve(run, [1, 2, 4]), [0.5, (5 / 6 + 1) / 3, 2 / 3])


def test_pass_at_k_matches_the_torchmetric_estimator():
    rng = np.random.default_rng(0)
    n = rng.integers(16, 300, size=50)
    c = (rng.random(50) * (n + 1)).astype(int).clip(0, n)
    for k in [1, 2, 8, 16]:
        ours = st.pass_at_k_per_problem(n, c, k)
        ref = pass_at_k(torch.tensor(n), torch.tensor(c), k).numpy()
        np.testing.assert_allclose(ours, ref, atol=1e-10)
    with pytest.raises(ValueError):
        st.pass_at_k_per_problem([4], [1], 8)
    assert st.default_ks(256) == [1, 2, 4, 8, 16, 32, 64, 128, 256] and st.default_ks(6) == [1, 2, 4, 6]


def test_guesser_curve_is_the_guesser_baseline():
    records = CountdownTask(num_val=12).problems("val")
    run = _run("r", [16] * 12, [0] * 12, [r["id"] for r in records],
               [{"numbers": r["numbers"], "target": r["target"]} for r in records])
    g = st.guesser_run(run, hit_probabilities)
    ks = [1, 4, 16]
    expected = random_guesser_pass_at_k(records, ks)
    np.testing.assert_allclose(st.pass_at_k_curve(g, ks), [expected[k] for k in ks], atol=1e-12)


def test_diversity_indices():
    assert st.shannon_entropy([5]) == 0 and st.simpson_index([5]) == 0
    assert st.shannon_entropy([]) == 0 and st.simpson_index([]) == 0
    assert math.isclose(st.shannon_entropy([3, 3]), math.log(2))
    assert math.isclose(st.simpson_index([1, 1, 1, 1]), 0.75)
    row = ev.problem_row({"id": "x", "numbers": [1, 2], "target": 3}, [1, 1, 0, 0],
                         ["1+2", "1+2", "1*2", None], ["ok", "ok", "wrong", "parse"])
    assert row["n"] == 4 and row["c"] == 2 and row["distinct_correct"] == 1
    assert row["correct_answers"] == {"1+2": 2} and row["answers"] == {"1+2": 2, "1*2": 1, ev.INVALID: 1}
    assert math.isclose(row["answer_entropy"], st.shannon_entropy([2, 1, 1]))
    assert row["correct_entropy"] == 0 and row["numbers"] == [1, 2] and row["reasons"] == {"ok": 2, "wrong": 1, "parse": 1}


# -- hull -----------------------------------------------------------------------------------
def test_upper_right_hull_on_hand_made_points():
    pts = [(0.1, 0.9), (0.5, 0.5), (0.3, 0.4), (0.6, 0.2), (0.5, 0.5), (0.05, 0.8), (0.6, 0.1)]
    # (0.3,0.4) is dominated by (0.5,0.5); (0.05,0.8) by (0.1,0.9); (0.6,0.1) by (0.6,0.2); the duplicate keeps index 1
    assert st.upper_right_hull(pts) == [0, 1, 3]
    assert st.upper_right_hull([(0.2, 0.2)]) == [0]
    grid = np.array([0.0, 0.1, 0.2, 0.5, 0.6, 0.7])
    step = st.staircase(np.array([[0.1, 0.9], [0.5, 0.5], [0.6, 0.2]]), grid)
    np.testing.assert_allclose(step[:5], [0.9, 0.9, 0.5, 0.5, 0.2])
    assert np.isnan(step[5])


# -- bootstrap --------------------------------------------------------------------------------
def test_bootstrap_is_seeded():
    a, b = st.bootstrap_indices(50, 200, seed=3), st.bootstrap_indices(50, 200, seed=3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, st.bootstrap_indices(50, 200, seed=4))
    assert a.shape == (200, 50) and a.min() >= 0 and a.max() < 50


def test_bootstrap_interval_of_a_known_mean():
    # 100 problems, half always solved, half never: pass@1 = 0.5, standard error 0.05
    values = np.array([1.0] * 50 + [0.0] * 50)
    low, high = st.Bootstrap(100, 4000, seed=0).interval(values)
    idx = st.bootstrap_indices(100, 4000, seed=0)  # scipy's resamples are these: the same interval by hand
    np.testing.assert_allclose([low, high], np.quantile(st.bootstrap_means(values, idx), [0.025, 0.975]), atol=1e-12)
    assert abs(low - (0.5 - 1.96 * 0.05)) < 0.015 and abs(high - (0.5 + 1.96 * 0.05)) < 0.015


def test_scipy_intervals_use_the_shared_resamples():
    """scipy.stats.bootstrap draws exactly Bootstrap.indices: every run's interval and every paired
    difference sees the same resampled problems (and the hull band, computed by hand, too)."""
    rng = np.random.default_rng(2)
    a, b = rng.random(40), rng.random(40)
    boot = st.Bootstrap(40, 300, seed=2, level=0.9)
    d = (a - b)[boot.indices].mean(axis=1)  # [B]
    diff, low, high, p = st.paired_bootstrap(a, b, boot)
    np.testing.assert_allclose([diff, low, high], [(a - b).mean(), *np.quantile(d, [0.05, 0.95])], atol=1e-12)
    assert p == pytest.approx(min(1.0, 2 * min((d < 0).mean(), (d > 0).mean())))
    m = np.stack([a, b], axis=1)  # [P, 2]
    low2, high2 = boot.interval(m)
    np.testing.assert_allclose(np.stack([low2, high2]), np.quantile(m[boot.indices].mean(axis=1), [0.05, 0.95], axis=0),
                               atol=1e-12)


def test_paired_bootstrap_identical_runs_are_not_different():
    rng = np.random.default_rng(1)
    n = np.full(60, 16)
    c = rng.integers(0, 17, size=60)
    a, b = _run("a", n, c), _run("b", n, c)
    (row1, row16) = st.significance_table([a, b], [1, 16], st.Bootstrap(60, 500, seed=0))
    for row in (row1, row16):
        assert row.diff == 0 and row.low <= 0 <= row.high and row.p_value == 1.0 and not row.significant


def test_paired_bootstrap_a_run_that_solves_more_is_significant():
    n = np.full(40, 8)
    c_b = np.array([0] * 20 + [4] * 20)
    c_a = np.array([8] * 20 + [4] * 20)  # solves the 20 problems b never solves, the same elsewhere
    a, b = _run("a", n, c_a), _run("b", n, c_b)
    rows = {r.k: r for r in st.significance_table([a, b], [1, 8], st.Bootstrap(40, 1000, seed=0), reference="b")}
    assert math.isclose(rows[1].diff, 0.5) and math.isclose(rows[8].diff, 0.5)
    for r in rows.values():
        assert r.a == "a" and r.b == "b" and r.significant and r.low > 0.3 and r.p_value < 0.01
    # pairing matters: a constant per-problem difference has a zero-width interval
    diff, low, high, p = st.paired_bootstrap(np.full(30, 0.7), np.full(30, 0.5), st.Bootstrap(30, 100))
    assert math.isclose(diff, 0.2) and math.isclose(low, 0.2) and math.isclose(high, 0.2) and p == 0.0


def test_align_pairs_runs_by_problem_id():
    a = _run("a", [4, 4, 4], [1, 2, 3], ["x", "y", "z"])
    b = _run("b", [4, 4], [4, 0], ["z", "x"])
    a2, b2 = st.align([a, b])
    assert a2.problem_ids == b2.problem_ids == ["x", "z"]
    np.testing.assert_array_equal(a2.c, [1, 3])
    np.testing.assert_array_equal(b2.c, [0, 4])


def test_group_seeds_averages_per_problem_pass_at_k():
    n = [4, 4]
    runs = [_run("m-s0", n, [0, 4]), _run("m-s1", n, [2, 4]), _run("base", n, [1, 1])]
    grouped = {r.name: r for r in st.group_seeds(runs)}
    assert set(grouped) == {"m", "base"}
    np.testing.assert_allclose(grouped["m"].matrix([1, 2])[:, 0], [0.25, 1.0])
    np.testing.assert_allclose(grouped["m"].matrix([1, 2])[:, 1], [5 / 12, 1.0])
    assert st.method_of("a05-s12") == "a05" and st.method_of("base") == "base"


def test_summary_rows_by_hand():
    """One row per method, seeds averaged, pass@k empty above the samples per problem, the guesser's
    pass@k exact and its diversity empty (docs/results/summary_<split>.csv)."""
    rec = [{"numbers": [3, 7], "target": 10}, {"numbers": [3, 7], "target": 21}]
    runs = [_run("base", [4, 4], [1, 2], records=rec), _run("m-s0", [4, 4], [0, 4], records=rec),
            _run("m-s1", [4, 4], [2, 4], records=rec)]
    div = {"base": ([1, 2], [np.nan, 3.0]), "m-s0": ([0, 1], [1.0, 2.0]), "m-s1": ([1, 1], [2.0, 4.0])}
    for r in runs:
        r.diversity = {"distinct_correct": np.asarray(div[r.name][0], float),
                       "fkl_to_target": np.asarray(div[r.name][1], float)}
    rows = {r["method"]: r for r in tables.analyse(runs, num_boot=10, seeds_grouped=True).summary_rows()}
    assert list(rows) == ["base", "m", "guesser"]
    assert rows["base"] == {"method": "base", "seeds": 1, "pass@1": pytest.approx(0.375), "pass@16": None,
                            "pass@256": None, "distinct_correct": 1.5, "fkl_to_target": 3.0}  # NaN problem left out
    assert rows["m"]["seeds"] == 2 and rows["m"]["pass@1"] == pytest.approx((0.25 + 1.0) / 2)
    assert rows["m"]["distinct_correct"] == pytest.approx(0.75) and rows["m"]["fkl_to_target"] == pytest.approx(2.25)
    # the guesser: 3+7 and 7+3 of 8 equally likely (ordered pair, operator) hit 10; 3*7 and 7*3 hit 21
    g = rows["guesser"]
    assert g["seeds"] is None and g["distinct_correct"] is None and g["fkl_to_target"] is None
    assert g["pass@1"] == pytest.approx(0.25) and g["pass@16"] == pytest.approx(1 - 0.75 ** 16)


def test_seed_rows_give_mean_and_sd_over_seeds_by_hand():
    """The spread over seeds: each seed's pass@1 (mean over problems) and divergence, then their mean
    and sample sd; single-seed runs and the guesser have no row."""
    runs = [_run("base", [4, 4], [1, 2]), _run("m-s0", [4, 4], [0, 4]), _run("m-s1", [4, 4], [2, 4]),
            _run("m-s2", [4, 4], [1, 1])]
    div = {"base": [np.nan, 3.0], "m-s0": [1.0, 2.0], "m-s1": [2.0, 4.0], "m-s2": [np.nan, 6.0]}
    for r in runs:
        r.diversity = {"fkl_to_target": np.asarray(div[r.name], float)}
    (row,) = tables.analyse(runs, num_boot=10, seeds_grouped=True).seed_rows()
    per_seed = [(0 + 1) / 2, (0.5 + 1) / 2, (0.25 + 0.25) / 2]  # pass@1 = c/n, mean over the 2 problems
    fkl = [1.5, 3.0, 6.0]
    assert row["method"] == "m" and row["seeds"] == 3
    assert row["pass@1"] == pytest.approx(np.mean(per_seed)) and row["pass@1_sd"] == pytest.approx(np.std(per_seed, ddof=1))
    assert row["fkl_to_target"] == pytest.approx(3.5) and row["fkl_to_target_sd"] == pytest.approx(np.std(fkl, ddof=1))
    assert "pass@16" not in row  # above the samples per problem


# -- transitions ------------------------------------------------------------------------------
def test_transition_table_on_a_hand_made_example():
    n = [10] * 6
    base = _run("base", n, [0, 0, 2, 5, 9, 10])  # unsolved, unsolved, hard, medium, easy, easy
    tuned = _run("tuned", n, [0, 3, 10, 5, 2, 10])  # unsolved, medium, easy, medium, hard, easy
    np.testing.assert_array_equal(st.difficulty_bins(base.frac_solved), [0, 0, 1, 2, 3, 3])
    t = st.transition_table(base, tuned)
    expected = np.zeros((4, 4), int)
    for i, j in [(0, 0), (0, 2), (1, 3), (2, 2), (3, 1), (3, 3)]:
        expected[i, j] += 1
    np.testing.assert_array_equal(t, expected)
    text = st.format_transition(t, "base", "tuned")
    assert "unsolved" in text and "easy" in text


# -- a small experiment in MLflow, as evaluate writes it ----------------------------------------
def make_experiment(uri: str, name: str = "frontier_test", problems: int = 12, n: int = 16) -> None:
    """base, a05-s0, a05-s1, rft-s0 with synthetic per-problem tables on val and train."""
    client = MlflowClient(uri)
    exp = client.create_experiment(name)
    task = CountdownTask(num_val=problems)
    rng = np.random.default_rng(0)
    quality = {"base": 0.15, "a05-s0": 0.3, "a05-s1": 0.35, "rft-s0": 0.6}
    for run_name, q in quality.items():
        run = client.create_run(exp, run_name=run_name)
        for split in ("val", "train"):
            rows = []
            for r in task.problems(split):
                p = q * rng.random() * 2
                rewards = (rng.random(n) < min(p, 1)).astype(float).tolist()
                answers = [f"a{rng.integers(3 if q < 0.5 else 1)}" if x else None for x in rewards]
                rows.append(ev.problem_row(r, rewards, answers))
            path = Path(os.environ.get("TMPDIR", "/tmp")) / f"lit_alpha_test_{os.getpid()}" / f"eval_{split}.jsonl"
            ev.write_table(rows, path)
            client.log_artifact(run.info.run_id, str(path), fr.EVAL_ARTIFACT_DIR)
        client.set_terminated(run.info.run_id)


def test_frontier_command_on_a_small_experiment(in_tmp, capsys):
    uri = f"sqlite:///{in_tmp}/mlruns/mlflow.db"
    (in_tmp / "mlruns").mkdir()
    make_experiment(uri)
    runs = fr.load_experiment(uri, "frontier_test", "val")
    assert [r.name for r in runs] == ["base", "a05-s0", "a05-s1", "rft-s0"]
    a = tables.analyse(runs, "val", num_boot=200)
    assert a.k == 16 and a.ks == [1, 2, 4, 8, 16] and a.runs[-1].name == st.GUESSER
    assert "rft-s0" in a.hull() and st.GUESSER not in a.hull()
    assert len(a.transitions()) == 3 and set(a.transitions()["rft-s0"].sum(1)) <= set(range(13))
    code = tools.frontier_main(["--experiment", "frontier_test", "--tracking_uri", uri, "--out", "out", "--num_boot", "200",
                    "--group_seeds", "--k", "8"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "paired bootstrap" in printed and "difficulty transitions" in printed and st.GUESSER in printed
    for split in ("val", "train"):
        for f in (f"frontier_{split}.png", f"passk_{split}.png", f"significance_{split}.csv", f"transitions_{split}.csv"):
            assert (in_tmp / "out" / f).stat().st_size > 0
    assert "a05," in (in_tmp / "out" / "significance_val.csv").read_text()  # seeds grouped into a05
    summary = (in_tmp / "out" / "summary_val.csv").read_text().splitlines()
    assert summary[0] == "method,seeds,pass@1,pass@16,pass@256,distinct_correct,fkl_to_target"
    assert [line.split(",")[:2] for line in summary[1:]] == [["base", "1"], ["a05", "2"], ["rft", "1"], ["guesser", ""]]
    assert summary[1].split(",")[4] == ""  # pass@256 with 16 samples per problem: not defined
    points = (in_tmp / "out" / "points_val.csv").read_text().splitlines()
    assert points[0] == "run,pass@1,pass@1_lo,pass@1_hi,pass@8,pass@8_lo,pass@8_hi,hull"
    assert {line.split(",")[0]: line.split(",")[-1] for line in points[1:]}["rft"] == "True"  # on the hull
    seeds = (in_tmp / "out" / "seeds_val.csv").read_text().splitlines()
    assert seeds[0].startswith("method,seeds,pass@1,pass@1_sd") and [line.split(",")[:2] for line in seeds[1:]] == [["a05", "2"]]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("frontier_test")
    (run,) = client.search_runs([exp.experiment_id], "attributes.run_name = 'frontier'")
    names = {x.path for x in client.list_artifacts(run.info.run_id, "frontier")}
    assert "frontier/frontier_val.png" in names and "frontier/passk_train.png" in names
    # the frontier run itself is not read back as a model run
    assert [r.name for r in fr.load_experiment(uri, "frontier_test", "val")][0] == "base"


# -- evaluate -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_evaluate_base_and_checkpoint_into_mlflow(in_tmp, random_model_dir, capsys):
    common = ["--config", str(REPO / "configs/a05.yaml"), "--config", str(REPO / "configs/countdown5/task.yaml"),
              "--model.model", str(random_model_dir),
              "--n", "4", "--split", "val", "train", "--num_problems", "3", "--problems_per_batch", "2",
              "--trainer.logger.init_args.experiment_name", "ev"]
    assert evaluate_cmd.main(common) == 0
    client = MlflowClient(f"sqlite:///{in_tmp}/mlruns/mlflow.db")
    exp = client.get_experiment_by_name("ev")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.run_name == "base" and run.info.status == "FINISHED"
    for k in (1, 2, 4):
        assert 0 <= run.data.metrics[f"eval/val/pass_at_{k}"] <= 1
    assert "eval/train/distinct_correct" in run.data.metrics and "eval/val/answer_entropy" in run.data.metrics
    table = client.download_artifacts(run.info.run_id, "eval/eval_val.jsonl", str(in_tmp))
    rows = [json.loads(x) for x in Path(table).read_text().splitlines()]
    assert [r["problem_id"] for r in rows] == ["cd-val-0", "cd-val-1", "cd-val-2"]
    assert all(r["n"] == 4 and 0 <= r["c"] <= 4 and sum(r["answers"].values()) == 4 for r in rows)
    assert math.isclose(run.data.metrics["eval/val/pass_at_1"], np.mean([r["c"] / 4 for r in rows]), rel_tol=1e-6)

    # same seed → same samples (common random numbers); a checkpoint outside the store → a new run
    from lit_alpha.models import load_policy

    policy, _ = load_policy(str(random_model_dir))
    ckpt = in_tmp / "x.ckpt"
    torch.save({"state_dict": {f"policy.{k}": v for k, v in policy.state_dict().items()}, "global_step": 7}, ckpt)
    assert evaluate_cmd.main([*common, "--ckpt_path", str(ckpt), "--split", "val", "--out", "tables"]) == 0
    again = [json.loads(x) for x in (in_tmp / "tables" / "eval_val.jsonl").read_text().splitlines()]
    assert [r["answers"] for r in again] == [r["answers"] for r in rows]  # same weights, same random numbers
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {"base", "a05-eval"}
    assert runs["a05-eval"].data.tags["lit_alpha.ckpt_path"] == str(ckpt)
    # and attach to an existing run by id
    assert evaluate_cmd.main([*common, "--split", "test", "--run_id", run.info.run_id]) == 0
    assert "eval/test/pass_at_4" in client.get_run(run.info.run_id).data.metrics
    assert evaluate_cmd.main([*common, "--ckpt_path", str(in_tmp / "missing.ckpt")]) == 2
    assert "error" in capsys.readouterr().err


# -- sweep -------------------------------------------------------------------------------------------
def test_sweep_evaluations_wait_for_the_base_evaluation(tmp_path):
    """Two at a time: a fit may run beside the base's evaluation, but no other evaluation starts before
    the base's has finished (each one scores the base's correct samples). Real subprocesses that
    append their start and end to a file."""
    events = tmp_path / "events"

    def step(what: str, seconds: float) -> tuple[str, list[str]]:
        code = (f"import time; f = open({str(events)!r}, 'a'); f.write({what!r} + ' start\\n'); f.flush(); "
                f"time.sleep({seconds}); f.write({what!r} + ' end\\n')")
        return what, [sys.executable, "-c", code]

    chains = [[step("fit a-s0", 0.1), step("evaluate a-s0", 0.0)], [step("evaluate base", 1.5)],
              [step("evaluate b-s0", 0.0)]]  # the base's chain is not first: the runner puts it first
    index = {what: i for i, (what, _) in enumerate([s for c in chains for s in c], 1)}
    assert sweep.run_chains(chains, 2, tmp_path, len(index), index) == 0
    lines = events.read_text().splitlines()
    base_end = lines.index("evaluate base end")
    assert lines.index("fit a-s0 start") < base_end  # the fit did not wait
    assert lines.index("evaluate a-s0 start") > base_end and lines.index("evaluate b-s0 start") > base_end
    failing = [[("evaluate base", [sys.executable, "-c", "raise SystemExit(3)"])], [step("evaluate c-s0", 0.0)]]
    index = {"evaluate base": 1, "evaluate c-s0": 2}
    assert sweep.run_chains(failing, 2, tmp_path, 2, index) == 3  # a failed base does not block the others
    assert "evaluate c-s0 end" in events.read_text()


def test_sweep_plan_and_resume(in_tmp):
    uri = f"sqlite:///{in_tmp}/mlruns/mlflow.db"
    (in_tmp / "mlruns").mkdir()
    configs = [str(REPO / "configs/a05.yaml"), str(REPO / "configs/rft.yaml")]
    steps = sweep.plan(configs, [0, 1], "exp", 32, ["val"], ["--trainer.max_steps", "5"], store=None)
    assert [s[0] for s in steps] == ["evaluate base", "fit a05-s0", "evaluate a05-s0", "fit a05-s1",
                                     "evaluate a05-s1", "fit rft-s0", "evaluate rft-s0", "fit rft-s1", "evaluate rft-s1"]
    fit = steps[3][1]
    assert fit[fit.index("--seed_everything") + 1] == "1" and fit[fit.index("--data.seed") + 1] == "1"
    assert fit[fit.index("--trainer.logger.init_args.run_name") + 1] == "a05-s1" and fit[-2:] == ["--trainer.max_steps", "5"]
    evaluate = steps[4][1]
    assert evaluate[evaluate.index("--ckpt_path") + 1] == "last" and evaluate[evaluate.index("--n") + 1] == "32"

    # a finished and evaluated run is skipped, an unfinished one resumes, a finished one is only evaluated
    client = MlflowClient(uri)
    exp = client.create_experiment("exp")
    done = client.create_run(exp, run_name="a05-s0")
    path = in_tmp / "eval_val.jsonl"
    path.write_text("{}\n")
    client.log_artifact(done.info.run_id, str(path), fr.EVAL_ARTIFACT_DIR)
    client.set_terminated(done.info.run_id)
    client.create_run(exp, run_name="a05-s1")  # still RUNNING: interrupted
    trained = client.create_run(exp, run_name="rft-s0")
    client.set_terminated(trained.info.run_id)
    steps = sweep.plan(configs, [0, 1], "exp", 32, ["val"], [], store=sweep.Store(uri, "exp"), base=False)
    names = [s[0] for s in steps]
    assert names == ["fit a05-s1", "evaluate a05-s1", "evaluate rft-s0", "fit rft-s1", "evaluate rft-s1"]
    assert steps[0][1][-2:] == ["--ckpt_path", "last"]
    assert tools.sweep_main([configs[0], "--seeds", "0", "--experiment", "exp", "--tracking_uri", uri, "--no_base",
                       "--dry_run"]) == 0
    assert tools.sweep_main([str(in_tmp / "nope.yaml"), "--dry_run"]) == 2


# -- the notebook ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_notebook_runs_top_to_bottom(in_tmp, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    uri = f"sqlite:///{in_tmp}/mlruns/mlflow.db"
    (in_tmp / "mlruns").mkdir()
    make_experiment(uri, "nb_test", problems=8, n=8)
    monkeypatch.setenv("LIT_ALPHA_TRACKING_URI", uri)
    monkeypatch.setenv("LIT_ALPHA_EXPERIMENT", "nb_test")
    monkeypatch.setenv("LIT_ALPHA_NUM_BOOT", "100")
    monkeypatch.setenv("LIT_ALPHA_GROUP_SEEDS", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(REPO / "notebooks" / "frontier.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(in_tmp)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    assert len(images) >= 2  # the frontier and the pass@k curves
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "a05" in text and st.GUESSER in text and "unsolved" in text


@pytest.mark.slow
def test_evaluate_last_checkpoint_of_a_trained_run(in_tmp, random_model_dir):
    """fit (as the sweep does) → evaluate --ckpt_path last attaches the tables to that very run."""
    from lit_alpha.cli.lightning import main as cli_main

    small = ["--config", str(REPO / "configs/a05.yaml"), "--config", str(REPO / "configs/countdown5/task.yaml"),
             "--model.model", str(random_model_dir),
             "--data.task.init_args.num_val", "3", "--data.val_samples", "2", "--data.prompts_per_step", "2",
             "--data.n_samples", "2", "--trainer.enable_progress_bar", "false",
             "--trainer.logger.init_args.experiment_name", "sw"]
    cli_main(["fit", *small, "--trainer.max_steps", "2", "--trainer.val_check_interval", "2",
              "--validate_at_start", "false", "--trainer.logger.init_args.run_name", "a05-s0"])
    assert evaluate_cmd.main([*small, "--ckpt_path", "last", "--run_name", "a05-s0", "--n", "2", "--num_problems", "2"]) == 0
    client = MlflowClient(f"sqlite:///{in_tmp}/mlruns/mlflow.db")
    exp = client.get_experiment_by_name("sw")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.run_name == "a05-s0" and "eval/val/pass_at_2" in run.data.metrics
    assert client.get_metric_history(run.info.run_id, "eval/val/pass_at_1")[0].step == 2
    assert sweep.Store(f"sqlite:///{in_tmp}/mlruns/mlflow.db", "sw").evaluated("a05-s0", ["val"])
