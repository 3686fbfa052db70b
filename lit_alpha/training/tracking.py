"""MLflow tracking: a logger for the default local sqlite store, the resolved config as artifact, and
reading the store back (:func:`store_client`, :func:`runs_named`: the one "runs of this name" query).

MLflow ≥ 3.17 refuses a bare ``./mlruns`` file store, so the default is a sqlite database inside
``mlruns/`` with artifacts beside it. MLflow also forbids ``@`` in metric names: ``val/pass@64`` is
stored as ``val/pass_at_64``.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import MLFlowLogger

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
DEFAULT_ARTIFACTS = "mlruns/artifacts"


def normalize_tracking_uri(tracking_uri: str) -> str:
    """A relative ``sqlite:///path.db`` made absolute (MLflow caches stores by URI string, and the
    store must be the one under the *current* directory)."""
    if tracking_uri.startswith("sqlite:///"):
        return f"sqlite:///{Path(tracking_uri.removeprefix('sqlite:///')).resolve()}"
    return tracking_uri


def check_writable(directory: Path, what: str) -> None:
    """Create ``directory`` if needed and prove a file can be written in it; else one clear error."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".lit_alpha_probe_")
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        raise ValueError(f"{what}: cannot write to {str(directory)!r} ({err.strerror or err})") from None


def mlflow_metric_name(name: str) -> str:
    """``val/pass@64`` → ``val/pass_at_64`` (MLflow allows only ``[\\w/.\\- :]``)."""
    return name.replace("@", "_at_")


