"""MLflow tracking: a logger for the default local sqlite store, and the resolved config as artifact.

MLflow ≥ 3.17 refuses a bare ``./mlruns`` file store, so the default is a sqlite database inside
``mlruns/`` with artifacts beside it. MLflow also forbids ``@`` in metric names: ``val/pass@64`` is
stored as ``val/pass_at_64``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import MLFlowLogger

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
DEFAULT_ARTIFACTS = "mlruns/artifacts"


def mlflow_metric_name(name: str) -> str:
    """``val/pass@64`` → ``val/pass_at_64`` (MLflow allows only ``[\\w/.\\- :]``)."""
    return name.replace("@", "_at_")


class MLflowLogger(MLFlowLogger):
    """Lightning's MLFlowLogger with lit_alpha's defaults.

    Args:
        experiment_name: all runs of a study go to one experiment, to compare them in the UI.
        run_name: the run's name (default: the stem of the first ``--config`` file).
        tracking_uri: MLflow store; a ``sqlite:///relative/path.db`` is created on first use.
        artifact_location: where a *new* experiment stores artifacts (a local directory or URI).
        tags: extra run tags.
    """

    def __init__(
        self,
        experiment_name: str = "lit_alpha",
        run_name: str | None = None,
        tracking_uri: str = DEFAULT_TRACKING_URI,
        artifact_location: str | None = DEFAULT_ARTIFACTS,
        tags: dict[str, Any] | None = None,
    ) -> None:
        if tracking_uri.startswith("sqlite:///"):
            # absolute, so the store is the one under the *current* directory (MLflow caches
            # stores by URI string) and the database's folder exists before MLflow opens it
            db = Path(tracking_uri.removeprefix("sqlite:///")).resolve()
            db.parent.mkdir(parents=True, exist_ok=True)
            tracking_uri = f"sqlite:///{db}"
        if artifact_location and "://" not in artifact_location:
            artifact_location = Path(artifact_location).resolve().as_uri()
        super().__init__(
            experiment_name=experiment_name,
            run_name=run_name,
            tracking_uri=tracking_uri,
            artifact_location=artifact_location,
            tags=tags,
            log_model=False,
        )

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        super().log_metrics({mlflow_metric_name(k): v for k, v in metrics.items()}, step)


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
    """

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        text = self.parser.dump(self.config, skip_none=False)
        params = {k: v for k, v in flatten(self.config.as_dict()).items() if not k.startswith("config")}
        for logger in trainer.loggers:
            if isinstance(logger, MLFlowLogger):
                logger.experiment.log_text(logger.run_id, text, "config.yaml")
                logger.log_hyperparams(params)
