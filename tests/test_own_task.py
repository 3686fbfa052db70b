"""Bring your own task: the README's example (examples/own_task: a JSONL of prompts + answers and a
plain reward function) runs with ``python -m lit_alpha fit --config ...``; a reward function that
raises, hangs or returns garbage costs its samples a counted 0 verdict, never the run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import store_client

from lit_alpha.errors import UserError
from lit_alpha.tasks.prompts import PromptsTask
from lit_alpha.verifiers.guarded import GuardedVerifier

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples/own_task"


def test_the_example_checker_scores_rows() -> None:
    task = PromptsTask(str(EXAMPLE / "problems.jsonl"), str(EXAMPLE / "reward.py") + ":reward")
    record = task.problems("val")[-1]  # {"prompt": "15 2 | 13 = ", "answer": 13, "numbers": [15, 2]}
    assert task.prompt(record) == "15 2 | 13 = " and len(task.problems("val")) == 12
    verdicts = GuardedVerifier(task.verifier).verify_batch([record] * 4, ["15-2", " 15 - 2 ", "2-15", "__import__('os')"])
    assert [v.score for v in verdicts] == [1.0, 1.0, 0.0, 0.0]
    assert verdicts[1].answer == "15 - 2"


def _reward_module(tmp_path: Path) -> str:
    (tmp_path / "bad_rewards.py").write_text(
        "import time\n"
        "def reward(prompts, completions, **row):\n"
        "    c = completions[0]\n"
        "    if c == 'raise': raise RuntimeError('boom')\n"
        "    if c == 'hang': time.sleep(60)\n"
        "    if c == 'nan': return [float('nan')]\n"
        "    if c == 'two': return [1.0, 1.0]\n"
        "    if c == 'big': return [2.0]\n"
        "    return [1.0 if c == row['answer'][0] else 0.0]\n")
    (tmp_path / "rows.jsonl").write_text('{"prompt": "p", "answer": "yes"}\n{"prompt": "q", "answer": "no", "split": "val"}\n')
    return str(tmp_path / "bad_rewards.py") + ":reward"


def test_a_hostile_reward_function_is_contained_and_counted(tmp_path: Path) -> None:
    task = PromptsTask(str(tmp_path / "rows.jsonl"), _reward_module(tmp_path), verify_timeout_s=5.0)
    # worker processes, as in a run (the limit also covers a worker's start-up: not too tight on a busy machine)
    guard = GuardedVerifier(task.verifier, task.verify_timeout_s, workers=2)
    try:
        record = task.problems("train")[0]
        completions = ["yes", "no", "raise", "hang", "nan", "two", "big", "yes"]
        verdicts = guard.verify_batch([record] * len(completions), completions)
    finally:
        guard.close()
    assert [v.score for v in verdicts] == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    assert [v.reason.split(":")[0] for v in verdicts] == ["ok", "wrong", "crash", "timeout", "garbage", "garbage",
                                                         "garbage", "ok"]
    assert guard.faults == {"crash": 1, "timeout": 1, "garbage": 3}


def test_bad_task_input_names_the_field(tmp_path: Path) -> None:
    spec = _reward_module(tmp_path)
    with pytest.raises(UserError, match=r"data.task.init_args.reward: .* has no function 'nope'"):
        PromptsTask(str(tmp_path / "rows.jsonl"), spec.replace(":reward", ":nope"))
    with pytest.raises(UserError, match=r"data.task.init_args.reward: cannot import 'no_such_module_x'"):
        PromptsTask(str(tmp_path / "rows.jsonl"), "no_such_module_x:reward")
    (tmp_path / "bad.jsonl").write_text('{"prompt": "p"}\n{"answer": 3}\n')
    with pytest.raises(UserError, match=r"data.task.init_args.file: .*bad.jsonl:2: 'prompt' must be"):
        PromptsTask(str(tmp_path / "bad.jsonl"), spec)


@pytest.mark.slow
def test_the_readme_example_runs_with_fit(tmp_path: Path) -> None:
    """``python -m lit_alpha fit --config examples/own_task/config.yaml`` from a copy of the repository
    layout (the example and the base config it builds on), with a smaller budget."""
    shutil.copytree(EXAMPLE, tmp_path / "examples/own_task")
    (tmp_path / "configs").mkdir()
    shutil.copy(REPO / "configs/base.yaml", tmp_path / "configs/base.yaml")
    small = ["--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--data.prompts_per_step", "4",
             "--data.n_samples", "4", "--data.val_samples", "4", "--trainer.enable_progress_bar", "false",
             "--save_model", "false"]
    out = subprocess.run([sys.executable, "-m", "lit_alpha", "fit", "--config", "examples/own_task/config.yaml", *small],
                         cwd=tmp_path, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr[-3000:]
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        client = store_client()
        (run,) = client.search_runs([client.get_experiment_by_name("lit_alpha").experiment_id])
    finally:
        os.chdir(here)
    assert run.info.run_name == "config" and run.info.status == "FINISHED"
    assert run.data.params["data.task.class_path"] == "lit_alpha.tasks.PromptsTask"
    assert run.data.params["data.max_new_tokens"] == "16" and run.data.params["model.objective.init_args.normalizer"] == "16.0"
    assert 0.0 <= run.data.metrics["val/pass_at_4"] <= 1.0 and "train/reward_mean" in run.data.metrics
    assert run.data.metrics["verifier/faults_total"] == 0.0