def prepare_sqlite_store(tracking_uri: str, experiment_name: str, artifact_location: str | None) -> None:
    """Create a sqlite store's tables and the experiment under a file lock.

    Two runs started at once on a fresh store (``lit_alpha.analysis.sweep --jobs 2``, or a user's two
    terminals) otherwise race in MLflow's schema migration ("Online migration expected to match one
    row") or in experiment creation (unique name). ``tracking_uri`` must be absolute.
    """
    from mlflow.tracking import MlflowClient

    db = Path(tracking_uri.removeprefix("sqlite:///"))
    with open(db.with_name(db.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        client = MlflowClient(tracking_uri)
        if client.get_experiment_by_name(experiment_name) is None:
            client.create_experiment(experiment_name, artifact_location=artifact_location)


class MLflowLogger(MLFlowLogger):
    """Lightning's MLFlowLogger with lit_alpha's defaults.

    Args:
        experiment_name: all runs of a study go to one experiment, to compare them in the UI.
        run_name: the run's name (default: the stem of the first ``--config`` file).
        tracking_uri: MLflow store; a ``sqlite:///relative/path.db`` is created on first use.
        artifact_location: where a *new* experiment stores artifacts (a local directory or URI).
        tags: extra run tags.
        run_id: log into this existing run instead of creating one (set by ``--ckpt_path last``).
    """

    def __init__(
        self,
        experiment_name: str = "lit_alpha",
        run_name: str | None = None,
        tracking_uri: str = DEFAULT_TRACKING_URI,
        artifact_location: str | None = DEFAULT_ARTIFACTS,
        tags: dict[str, Any] | None = None,
        run_id: str | None = None,
    ) -> None:
        tracking_uri = normalize_tracking_uri(tracking_uri)
        if tracking_uri.startswith("sqlite:///"):  # fail now, in one line, not deep inside MLflow
            db = Path(tracking_uri.removeprefix("sqlite:///"))
            check_writable(db.parent, f"trainer.logger.init_args.tracking_uri {tracking_uri!r}")
            if db.exists() and not os.access(db, os.W_OK):
                raise ValueError(f"trainer.logger.init_args.tracking_uri {tracking_uri!r}: "
                                 f"the database {str(db)!r} is read-only")
        if artifact_location and "://" not in artifact_location:
            check_writable(Path(artifact_location).resolve(),
                           f"trainer.logger.init_args.artifact_location {artifact_location!r}")
            artifact_location = Path(artifact_location).resolve().as_uri()
        if tracking_uri.startswith("sqlite:///"):
            prepare_sqlite_store(tracking_uri, experiment_name, artifact_location)
        self._last_logged: tuple[int | None, dict[str, float]] | None = None
        super().__init__(
            experiment_name=experiment_name,
            run_name=run_name,
            tracking_uri=tracking_uri,
            artifact_location=artifact_location,
            tags=tags,
            log_model=False,
            run_id=run_id,
        )
        self.resumed = run_id is not None
        self.tracking_uri, self.experiment_name = tracking_uri, experiment_name

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        renamed = {mlflow_metric_name(k): v for k, v in metrics.items()}
        if self._last_logged == (step, renamed):
            return  # the same step's metrics flushed twice (see lit_alpha.training.checkpoint.Checkpoint)
        self._last_logged = (step, dict(renamed))
        super().log_metrics(renamed, step)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config → ``{"model.objective.init_args.alpha": 0.5, ...}`` (lists as text)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value if isinstance(value, (int, float, str, bool)) or value is None else str(value)
    return flat


class MLflowConfigSaver(SaveConfigCallback):
    """Log the fully resolved config as ``config.yaml`` and every field as an MLflow param.

    Replaces LightningCLI's SaveConfigCallback, which needs a logger with a local ``log_dir``.
    A resumed run (``--ckpt_path last``) keeps its params (MLflow params are immutable): only new
    keys are added, and the resumed config is saved as ``config.resumed.yaml``.
    """

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        text = self.parser.dump(self.config, skip_none=False)
        params = {k: v for k, v in flatten(self.config.as_dict()).items() if not k.startswith("config")}
        for logger in trainer.loggers:
            if isinstance(logger, MLFlowLogger):
                existing = logger.experiment.get_run(logger.run_id).data.params
                name = "config.resumed.yaml" if existing else "config.yaml"
                logger.experiment.log_text(logger.run_id, text, name)
                logger.log_hyperparams({k: v for k, v in params.items() if k not in existing})


# -- reading the run store ------------------------------------------------------------------------
def store_client(tracking_uri: str, create: bool = True):
    """An ``MlflowClient`` on the (normalised) store; None when ``create`` is False and the sqlite file
    does not exist yet (reading must not create an empty store)."""
    from mlflow.tracking import MlflowClient

    uri = normalize_tracking_uri(tracking_uri)
    if not create and uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return None
    return MlflowClient(uri)


def run_name_filter(name: str) -> str | None:
    """MLflow's ``filter_string`` for runs named exactly ``name``. MLflow's parser takes a string literal
    verbatim between its quotes (no escapes): single quotes, or double quotes when the name holds a
    single quote; None when it holds both (no literal can: :func:`runs_named` then filters itself)."""
    if "'" not in name:
        return f"attributes.run_name = '{name}'"
    if '"' not in name:
        return f'attributes.run_name = "{name}"'
    return None


def runs_named(client, experiment_id: str, name: str | None, max_results: int = 5000) -> list:
    """The runs of the experiment named exactly ``name`` (every run when None), newest first."""
    query = "" if name is None else (run_name_filter(name) or "")
    runs, token = [], None
    while len(runs) < max_results:
        page = client.search_runs([experiment_id], filter_string=query, order_by=["attributes.start_time DESC"],
                                  max_results=min(1000, max_results - len(runs)), page_token=token)
        runs += [r for r in page if name is None or r.info.run_name == name]
        token = page.token
        if not token:
            break
    return runs


def logger_settings(trainer_config: Any) -> dict[str, Any] | None:
    """``tracking_uri``, ``experiment_name``, ``run_name``, ``artifact_location`` of the config's MLflow
    logger (``trainer_config``: the ``trainer`` section), or None when it has none of ours."""
    logger = trainer_config.get("logger") if trainer_config is not None else None
    if logger is None or isinstance(logger, bool) or not hasattr(logger, "get"):
        return None
    init = logger.get("init_args")
    if init is None or "tracking_uri" not in init or "experiment_name" not in init:
        return None
    return {k: init.get(k) for k in ("tracking_uri", "experiment_name", "run_name", "artifact_location")}
