"""A run built from its config, and the checkpoint a command names: the one place for both.

``fit``/``validate``/``test`` build their run through LightningCLI itself (:mod:`lit_alpha.cli.lightning`);
``evaluate`` and ``export`` build the same objects with :func:`build_run` (LightningCLI with
``run=False``), so a config means the same to every command. ``--ckpt_path last`` is resolved by
:func:`lit_alpha.training.checkpoint.find_last` for all three: the newest checkpoint (by step) of the most recent MLflow run with
the config's experiment and run name (:func:`lit_alpha.training.checkpoint.find_resume`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from lit_alpha.cli.lightning import TRAINER_DEFAULTS, LitAlphaCLI
from lit_alpha.data.datamodule import RolloutDataModule
from lit_alpha.errors import UserError
from lit_alpha.module import AlphaModule
from lit_alpha.training.checkpoint import Resume, find_last
from lit_alpha.training.tracking import logger_settings


def run_config_args(config: Sequence[str], overrides: Sequence[str], experiment: str | None = None) -> list[str]:
    """The run's LightningCLI arguments: ``--config`` files, then the overrides."""
    args = [a for c in config for a in ("--config", c)] + list(overrides)
    return args + (["--trainer.logger.init_args.experiment_name", experiment] if experiment else [])


@dataclass
class Run:
    """The objects of a run, as ``python -m lit_alpha fit --config ...`` would build them."""

    cli: Any  # LitAlphaCLI (run=False)
    module: Any  # AlphaModule
    datamodule: Any  # RolloutDataModule

    @property
    def config(self) -> Any:
        return self.cli.config

    @property
    def logger(self) -> dict[str, Any] | None:
        """The config's MLflow logger settings (:func:`logger_settings`)."""
        return logger_settings(self.config.get("trainer"))

    @property
    def root(self) -> str:
        """Where checkpoints live: ``trainer.default_root_dir``."""
        return str(self.config.trainer.get("default_root_dir") or "mlruns")

    def config_yaml(self) -> str:
        return self.cli.parser.dump(self.config, skip_none=False)

    def checkpoint(self, ckpt_path: str, run_name: str | None) -> Resume | str:
        """``ckpt_path`` as a file: ``last`` → the newest checkpoint of run ``run_name`` (a
        :class:`Resume`, which names its run), else the path itself, which must be a file."""
        if ckpt_path != "last":
            if not Path(ckpt_path).is_file():
                raise UserError(f"ckpt_path: {ckpt_path!r} is not a checkpoint file")
            return ckpt_path
        settings = self.logger
        if settings is None:
            raise UserError("ckpt_path: last needs the config's MLflow logger (give a checkpoint file)")
        resume = find_last(settings, run_name, self.root)
        if resume is None:
            raise UserError(f"ckpt_path: last: no checkpoint of a run named {run_name!r} in experiment "
                            f"{settings['experiment_name']!r}")
        return resume


def build_run(config_args: Sequence[str]) -> Run:
    """The run's module and datamodule from config files and overrides (no trainer is run)."""
    warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
    cli = LitAlphaCLI(AlphaModule, RolloutDataModule, args=list(config_args), run=False,
                      save_config_callback=None, trainer_defaults=TRAINER_DEFAULTS,
                      subclass_mode_model=False, subclass_mode_data=False)
    return Run(cli, cli.model, cli.datamodule)
