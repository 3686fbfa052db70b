"""Bad input ends in one clear line naming the field, file or row, a non-zero exit, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lit_alpha.cli.lightning import main
from lit_alpha.errors import UserError
from lit_alpha.tasks.countdown import CountdownTask

REPO = Path(__file__).resolve().parents[1]
A05 = str(REPO / "configs/a05.yaml")
SMALL = ["--trainer.max_steps", "1", "--validate_at_start", "false", "--trainer.limit_val_batches", "0",
         "--data.prompts_per_step", "2", "--data.n_samples", "2", "--data.max_new_tokens", "4",
         "--trainer.enable_progress_bar", "false"]


def _error(capsys, *args: str) -> str:
    """Run the CLI in-process; return its stderr, checking exit code 2 and the one-line form."""
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return err


def test_unknown_config_key(in_tmp, capsys):
    bad = in_tmp / "bad.yaml"
    bad.write_text(f"__base__: {A05}\nmodel:\n  lr: 3.0e-4\n  learning_rate: 1\n")
    assert "model.learning_rate" in _error(capsys, "fit", "--config", str(bad))


def test_wrong_type(in_tmp, capsys):
    err = _error(capsys, "fit", "--config", A05, "--data.n_samples", "many")
    assert 'data.n_samples' in err and "many" in err
    assert len(err.strip().splitlines()) <= 4  # no usage wall


@pytest.mark.parametrize("alpha", ["1.5", "-0.1", ".nan"])
def test_alpha_outside_unit_interval(in_tmp, capsys, alpha):
    err = _error(capsys, "fit", "--config", A05, "--model.objective.init_args.alpha", alpha)
    assert "error: model.objective.init_args.alpha must be in [0, 1]" in err


def test_alpha_schedule_outside_unit_interval(in_tmp, capsys):
    err = _error(capsys, "fit", "--config", str(REPO / "configs/a_schedule.yaml"),
                 "--model.objective.init_args.alpha.init_args.end", "1.5")
    assert "model.objective.init_args.alpha must be in [0, 1]" in err


def test_missing_model_directory(in_tmp, capsys):
    err = _error(capsys, "fit", "--config", A05, "--model.model", str(in_tmp / "no_such_model"))
    assert "error: model.model:" in err and "no_such_model" in err


def test_missing_checkpoint(in_tmp, capsys):
    err = _error(capsys, "validate", "--config", A05, "--ckpt_path", "nowhere/last.ckpt")
    assert "error: ckpt_path: 'nowhere/last.ckpt' is not a checkpoint file" in err


@pytest.mark.parametrize("uri", ["sqlite:////proc/lit_alpha_test/mlflow.db", "sqlite:////proc/mlflow.db"])
def test_mlflow_store_that_cannot_be_written(in_tmp, capsys, uri):
    err = _error(capsys, "fit", "--config", A05, *SMALL, "--trainer.logger.init_args.tracking_uri", uri)
    assert f"error: trainer.logger.init_args.tracking_uri '{uri}': cannot write" in err


# -- dataset rows: a JSONL problems file, checked row by row -----------------------------------------
def _jsonl(path: Path, rows: list[str]) -> str:
    path.write_text("\n".join(rows) + "\n")
    return str(path)


GOOD_ROW = json.dumps({"numbers": [3, 7, 9, 12], "target": 59})


@pytest.mark.parametrize("row,why", [
    ('{"numbers": [3, 7, 9, 12], "target": 59', "not valid JSON"),
    ('[3, 7, 9, 12]', "expected a JSON object"),
    ('{"numbers": [3, "7"], "target": 10}', "'numbers' must hold integers"),
    ('{"numbers": [3, 7], "target": 1.5}', "'target' must be an integer"),
    ('{"numbers": [3, 7], "target": 10, "split": "dev"}', "'split' must be one of"),
    ('{"numbers": [3, 7], "target": 10, "answer": "3+7"}', "unknown field(s) ['answer']"),
    ('{"target": 10}', "'numbers' must be a list"),
])
def test_malformed_dataset_row_names_file_and_line(tmp_path, row, why):
    path = _jsonl(tmp_path / "problems.jsonl", [GOOD_ROW, "", row, GOOD_ROW])
    with pytest.raises(UserError) as err:
        CountdownTask(problems_file=path)
    assert f"data.task.init_args.problems_file: {path}:3: {why}" in str(err.value)


def test_unreadable_dataset_file(tmp_path):
    with pytest.raises(UserError, match=r"problems_file: cannot read .*missing\.jsonl.*No such file"):
        CountdownTask(problems_file=str(tmp_path / "missing.jsonl"))
    with pytest.raises(UserError, match="holds no problems"):
        CountdownTask(problems_file=_jsonl(tmp_path / "empty.jsonl", [""]))


def test_problems_file_feeds_the_splits(tmp_path):
    import numpy as np

    path = _jsonl(tmp_path / "p.jsonl", [
        GOOD_ROW, json.dumps({"nums": [1, 2, 3], "target": 6, "id": "x"}),
        json.dumps({"numbers": [2, 5], "target": 10, "split": "test"}),
    ])
    task = CountdownTask(problems_file=path, num_val=3)
    assert [r["id"] for r in task.problems("test")] == ["p-3"]
    assert len(task.problems("val")) == 3  # absent from the file: generated as usual
    drawn = {task.sample_train(np.random.default_rng(i))["id"] for i in range(20)}
    assert drawn == {"p-1", "x"}
    assert task.verifier.verify(task.problems("test")[0], "2*5").correct


def test_malformed_dataset_row_through_the_cli(in_tmp, capsys):
    path = _jsonl(in_tmp / "problems.jsonl", [GOOD_ROW, '{"numbers": [1], "target": "x"}'])
    err = _error(capsys, "fit", "--config", A05, "--config", str(REPO / "configs/countdown5/task.yaml"),
                 "--data.task.init_args.problems_file", path)
    assert f"error: data.task.init_args.problems_file: {path}:2: 'target' must be an integer" in err


# -- the console entry point itself: exit code, one line on stderr, LIT_ALPHA_DEBUG ---------------
def test_console_entry_point_exits_2_with_one_line(tmp_path):
    args = [sys.executable, "-m", "lit_alpha", "fit", "--config", A05, "--model.objective.init_args.alpha", "2"]
    env = {k: v for k, v in os.environ.items() if k != "LIT_ALPHA_DEBUG"}
    out = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, env=dict(env, OMP_NUM_THREADS="1"),
                         timeout=300)
    assert out.returncode == 2
    assert "error: model.objective.init_args.alpha must be in [0, 1], got 2.0" in out.stderr
    assert "Traceback" not in out.stderr


def test_debug_env_shows_the_real_exception(in_tmp, monkeypatch):
    monkeypatch.setenv("LIT_ALPHA_DEBUG", "1")
    with pytest.raises(UserError, match="alpha must be in"):
        main(["fit", "--config", A05, "--model.objective.init_args.alpha", "2"])
