"""Checkpoints that survive a crash, and ``--ckpt_path last`` that finds them.

* :class:`AtomicCheckpointIO` writes every checkpoint to a temporary file in the same directory,
  fsyncs it and ``os.replace``-s it over the target: a crash (even SIGKILL or a power cut) during a
  save leaves the previous file intact, never a truncated ``last.ckpt``.
* :class:`Checkpoint` is Lightning's ``ModelCheckpoint`` set up to keep the last k step checkpoints
  plus ``last.ckpt``, written only once everything of the step is on record: when a validation
  follows the step, the save waits for its end (so a resumed run never skips that validation), and
  the step's training metrics are flushed to the logger before the file is written (so a crash just
  after a save loses no metric).
* :func:`find_last` (over :func:`find_resume`) resolves ``last`` for every command: the newest
  checkpoint of the most recent MLflow run with the same experiment and run name, so a resumed fit
  continues that very run. :func:`load_checkpoint` loads a checkpoint's policy into a module.
"""

from __future__ import annotations

import glob
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import lightning as L
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lit_alpha.errors import UserError
from lit_alpha.training.tracking import normalize_tracking_uri, runs_named, store_client

_TMP_SUFFIX = ".tmp"


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (best effort: some file systems refuse to open a directory)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` that never leaves a partial file at ``path``."""
    import torch

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in glob.glob(glob.escape(str(target.parent / f".{target.name}.")) + f"*{_TMP_SUFFIX}"):
        try:  # temporaries of an earlier save that was killed half-way
            os.remove(stale)
        except OSError:
            pass
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=_TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(target.parent)


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO whose local saves are atomic (temporary file + fsync + ``os.replace``).

    Remote paths (``s3://`` ...) fall back to Lightning's writer.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not support storage_options, got {storage_options}")
        if not _is_local_file_protocol(str(path)):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        atomic_torch_save(checkpoint, str(path).removeprefix("file://"))


class Checkpoint(ModelCheckpoint):
    """Keep the last ``keep_last`` step checkpoints and ``last.ckpt``, each one crash-consistent.

    Files: ``step=<k>.ckpt`` and ``last.ckpt`` in the run's checkpoint directory
    (``mlruns/<experiment id>/<run id>/checkpoints``). Resume with ``--ckpt_path last``.

    Args:
        every_n_train_steps: save after every this many optimizer steps.
        keep_last: how many step checkpoints to keep (older ones are deleted); ``last.ckpt`` is extra.
        dirpath: the directory; None: the run's checkpoint directory.
    """

    def __init__(self, every_n_train_steps: int = 50, keep_last: int = 2, dirpath: str | None = None) -> None:
        if every_n_train_steps < 1:
            raise ValueError(f"every_n_train_steps must be >= 1, got {every_n_train_steps}")
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        super().__init__(
            dirpath=dirpath,
            filename="step={step}",
            auto_insert_metric_name=False,
            monitor="step",
            mode="max",
            save_top_k=keep_last,
            save_last=True,
            every_n_train_steps=every_n_train_steps,
        )

    def _monitor_candidates(self, trainer: L.Trainer) -> dict[str, Any]:
        import torch

        candidates = super()._monitor_candidates(trainer)
        # the module logs a "step" metric with its evaluations; the checkpoint's step is global_step
        candidates["step"] = torch.tensor(trainer.global_step)
        return candidates

    @staticmethod
    def _validation_follows(trainer: L.Trainer) -> bool:
        """Will a validation run right after this training batch (before the next one)?"""
        loop = trainer.fit_loop.epoch_loop
        try:
            return bool(trainer.enable_validation and loop._should_check_val_fx(trainer.fit_loop._data_fetcher))
        except Exception:  # private Lightning API: if it moves, save at once (Lightning's behaviour)
            return False

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        due = self._every_n_train_steps >= 1 and trainer.global_step % self._every_n_train_steps == 0
        if due and not self._should_skip_saving_checkpoint(trainer) and self._validation_follows(trainer):
            self._defer_save_until_validation = True  # saved in on_validation_end, after the metrics
            return
        if due:
            flush = getattr(trainer._logger_connector, "update_train_step_metrics", None)
            if flush is not None:  # the step's metrics reach the logger before the file exists
                flush()
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The ``last.ckpt`` of a finished fit (when no step checkpoint fell on the last step)."""
        self._saving_at_train_end = True
        try:
            super().on_train_end(trainer, pl_module)
        finally:
            self._saving_at_train_end = False

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> dict[str, Any]:
        """Store the logger's step counter as Lightning's restore expects it: one below the step.

        Lightning counts logged steps in ``fit_loop.epoch_loop._batches_that_stepped`` and bumps it
        after each batch's hooks; on restore it adds the bump back, assuming the checkpoint was
        written before it (true in ``on_train_batch_end`` and ``on_validation_end``). A ``last.ckpt``
        written in ``on_train_end`` comes after the bump, so extending a finished fit with a larger
        ``trainer.max_steps`` logged every new step one step late; it is stored pre-bump here."""
        state = super().on_save_checkpoint(trainer, pl_module, checkpoint)
        if getattr(self, "_saving_at_train_end", False):
            loop_state = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.state_dict", {})
            if loop_state.get("_batches_that_stepped") == trainer.global_step:  # private API: else leave it
                loop_state["_batches_that_stepped"] = trainer.global_step - 1
        return state


# -- resuming ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Resume:
    """Where ``--ckpt_path last`` resumes: a checkpoint file and the MLflow run it belongs to."""

    ckpt_path: Path
    run_id: str
    run_name: str | None
    step: int | None


def _checkpoint_step(path: Path) -> int | None:
    """``global_step`` stored in the checkpoint at ``path`` (memory-mapped, nothing else read); None if
    the file cannot be read."""
    import torch

    try:
        return int(torch.load(path, map_location="cpu", weights_only=False, mmap=True)["global_step"])
    except Exception:
        return None


_STEP_NAME = re.compile(r"^step=(\d+)(?:-v\d+)?\.ckpt$")


def checkpoint_step(path: Path) -> int | None:
    """The optimizer step a checkpoint file holds: from its name (``step=<k>.ckpt``, ``step=<k>-v<j>.ckpt``)
    when it has one, else read from the file (``global_step``); None if neither tells (an unreadable file)."""
    match = _STEP_NAME.match(path.name)
    return int(match.group(1)) if match else _checkpoint_step(path)


def newest_checkpoint(directory: Path) -> Path | None:
    """The checkpoint of ``directory`` with the highest step; ``last.ckpt`` wins a tie.

    Every layout a crash can leave resolves to the newest state on disk: ``last.ckpt`` present or
    absent, a step file newer than ``last.ckpt`` (a crash between the two saves), modification times
    out of order (copies, restores, clock changes: they are never consulted), and the temporaries of
    an interrupted :func:`atomic_torch_save` (``.<name>.<random>.tmp``: not ``*.ckpt``, never chosen).
    A file whose step cannot be told (unreadable, no step in its name) is skipped."""
    best: tuple[int, int, str] | None = None  # (step, last.ckpt first on a tie, name: a stable order)
    chosen: Path | None = None
    for path in directory.glob("*.ckpt"):
        if not path.is_file() or path.name.startswith("."):
            continue
        step = checkpoint_step(path)
        if step is None:
            continue
        rank = (step, int(path.name == "last.ckpt"), path.name)
        if best is None or rank > best:
            best, chosen = rank, path
    return chosen


def find_resume(tracking_uri: str, experiment_name: str, run_name: str | None, root: str | os.PathLike) -> Resume | None:
    """The newest checkpoint of the most recent run named ``run_name`` (any run if None) in the
    experiment, looked for in ``<root>/<experiment id>/<run id>/checkpoints``; None if there is none."""
    client = store_client(tracking_uri, create=False)  # no store yet: nothing to resume (and do not create one)
    experiment = client.get_experiment_by_name(experiment_name) if client is not None else None
    if experiment is None:
        return None
    runs = runs_named(client, experiment.experiment_id, run_name, max_results=100)
    for run in runs:
        directory = Path(root) / experiment.experiment_id / run.info.run_id / "checkpoints"
        ckpt = newest_checkpoint(directory) if directory.is_dir() else None
        if ckpt is not None:
            return Resume(ckpt, run.info.run_id, run.info.run_name, _checkpoint_step(ckpt))
    return None


def find_last(settings: Mapping[str, Any], run_name: str | None, root: str | None) -> Resume | None:
    """``--ckpt_path last``: the newest checkpoint of the latest run named ``run_name`` in the logger's
    experiment (``settings``: :func:`lit_alpha.training.tracking.logger_settings`), looked for under ``root`` (default ``mlruns``);
    None when there is none. An unreadable store is a config error naming the field."""
    uri = normalize_tracking_uri(str(settings["tracking_uri"]))
    try:
        return find_resume(uri, str(settings["experiment_name"]), run_name, root or "mlruns")
    except Exception as err:  # noqa: BLE001 - an unreadable store is a config problem
        raise UserError(f"trainer.logger.init_args.tracking_uri {uri!r}: cannot read the MLflow store "
                        f"to resume from ({type(err).__name__}: {err})") from err


def load_checkpoint(module: L.LightningModule, ckpt_path: str | os.PathLike) -> int:
    """Load the policy weights of a lit_alpha checkpoint into ``module`` (the frozen base's entries may
    be absent); returns its global step. A checkpoint of another model is an error naming the path."""
    import torch

    state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    weights = state.get("state_dict", state)
    missing, unexpected = module.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not k.startswith("base.")]
    if missing or unexpected:
        raise UserError(f"ckpt_path {str(ckpt_path)!r}: does not match the model "
                        f"(missing {missing[:3]}, unexpected {list(unexpected)[:3]})")
    return int(state.get("global_step", 0))
