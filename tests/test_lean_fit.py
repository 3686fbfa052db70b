"""``fit --config configs/lean/a025.yaml`` end to end, with the two user fields set, against the
stand-in Lean REPL: prompts from the carried theorem sets, the real sampler, the rules, the REPL worker
pool, rewards into α-DPG, metrics into MLflow."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import store_client

from lit_alpha.cli.lightning import main

HERE = Path(__file__).resolve().parent


@pytest.mark.slow
def test_lean_config_fits_against_the_standin_repl(in_tmp, random_model_dir):
    project = in_tmp / "lean-project"
    project.mkdir()
    (project / "lakefile.lean").write_text('import Lake\nrequire REPL from git "https://github.com/leanprover-community/repl"\n')
    log = in_tmp / "repl_log.jsonl"
    main([
        "fit", "--config", str(HERE.parent / "configs" / "lean" / "a025.yaml"),
        "--model.model", str(random_model_dir),  # the two fields a user sets
        "--data.task.init_args.project_dir", str(project),
        "--data.task.init_args.repl_cmd", f"{sys.executable} {HERE / 'lean_standin.py'} --log {log}",
        "--data.task.init_args.workers", "1", "--data.task.init_args.memory_mb", "0",
        "--data.task.init_args.num_val", "2",
        "--data.sampler.class_path", "lean_fit_helpers.ScriptedLeanSampler",
        "--data.prompts_per_step", "2", "--data.n_samples", "4", "--data.val_samples", "4",
        "--data.eval_prompts_per_batch", "2", "--data.max_new_tokens", "4",
        "--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--trainer.precision", "32-true",
        "--trainer.enable_checkpointing", "false", "--trainer.callbacks", "[]",
        "--trainer.enable_progress_bar", "false",
    ])
    client = store_client()
    (run,) = client.search_runs([client.get_experiment_by_name("lit_alpha_lean").experiment_id])
    assert run.info.status == "FINISHED"
    metrics = {k: [m.value for m in client.get_metric_history(run.info.run_id, k)]
               for k in ["train/reward_mean", "verifier/ok_frac", "verifier/cheat_frac", "verifier/parse_frac",
                         "train/loss", "val/pass_at_1"]}
    assert metrics["train/reward_mean"] == [0.5, 0.5]  # the honest half verified by the REPL
    assert metrics["verifier/cheat_frac"] == [0.25, 0.25] and metrics["verifier/parse_frac"] == [0.25, 0.25]
    assert metrics["val/pass_at_1"] == [0.5, 0.5]  # step 0 and step 2
    sent = [json.loads(line) for line in log.read_text().splitlines()]
    proofs = [s["cmd"] for s in sent if "env" in s and not s["cmd"].startswith("#print axioms")]
    assert proofs and all(p.rstrip().endswith("omega") for p in proofs)  # sorry/junk never reached Lean
    assert any(s["cmd"].startswith("#print axioms") for s in sent)  # and the axioms were checked
