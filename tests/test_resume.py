"""Exact resume after SIGKILL, atomic checkpoint writes, keep-last-k, RNG state in checkpoints.

The end-to-end test trains N=6 steps straight, and twice more with a process that SIGKILLs itself
right after a checkpoint is on disk (once after a plain step, once after a step followed by a
validation), then resumes each with ``--ckpt_path last`` in a fresh process. Every logged metric
(per step, timings aside) and the final weights must match the straight run, in one MLflow run.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from lit_alpha.cli.lightning import main
from lit_alpha.training.checkpoint import AtomicCheckpointIO, atomic_torch_save

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
N = 6
ARGS = [
    "fit", "--config", str(REPO / "configs/a_schedule.yaml"),  # α schedule: its position must survive
    "--trainer.max_steps", str(N), "--trainer.val_check_interval", "2",
    "--data.task.init_args.num_val", "6", "--data.task.init_args.num_test", "6",
    "--data.val_samples", "4", "--data.eval_prompts_per_batch", "6",
    "--data.prompts_per_step", "4", "--data.n_samples", "4", "--data.max_new_tokens", "16",
    "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
    "--ckpt_path", "last",
]


def _checkpoint_config(directory: Path, every: int) -> str:
    path = directory / f"ckpt_every_{every}.yaml"
    path.write_text(
        "trainer:\n  callbacks:\n    - class_path: lit_alpha.training.checkpoint.Checkpoint\n"
        f"      init_args: {{every_n_train_steps: {every}, keep_last: 2}}\n"
    )
    return str(path)


def _cli(cwd: Path, *extra: str) -> subprocess.CompletedProcess:
    # the repository first: the subprocess runs this checkout's lit_alpha, not an installed copy
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(TESTS), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "lit_alpha", *ARGS, *extra], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _history(store: Path) -> tuple[list, dict[str, dict[int, float]], dict[str, list[int]]]:
    """Runs, and per metric {step: last value} and the raw list of steps (to spot duplicates)."""
    client = MlflowClient(f"sqlite:///{store / 'mlruns/mlflow.db'}")
    exp = client.get_experiment_by_name("lit_alpha")
    runs = client.search_runs([exp.experiment_id])
    values: dict[str, dict[int, float]] = {}
    steps: dict[str, list[int]] = {}
    for key in runs[0].data.metrics:
        if key.startswith("perf/"):
            continue
        hist = sorted(client.get_metric_history(runs[0].info.run_id, key), key=lambda m: (m.step, m.timestamp))
        values[key] = {m.step: m.value for m in hist}
        steps[key] = [m.step for m in hist]
    return runs, values, steps


def _last_state(store: Path) -> dict:
    (path,) = store.glob("mlruns/*/*/checkpoints/last.ckpt")
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """N steps without interruption (in-process: the reference)."""
    root = tmp_path_factory.mktemp("straight")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        main([*ARGS, "--config", _checkpoint_config(root, 3)])
    finally:
        os.chdir(cwd)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("every,kill_at", [(3, 3), (2, 4)], ids=["after-train-step", "after-validation"])
def test_sigkill_then_resume_matches_straight_run(straight, tmp_path, every, kill_at):
    ckpt_config = _checkpoint_config(tmp_path, every)
    killed = _cli(tmp_path, "--config", ckpt_config, "--trainer.plugins", "fault_injection.KillAfterSave",
                  "--trainer.plugins.step", str(kill_at))
    assert killed.returncode == -9, killed.stderr[-3000:]
    ckpt_dir = next(tmp_path.glob("mlruns/*/*/checkpoints"))
    assert torch.load(ckpt_dir / "last.ckpt", weights_only=True)["global_step"] == kill_at

    resumed = _cli(tmp_path, "--config", ckpt_config)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"step {kill_at})" in resumed.stderr  # it said where it resumed from

    runs, got, steps = _history(tmp_path)
    (run,) = runs  # the resumed fit logged into the killed run, not a new one
    assert run.info.status == "FINISHED"
    _, want, _ = _history(straight)
    assert set(got) == set(want)
    for key in want:
        assert sorted(got[key]) == sorted(want[key]), key
        assert np.allclose([got[key][s] for s in want[key]], list(want[key].values()), rtol=1e-5, atol=1e-7), key
    assert steps["val/pass_at_1"] == [0, 2, 4, 6]  # step-0 validation not rerun, none skipped
    assert steps["train/loss"] == list(range(N))  # no step lost, none logged twice
    assert got["train/alpha"][N - 1] == pytest.approx(0.9 * (N - 1) / N)  # the α schedule's position

    a, b = _last_state(straight), _last_state(tmp_path)
    assert a["global_step"] == b["global_step"] == N
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=1e-5, atol=1e-6)
    kept = sorted(p.name for p in ckpt_dir.glob("*.ckpt"))  # keep-last-2, across the restart
    assert kept == sorted({"last.ckpt", f"step={N}.ckpt", f"step={N - every}.ckpt"})


# -- atomic writes --------------------------------------------------------------------------------
def test_atomic_save_keeps_the_old_file_when_a_save_dies(tmp_path, monkeypatch):
    target = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 1, "w": torch.ones(3)}, target)
    real_save = torch.save

    def dies_half_way(obj, f, *args, **kwargs):
        f.write(b"partial checkpoint bytes")
        raise KeyboardInterrupt  # e.g. Ctrl-C, or a crash, half-way through writing

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        AtomicCheckpointIO().save_checkpoint({"step": 2, "w": torch.zeros(3)}, target)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(target, weights_only=True)["step"] == 1  # the previous checkpoint, intact
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary left behind


def test_atomic_save_writes_beside_the_target_fsyncs_and_cleans_stale_temporaries(tmp_path, monkeypatch):
    target = tmp_path / "last.ckpt"
    stale = tmp_path / ".last.ckpt.abc123.tmp"  # what a SIGKILL during an earlier save leaves
    stale.write_bytes(b"junk")
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    seen: list[str] = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (seen.append(str(a)), real_replace(a, b)))
    atomic_torch_save({"x": torch.arange(4)}, target)
    assert synced, "the data was not fsynced before the rename"
    assert seen and Path(seen[0]).parent == tmp_path  # same directory: os.replace is atomic
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
    assert torch.equal(torch.load(target, weights_only=True)["x"], torch.arange(4))


# -- global RNG streams travel in the checkpoint ----------------------------------------------------
def test_checkpoint_restores_python_numpy_torch_rng(random_model_dir):
    from lit_alpha.module import AlphaModule

    module = AlphaModule(model=str(random_model_dir))
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    checkpoint = {"state_dict": {}}
    module.on_save_checkpoint(checkpoint)
    path = Path(str(random_model_dir)) / "rng.ckpt"
    atomic_torch_save(checkpoint, path)
    after = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)  # a fresh process draws differently
    module.on_load_checkpoint(torch.load(path, weights_only=True))  # weights_only: safe to load
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == after


# -- extending a finished fit ------------------------------------------------------------------------
def _fit_in(root: Path, steps: int) -> None:
    """One in-process fit of α=0.5 (constant, so a shorter run is a prefix of a longer one)."""
    args = [a if a != str(REPO / "configs/a_schedule.yaml") else str(REPO / "configs/a05.yaml") for a in ARGS]
    args[args.index("--trainer.max_steps") + 1] = str(steps)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        main(args)  # the config's checkpoint every 50 steps: last.ckpt is written when the fit ends
    finally:
        os.chdir(cwd)


@pytest.mark.slow
def test_extending_a_finished_fit_logs_each_step_at_its_own_step(tmp_path):
    """4 steps, finished; then ``--ckpt_path last`` with max_steps 6: the metrics (at each step) and
    the weights equal those of 6 straight steps (the new steps were logged one step late before)."""
    straight, extended = tmp_path / "straight", tmp_path / "extended"
    straight.mkdir(), extended.mkdir()
    _fit_in(straight, N)
    _fit_in(extended, 4)
    assert _last_state(extended)["global_step"] == 4
    _fit_in(extended, N)
    runs, got, steps = _history(extended)
    (run,) = runs
    assert run.info.status == "FINISHED"
    _, want, _ = _history(straight)
    assert set(got) == set(want)
    assert steps["train/loss"] == list(range(N))  # step 4 logged at 4, not 5; none twice
    assert steps["val/pass_at_1"] == [0, 2, 4, 6]
    # Lightning's own "epoch" counter is the one difference: the finished fit closed its epoch, so the
    # extension runs in epoch 1 (the prompts stream is endless; nothing else reads the epoch)
    assert got.pop("epoch") == {**want.pop("epoch"), 4: 1.0, 5: 1.0}
    for key in want:
        assert sorted(got[key]) == sorted(want[key]), key
        assert np.allclose([got[key][s] for s in want[key]], list(want[key].values()), rtol=1e-5, atol=1e-7), key
    a, b = _last_state(straight), _last_state(extended)
    assert a["global_step"] == b["global_step"] == N
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=1e-5, atol=1e-6)
