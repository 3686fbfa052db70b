"""``python -m lit_alpha {fit,validate,test} --config configs/a05.yaml [--any.field value]``."""

from __future__ import annotations

import warnings
from pathlib import Path

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from lit_alpha.data.datamodule import RolloutDataModule
from lit_alpha.module import AlphaModule
from lit_alpha.tracking import DEFAULT_ARTIFACTS, DEFAULT_TRACKING_URI, MLflowConfigSaver

# Known, harmless noise: the frozen base is in eval mode on purpose; the rest is upstream chatter.
warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")
warnings.filterwarnings("ignore", message=".*LeafSpec.*")
warnings.filterwarnings("ignore", message=".*does not have many workers.*")

TRAINER_DEFAULTS = {
    "logger": {
        "class_path": "lit_alpha.tracking.MLflowLogger",
        "init_args": {"tracking_uri": DEFAULT_TRACKING_URI, "artifact_location": DEFAULT_ARTIFACTS},
    },
    "default_root_dir": "mlruns",
    "max_steps": 200,
    "val_check_interval": 50,
    "check_val_every_n_epoch": None,
    "num_sanity_val_steps": 0,
    "log_every_n_steps": 1,
    "gradient_clip_val": 1.0,
}


class LitAlphaCLI(LightningCLI):
    """LightningCLI over :class:`AlphaModule` and :class:`RolloutDataModule`, logging to MLflow."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--validate_at_start", type=bool, default=True,
            help="fit: evaluate the starting policy first, so every run logs its step-0 val/pass@k",
        )

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand) if self.subcommand else self.config
        logger = config.trainer.get("logger") if config is not None else None
        files = config.get("config") or [] if config is not None else []
        if files and logger is not None and not isinstance(logger, bool):
            init = logger.get("init_args") if hasattr(logger, "get") else None
            if init is not None and init.get("run_name") is None:
                init["run_name"] = Path(str(files[0])).stem

    def before_fit(self) -> None:
        config = self.config_init["fit"]
        if config.get("validate_at_start") and config.get("ckpt_path") is None:
            self.trainer.validate(self.model, datamodule=self.datamodule)


def main(args: list[str] | None = None) -> LitAlphaCLI:
    return LitAlphaCLI(
        AlphaModule,
        RolloutDataModule,
        args=args,
        save_config_callback=MLflowConfigSaver,
        save_config_kwargs={"save_to_log_dir": False},
        trainer_defaults=TRAINER_DEFAULTS,
        subclass_mode_model=False,
        subclass_mode_data=False,
    )


if __name__ == "__main__":
    main()
