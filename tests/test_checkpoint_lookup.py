"""Checkpoint lookup over every layout a crash can leave: ``--ckpt_path last`` resolves to the checkpoint
with the highest step (``last.ckpt`` on a tie), whatever the modification times, with or without
``last.ckpt``, beside the temporaries of an interrupted atomic save."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from lit_alpha.training.checkpoint import atomic_torch_save, checkpoint_step, find_resume, newest_checkpoint


def save(directory: Path, name: str, step: int, mtime: float | None = None) -> Path:
    """A checkpoint file ``name`` holding ``global_step`` ``step`` (modification time ``mtime`` if given)."""
    path = directory / name
    torch.save({"global_step": step, "state_dict": {}}, path)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def partial_temporaries(directory: Path) -> list[Path]:
    """What an atomic save killed half-way leaves: ``.<name>.<random>.tmp``, truncated bytes."""
    out = []
    for name in ("last.ckpt", "step=99.ckpt"):
        tmp = directory / f".{name}.k3j2x_.tmp"
        tmp.write_bytes(b"PK\x03\x04 truncated")
        out.append(tmp)
    return out


def test_empty_or_missing_directory(tmp_path) -> None:
    assert newest_checkpoint(tmp_path) is None
    partial_temporaries(tmp_path)  # a crash during the very first save: still nothing to resume from
    assert newest_checkpoint(tmp_path) is None


def test_last_alone(tmp_path) -> None:
    last = save(tmp_path, "last.ckpt", 7)
    assert newest_checkpoint(tmp_path) == last and checkpoint_step(last) == 7


def test_last_wins_a_tie_with_its_step_file(tmp_path) -> None:
    save(tmp_path, "step=5.ckpt", 5)
    save(tmp_path, "step=10.ckpt", 10, mtime=2_000_000_000)  # written after last.ckpt by the clock
    last = save(tmp_path, "last.ckpt", 10, mtime=1_000_000_000)
    assert newest_checkpoint(tmp_path) == last


def test_without_last_the_highest_step_wins_whatever_the_mtimes(tmp_path) -> None:
    # modification times in the opposite order of the steps (copied back, restored from a backup)
    for i, step in enumerate((30, 20, 9, 10)):
        save(tmp_path, f"step={step}.ckpt", step, mtime=1_000_000_000 + 100 * i)
    assert newest_checkpoint(tmp_path).name == "step=30.ckpt"
    (tmp_path / "step=30.ckpt").unlink()
    (tmp_path / "step=20.ckpt").unlink()
    assert newest_checkpoint(tmp_path).name == "step=10.ckpt"  # by number: 10 > 9, not "10" < "9"


def test_a_step_file_newer_than_last_wins(tmp_path) -> None:
    """A crash between the step file's save and last.ckpt's: the step file holds the newer state."""
    save(tmp_path, "last.ckpt", 20, mtime=1_000_000_500)
    save(tmp_path, "step=20.ckpt", 20, mtime=1_000_000_400)
    newer = save(tmp_path, "step=30.ckpt", 30, mtime=1_000_000_000)  # its mtime even older
    assert newest_checkpoint(tmp_path) == newer


def test_partial_temporaries_are_never_chosen(tmp_path) -> None:
    save(tmp_path, "step=10.ckpt", 10, mtime=1_000_000_000)
    last = save(tmp_path, "last.ckpt", 10, mtime=1_000_000_000)
    for tmp in partial_temporaries(tmp_path):
        os.utime(tmp, (2_000_000_000, 2_000_000_000))  # the newest files on disk
    assert newest_checkpoint(tmp_path) == last
    last.unlink()
    assert newest_checkpoint(tmp_path).name == "step=10.ckpt"


def test_unreadable_or_unnamed_files(tmp_path) -> None:
    """A ``*.ckpt`` without a step in its name is read for its step; one that cannot be read is skipped."""
    save(tmp_path, "step=10.ckpt", 10)
    (tmp_path / "broken.ckpt").write_bytes(b"not a checkpoint")
    assert checkpoint_step(tmp_path / "broken.ckpt") is None
    assert newest_checkpoint(tmp_path).name == "step=10.ckpt"
    other = save(tmp_path, "manual.ckpt", 12)
    assert checkpoint_step(other) == 12 and newest_checkpoint(tmp_path) == other
    version = save(tmp_path, "step=15-v1.ckpt", 15)  # Lightning's name for a second save at one step
    assert checkpoint_step(version) == 15 and newest_checkpoint(tmp_path) == version
    (tmp_path / "subdir.ckpt").mkdir()  # not a file
    save(tmp_path, ".step=50.ckpt", 50)  # hidden: a sync tool's or an editor's copy, not a checkpoint
    assert newest_checkpoint(tmp_path) == version


def test_checkpoint_step_reads_the_name_before_the_file(tmp_path) -> None:
    named = save(tmp_path, "step=42.ckpt", 41)  # the name is Lightning's record of the step
    assert checkpoint_step(named) == 42
    assert checkpoint_step(save(tmp_path, "last.ckpt", 41)) == 41


# -- the atomic save that makes the layouts above the only ones -------------------------------------
class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("killed half-way through the save")


def test_atomic_save_leaves_the_previous_file_and_no_temporary(tmp_path) -> None:
    target = tmp_path / "last.ckpt"
    atomic_torch_save({"global_step": 1}, target)
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
    with pytest.raises(RuntimeError, match="half-way"):
        atomic_torch_save({"global_step": 2, "x": Unpicklable()}, target)
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
    assert torch.load(target, weights_only=False)["global_step"] == 1


def test_atomic_save_clears_the_temporaries_of_a_killed_save(tmp_path) -> None:
    stale = partial_temporaries(tmp_path)
    keep = tmp_path / ".other.ckpt.abc.tmp"  # another file's temporary: not this save's business
    keep.write_bytes(b"x")
    atomic_torch_save({"global_step": 3}, tmp_path / "last.ckpt")
    assert not stale[0].exists() and stale[1].exists() and keep.exists()
    assert checkpoint_step(tmp_path / "last.ckpt") == 3
    atomic_torch_save({"global_step": 4}, tmp_path / "sub" / "step=4.ckpt")  # makes the directory
    assert checkpoint_step(tmp_path / "sub" / "step=4.ckpt") == 4


# -- find_resume: the run and the file --ckpt_path last resumes -------------------------------------
def test_find_resume_picks_the_highest_step_of_the_newest_run_with_checkpoints(tmp_path) -> None:
    import time

    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    root = tmp_path / "mlruns"
    assert find_resume(uri, "exp", "run", root) is None  # no store yet
    client = MlflowClient(uri)
    exp = client.create_experiment("exp")
    older = client.create_run(exp, run_name="run")
    time.sleep(0.01)
    newer = client.create_run(exp, run_name="run")
    client.create_run(exp, run_name="other")
    ckpts = root / exp / older.info.run_id / "checkpoints"
    ckpts.mkdir(parents=True)
    save(ckpts, "last.ckpt", 20, mtime=1_000_000_900)
    save(ckpts, "step=30.ckpt", 30, mtime=1_000_000_000)
    partial_temporaries(ckpts)
    # the newer run crashed before its first checkpoint: resume the older one, from step 30
    resume = find_resume(uri, "exp", "run", root)
    assert resume is not None and resume.run_id == older.info.run_id
    assert resume.ckpt_path == ckpts / "step=30.ckpt" and resume.step == 30 and resume.run_name == "run"
    newer_ckpts = root / exp / newer.info.run_id / "checkpoints"
    newer_ckpts.mkdir(parents=True)
    save(newer_ckpts, "step=5.ckpt", 5)
    resume = find_resume(uri, "exp", "run", root)
    assert resume.run_id == newer.info.run_id and resume.step == 5
    assert find_resume(uri, "exp", "missing", root) is None and find_resume(uri, "nope", "run", root) is None
