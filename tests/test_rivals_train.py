"""Every rival config trains for 2 steps through the CLI on the embedded model into a real MLflow store.

Uses ``lit_alpha/assets/countdown-tiny`` (skipped until it exists). ``LIT_ALPHA_TEST_MODEL=/some/dir``
runs the same checks on another local model directory (e.g. a random tiny Llama).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from conftest import store_client

from lit_alpha.cli.lightning import main
from lit_alpha.models import EMBEDDED

REPO = Path(__file__).resolve().parents[1]
MODEL = os.environ.get("LIT_ALPHA_TEST_MODEL")
HAVE_MODEL = bool(MODEL) or (EMBEDDED["countdown-tiny"] / "config.json").exists()
CONFIGS = ["rloo", "grpo_passk", "grpo_passk_analytic", "grpo_unlikely", "grpo_smooth", "grpo_erc",
           "rft_offline", "a_schedule"]
SMALL = [
    "--trainer.max_steps", "2", "--trainer.val_check_interval", "2",
    "--data.task.init_args.num_val", "4", "--data.task.init_args.num_test", "4",
    "--data.val_samples", "4", "--data.eval_prompts_per_batch", "4",
    "--data.prompts_per_step", "4", "--data.n_samples", "4",
    "--trainer.enable_progress_bar", "false", "--trainer.enable_checkpointing", "false",
    "--trainer.callbacks", "[]",
]
# the diagnostics each objective logs besides the common ones
OWN_METRICS = {
    "rloo": ["train/zero_success_frac"],
    "grpo_passk": ["train/passk_active_frac", "train/clip_frac"],
    "grpo_passk_analytic": ["train/passk_expected"],
    "grpo_unlikely": ["train/unlikely_scale_mean", "train/shaped_reward_mean"],
    "grpo_smooth": ["train/smoothing_term_mean"],
    "grpo_erc": ["train/entropy_ratio_clip_frac", "train/entropy_ratio_mean"],
    "rft_offline": ["train/kept_frac", "train/offline_accept_frac"],
    "a_schedule": ["train/alpha", "train/z_mean"],
}


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_MODEL, reason="lit_alpha/assets/countdown-tiny/config.json does not exist yet "
                                           "(the embedded model is being trained); set LIT_ALPHA_TEST_MODEL to override")
@pytest.mark.parametrize("name", CONFIGS)
def test_rival_config_trains(name: str, in_tmp: Path) -> None:
    extra = ["--model.model", MODEL] if MODEL else []
    if name == "grpo_passk_analytic":  # k = G = 4 would make every group's σ zero; k = 2 of 4 moves
        extra += ["--model.objective.init_args.k", "2"]
    main(["fit", "--config", str(REPO / "configs" / f"{name}.yaml"), *SMALL, *extra])
    client = store_client()
    exp = client.get_experiment_by_name("lit_alpha")
    # newest run of this config (MLflow caches a store per URI string, so in one process a relative
    # sqlite URI keeps pointing at the first test's database even after chdir)
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])
    run = next(r for r in runs if r.info.run_name == name)
    assert run.info.status == "FINISHED"
    for metric in ["train/loss", "train/advantage_mean", "train/entropy", *OWN_METRICS[name]]:
        history = client.get_metric_history(run.info.run_id, metric)
        assert [m.step for m in history] == [0, 1], (metric, history)
        assert all(math.isfinite(m.value) for m in history), (metric, history)
    if name == "a_schedule":  # Linear 0 → 0.9 over max_steps = 2: α = 0 at step 0, 0.45 at step 1
        alphas = [m.value for m in client.get_metric_history(run.info.run_id, "train/alpha")]
        assert alphas == pytest.approx([0.0, 0.45])
    if name == "rft_offline":
        assert len(list(Path("mlruns/offline_rft").glob("*.pt"))) == 1
    assert "val/pass_at_4" in run.data.metrics
