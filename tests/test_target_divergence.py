"""Divergence to the target p ∝ π_base·v from the base model's own verified samples (metrics/target.py)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO
from mlflow.tracking import MlflowClient

from lit_alpha.analysis import evaluate as ev
from lit_alpha.cli import evaluate as evaluate_cmd
from lit_alpha.metrics.target import problem_divergences, sequence_logprobs


def test_problem_divergences_golden():
    # two distinct correct sequences seen 3 and 1 times: c = 4 of n = 8, so ẑ = 1/2, w = [3/4, 1/4]
    lp_base, lp_theta = np.array([-1.0, -2.0]), np.array([-2.0, -2.0])
    out = problem_divergences(lp_theta, lp_base, np.array([3.0, 1.0]), c=4, n=8, alpha=0.5)
    # KL = Σ w (lp_base − lp_θ) − log ẑ = 0.75·1 + 0.25·0 + log 2
    assert out["fkl_to_target"] == pytest.approx(0.75 + math.log(2), abs=1e-12)
    # log π/p = lp_θ − lp_base + log ẑ = [−1 − log 2, −log 2]; E_p[(π/p)^½] = 0.75·e^{−(1+log 2)/2} + 0.25·e^{−log 2/2}
    e = 0.75 * math.exp(-(1 + math.log(2)) / 2) + 0.25 * math.exp(-math.log(2) / 2)
    assert out["alpha_div_to_target"] == pytest.approx((1 - e) / 0.25, abs=1e-12)
    # π_θ = π_base: the forward KL is −log Z, and D_α is (1 − Z^α)/(α(1−α))
    same = problem_divergences(lp_base, lp_base, np.array([3.0, 1.0]), c=4, n=8, alpha=0.25)
    assert same["fkl_to_target"] == pytest.approx(math.log(2))
    assert same["alpha_div_to_target"] == pytest.approx((1 - 0.5**0.25) / (0.25 * 0.75))
    # D_α → KL(p‖π) as α → 0 (continuity), and no α column at the ends
    small = problem_divergences(lp_theta, lp_base, np.array([3.0, 1.0]), c=4, n=8, alpha=1e-6)
    assert small["alpha_div_to_target"] == pytest.approx(out["fkl_to_target"], rel=1e-5)
    assert "alpha_div_to_target" not in problem_divergences(lp_theta, lp_base, np.ones(2), 4, 8, alpha=1.0)
    # extreme gaps stay finite
    far = problem_divergences(np.array([-900.0, -1.0]), np.array([-1.0, -900.0]), np.ones(2), 2, 256, alpha=0.5)
    assert all(math.isfinite(v) for v in far.values())


def test_sequence_logprobs_match_a_plain_forward(random_model_dir):
    from lit_alpha.models import load_policy

    policy, tok = load_policy(str(random_model_dir))
    prompt = tok("3 4 5 6 | 24 = ")["input_ids"]
    seqs = [[5, 6, 7, tok.eos_token_id], [8, tok.eos_token_id]]
    got = sequence_logprobs(policy, prompt, seqs, tok.pad_token_id)
    for seq, value in zip(seqs, got):
        ids = torch.tensor([prompt + seq])
        with torch.no_grad():
            logp = policy(ids).logits.log_softmax(-1)[0, len(prompt) - 1 : -1]  # [L, V]
        want = logp.gather(-1, torch.tensor(seq)[:, None]).sum().item()
        assert value == pytest.approx(want, abs=1e-4)


@pytest.mark.slow
def test_evaluate_logs_divergence_to_target(in_tmp):
    """base evaluation keeps its correct samples; a checkpoint of the same weights is −log ẑ from the target."""
    from lit_alpha.models import load_policy

    common = ["--config", str(REPO / "configs/a05.yaml"), "--config", str(REPO / "configs/countdown5/task.yaml"), "--n", "16", "--split", "val", "--num_problems", "4",
              "--trainer.logger.init_args.experiment_name", "tgt"]
    assert evaluate_cmd.main(common) == 0
    client = MlflowClient(f"sqlite:///{in_tmp}/mlruns/mlflow.db")
    exp = client.get_experiment_by_name("tgt")
    (base,) = client.search_runs([exp.experiment_id])
    table = client.download_artifacts(base.info.run_id, "eval/eval_val.jsonl", str(in_tmp))
    rows = [json.loads(x) for x in Path(table).read_text().splitlines()]
    solved = [r for r in rows if r["c"] > 0]
    assert solved, "countdown-tiny solves some of 4 problems with 16 samples"
    for r in rows:
        assert sum(r["correct_samples"].values()) == r["c"]
        if r["c"]:
            assert r["fkl_to_target"] == pytest.approx(-math.log(r["c"] / r["n"]), abs=1e-6)
        else:
            assert r["fkl_to_target"] is None
    assert base.data.metrics["eval/val/fkl_to_target"] == pytest.approx(
        np.mean([-math.log(r["c"] / r["n"]) for r in solved]), abs=1e-6)
    assert base.data.metrics["eval/val/alpha_div_to_target_problems"] == len(solved)  # α = 0.5 from a05.yaml

    # a checkpoint of other weights, scored against the base run's samples (found by name)
    policy, _ = load_policy("countdown-tiny")
    torch.manual_seed(0)
    state = {f"policy.{k}": v + 0.05 * torch.randn_like(v) for k, v in policy.state_dict().items()}
    ckpt = in_tmp / "x.ckpt"
    torch.save({"state_dict": state, "global_step": 3}, ckpt)
    assert evaluate_cmd.main([*common, "--ckpt_path", str(ckpt), "--out", "tables"]) == 0
    tuned = [json.loads(x) for x in (in_tmp / "tables" / "eval_val.jsonl").read_text().splitlines()]
    by_id = {r["problem_id"]: r for r in rows}
    for r in tuned:
        base_row = by_id[r["problem_id"]]
        assert (r["fkl_to_target"] is None) == (base_row["c"] == 0)  # defined where the *base* solves
        if base_row["c"]:
            assert math.isfinite(r["fkl_to_target"]) and r["fkl_to_target"] != pytest.approx(base_row["fkl_to_target"])
    assert evaluate_cmd.main([*common, "--ckpt_path", str(ckpt), "--target", "none", "--out", "t2"]) == 0
    assert "fkl_to_target" not in (in_tmp / "t2" / "eval_val.jsonl").read_text()


def test_frontier_reports_divergence_with_bootstrap_interval(tmp_path):
    from lit_alpha.analysis import frontier as fr
    from lit_alpha.analysis import stats as st
    from lit_alpha.analysis import tables
    from lit_alpha.tasks.countdown import CountdownTask

    records = CountdownTask(num_val=6).problems("val")
    runs = []
    for name, fkl in [("base", [0.5, None, 1.0, 2.0, None, 0.5]), ("a0-s0", [0.4, None, 0.8, 1.0, None, 0.3])]:
        rows = []
        for r, value in zip(records, fkl):
            row = ev.problem_row(r, [1.0, 0.0] if value is not None else [0.0, 0.0], ["x", None])
            row["fkl_to_target"] = value
            rows.append(row)
        runs.append(st.RunResult.from_rows(name, rows))
    a = tables.analyse(runs, "val", num_boot=200)
    by = {row["run"]: row for row in a.target_rows()}
    assert by["base"]["fkl_to_target"] == pytest.approx(1.0) and by["base"]["problems"] == 4
    assert by["a0-s0"]["fkl_to_target"] == pytest.approx(0.625)
    assert by["a0-s0"]["fkl_to_target_lo"] <= 0.625 <= by["a0-s0"]["fkl_to_target_hi"]
    runs[1].diversity["alpha_div_to_target"] = np.where(np.isnan(runs[1].diversity["fkl_to_target"]), np.nan, 0.5)
    a = tables.analyse(runs, "val", num_boot=200)  # a column only some runs have (α-DPG's D_α)
    assert np.isnan(a.target_rows()[0]["alpha_div_to_target"]) and a.target_rows()[1]["alpha_div_to_target"] == 0.5
    files = fr.report(a, tmp_path, echo=lambda s: None)
    assert (tmp_path / "target_val.csv") in files and "a0-s0" in (tmp_path / "target_val.csv").read_text()
    assert not np.isnan(a.diversity_rows()[0]["fkl_to_target"])
