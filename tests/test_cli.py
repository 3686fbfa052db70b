"""The CLI end to end: fit through LightningCLI on the embedded model into a real MLflow store,
then validate/test a checkpoint; config parsing and overrides for every shipped YAML."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import store_client
from mlflow.tracking import MlflowClient

from lit_alpha.cli.lightning import main

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))
SMALL = [
    "--trainer.max_steps", "4", "--trainer.val_check_interval", "2",
    "--data.task.init_args.num_val", "6", "--data.task.init_args.num_test", "6",
    "--data.val_samples", "8", "--data.eval_prompts_per_batch", "3",
    "--data.prompts_per_step", "4", "--data.n_samples", "4",
    "--trainer.enable_progress_bar", "false",
]


def _run(client: MlflowClient):
    exp = client.get_experiment_by_name("lit_alpha")
    assert exp is not None, "no MLflow experiment was created"
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])


@pytest.mark.slow
def test_fit_then_validate_and_test(in_tmp, capsys):
    main(["fit", "--config", str(REPO / "configs/a05.yaml"), *SMALL])
    client = store_client()
    (run,) = _run(client)
    # the fit ends with its closing table: the base (step 0) against the last validation, and where to look
    out = capsys.readouterr().out
    table = out[out.index("validation\n"):]
    header, base, last, change = table.splitlines()[1:5]
    assert header.split() == ["pass@1", "pass@8", "distinct", "correct"]
    assert base.startswith("base (step 0)") and last.startswith("step 4") and change.startswith("change")
    final = run.data.metrics
    assert last.split()[-3:] == [f"{100 * final['val/pass_at_1']:.1f}", f"{100 * final['val/pass_at_8']:.1f}",
                                 f"{final['val/distinct_correct']:.2f}"]
    assert f"MLflow run: {run.info.run_id}" in table and "mlflow ui --backend-store-uri sqlite:///" in table
    assert "model:" in table and "/model" in table
    assert run.info.status == "FINISHED" and run.info.run_name == "a05"
    for name in ["train/loss", "train/reward_mean", "train/zero_success_frac", "train/z_mean",
                 "train/pseudo_reward_clip_frac", "train/distinct_correct", "perf/sample_s"]:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, name)]
        assert steps == [0, 1, 2, 3], (name, steps)
    for k in [1, 2, 4, 8]:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, f"val/pass_at_{k}")]
        assert steps == [0, 2, 4], (k, steps)  # base model at step 0, then every 2 steps to the end
    assert run.data.params["model.objective.init_args.alpha"] == "0.5"
    assert run.data.params["data.n_samples"] == "4"
    config = client.download_artifacts(run.info.run_id, "config.yaml", str(in_tmp))
    assert yaml.safe_load(Path(config).read_text())["model"]["objective"]["init_args"]["alpha"] == 0.5
    ckpts = list(Path("mlruns").rglob("last.ckpt"))
    assert len(ckpts) == 1

    # validate and test a checkpoint: new runs, same experiment
    main(["validate", "--config", str(REPO / "configs/a05.yaml"), *SMALL, "--ckpt_path", str(ckpts[0])])
    main(["test", "--config", str(REPO / "configs/a05.yaml"), *SMALL])  # the base model
    runs = _run(client)
    assert len(runs) == 3
    assert "test/pass_at_8" in runs[0].data.metrics and "val/pass_at_8" in runs[1].data.metrics
    # the checkpoint holds only the policy (the base is rebuilt from `model`)
    import torch
    state = torch.load(ckpts[0], map_location="cpu", weights_only=False)["state_dict"]
    assert state and all(k.startswith("policy.") for k in state)


def test_grpo_beta0_skips_the_base_forward_unless_asked(in_tmp):
    """GRPO with β = 0 never reads π_base: no base forward (no ``perf/base_logprob_s``, no KL metrics);
    ``--model.score_base true`` brings both back; α-DPG always scores it (the a05 fit above)."""
    tiny = [*SMALL, "--trainer.max_steps", "2", "--trainer.val_check_interval", "2"]
    main(["fit", "--config", str(REPO / "configs/grpo.yaml"), *tiny])
    main(["fit", "--config", str(REPO / "configs/grpo.yaml"), *tiny, "--model.score_base", "true"])
    scored, skipped = _run(store_client())  # newest first
    assert "train/loss" in skipped.data.metrics and "perf/sample_s" in skipped.data.metrics
    for key in ["perf/base_logprob_s", "train/kl_to_base", "train/kl"]:
        assert key not in skipped.data.metrics, key
        assert key in scored.data.metrics, key
    history = store_client().get_metric_history(scored.info.run_id, "train/kl_to_base")
    first = min(history, key=lambda m: m.step)
    assert first.step == 0 and first.value == pytest.approx(0.0, abs=1e-6)  # before any update π_θ = π_base


@pytest.mark.parametrize("config", CONFIGS, ids=[str(c.relative_to(REPO / "configs")) for c in CONFIGS])
def test_every_config_parses(config, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["objective"]["class_path"].startswith("lit_alpha.objectives.")
    if config.parent == REPO / "configs":  # the compared method configs share one budget
        assert printed["data"]["prompts_per_step"] * printed["data"]["n_samples"] == 256
        assert printed["trainer"]["max_steps"] == 200 and printed["model"]["lr"] == 3e-4


def test_overrides_from_the_command_line():
    out = subprocess.run(
        [sys.executable, "-m", "lit_alpha", "fit", "--config", str(REPO / "configs/a05.yaml"),
         "--model.objective.init_args.alpha", "0.25", "--trainer.max_steps", "50",
         "--data.n_samples", "8", "--print_config"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    printed = yaml.safe_load(out.stdout)
    assert printed["model"]["objective"]["init_args"]["alpha"] == 0.25
    assert printed["trainer"]["max_steps"] == 50 and printed["data"]["n_samples"] == 8


def test_help_lists_documented_fields():
    out = subprocess.run([sys.executable, "-m", "lit_alpha", "fit", "--help"], capture_output=True,
                         text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0
    assert "completions per prompt in training" in out.stdout  # attribute docstrings become --help
