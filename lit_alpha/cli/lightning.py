"""``python -m lit_alpha <command> ...``: ``fit``, ``validate``, ``test`` (LightningCLI, here:
``--config configs/a05.yaml [--any.field value]``) and ``evaluate``, ``sweep``, ``frontier``,
``export``, ``pretrain``, ``convert`` (:mod:`lit_alpha.cli.commands`).

Bad input (a config field, a file, a data row, an unwritable MLflow store) ends in one line
``error: ...`` naming it and exit code 2; a run stopped by non-finite losses ends with exit code 1.
``LIT_ALPHA_DEBUG=1`` shows the traceback too. ``fit --ckpt_path last`` resumes the most recent run
of the same name (see :mod:`lit_alpha.training.checkpoint`) and keeps logging into that MLflow run.
"""

from __future__ import annotations

import inspect
import sys
import warnings
from pathlib import Path
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

import lit_alpha
from lit_alpha.cli.commands import LIGHTNING, OTHERS, OneLineErrors, command_main, overview
from lit_alpha.cli.config import PARSER_MODE, run_name_from
from lit_alpha.data.datamodule import RolloutDataModule
from lit_alpha.errors import NonFiniteError, UserError, debugging
from lit_alpha.models.export import SaveModel
from lit_alpha.module import AlphaModule
from lit_alpha.training.checkpoint import AtomicCheckpointIO, find_last
from lit_alpha.training.plots import PassAtKPlot
from lit_alpha.training.precision import auto_precision
from lit_alpha.training.report import RunReport
from lit_alpha.training.tracking import DEFAULT_ARTIFACTS, DEFAULT_TRACKING_URI, MLflowConfigSaver, logger_settings

# Known, harmless noise: the frozen base is in eval mode on purpose; the rest is upstream chatter.
warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")
warnings.filterwarnings("ignore", message=".*LeafSpec.*")
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=".*training_step.* returned `None`.*")  # a skipped non-finite step

_PACKAGE_DIR = str(Path(lit_alpha.__file__).parent)
_LIGHTNING_CKPT_NAMES = {"best", "hpc", "registry"}  # ckpt_path values Lightning resolves itself

TRAINER_DEFAULTS = {
    # The trainer budget every run shares, written here once (configs override it field by field;
    # ``--print_config`` shows it): 200 optimizer steps, validation every 50 (and at step 0, see
    # ``--validate_at_start``), grad-clip 1.0, crash-safe checkpoints every 50 steps (the last 2 kept,
    # plus last.ckpt), the learning rate logged, everything to the local MLflow store.
    "logger": {
        "class_path": "lit_alpha.training.tracking.MLflowLogger",
        "init_args": {"experiment_name": "lit_alpha", "tracking_uri": DEFAULT_TRACKING_URI,
                      "artifact_location": DEFAULT_ARTIFACTS},
    },
    "default_root_dir": "mlruns",
    "max_steps": 200,
    "val_check_interval": 50,
    "check_val_every_n_epoch": None,
    "num_sanity_val_steps": 0,
    "log_every_n_steps": 1,
    "gradient_clip_val": 1.0,
    "enable_model_summary": False,
}
DEFAULT_CALLBACKS = [  # configurable (a config's trainer.callbacks replaces the list), unlike TRAINER_DEFAULTS'
    {"class_path": "lit_alpha.training.checkpoint.Checkpoint", "init_args": {"every_n_train_steps": 50, "keep_last": 2}},
    {"class_path": "lightning.pytorch.callbacks.LearningRateMonitor", "init_args": {"logging_interval": "step"}},
]


class _Parser(OneLineErrors, LightningArgumentParser):
    """Parse errors in two lines (the error, naming the key; where to find help), not a usage wall."""


class LitAlphaCLI(LightningCLI):
    """LightningCLI over :class:`AlphaModule` and :class:`RolloutDataModule`, logging to MLflow."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.set_defaults({"trainer.callbacks": DEFAULT_CALLBACKS})
        parser.add_argument(
            "--validate_at_start", type=bool, default=True,
            help="fit: evaluate the starting policy first, so every run logs its step-0 val/pass@k",
        )
        parser.add_argument(
            "--save_model", type=bool, default=True,
            help="fit: at the end, write the final policy and tokenizer with save_pretrained (safetensors) "
                 "to the run's model/ directory and log it to the MLflow run (lit_alpha.models.export)",
        )

    def __init__(self, *args: Any, parser_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("parser_class", _Parser)
        super().__init__(*args, parser_kwargs={"parser_mode": PARSER_MODE, **(parser_kwargs or {})}, **kwargs)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        self._args = [str(a) for a in (sys.argv[1:] if args is None else args)] if not isinstance(args, dict) else []
        super().parse_arguments(parser, args)

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand) if self.subcommand else self.config
        logger = config.trainer.get("logger") if config is not None else None
        name = run_name_from(self._args)  # the first --config of the command line, not its base
        if name is not None and config is not None and logger is not None and not isinstance(logger, bool):
            init = logger.get("init_args") if hasattr(logger, "get") else None
            if init is not None and init.get("run_name") is None:
                init["run_name"] = name
        if config is not None and self.subcommand is not None:
            self._resolve_ckpt_path(config)
        if config is not None:
            self._pick_precision(config)

    def _pick_precision(self, config: Any) -> None:
        """``trainer.precision`` not given: bf16-mixed for a pretrained model where bf16 is native, else
        float32 (:func:`lit_alpha.training.precision.auto_precision`); said on stderr either way."""
        trainer, model = config.get("trainer"), config.get("model")
        if trainer is None or model is None or trainer.get("precision") is not None:
            return
        precision, why = auto_precision(str(model.get("model", "")), str(trainer.get("accelerator") or "auto"),
                                        str(model.get("dtype") or "float32"))
        if precision is not None:
            trainer["precision"] = precision
        print(f"precision: {why}; --trainer.precision overrides", file=sys.stderr)

    def _resolve_ckpt_path(self, config: Any) -> None:
        """``last`` → the newest checkpoint of the latest run of this name (fit: continue that MLflow run);
        a local path that is not a file → one clear error."""
        ckpt = config.get("ckpt_path")
        if ckpt is None or ckpt in _LIGHTNING_CKPT_NAMES or (ckpt != "last" and "://" in str(ckpt)):
            return
        if ckpt != "last":
            if not Path(ckpt).is_file():
                raise UserError(f"ckpt_path: {ckpt!r} is not a checkpoint file")
            return
        settings = logger_settings(config.get("trainer"))
        if settings is None:
            return  # not an MLflow logger of ours: Lightning's own "last"
        resume = find_last(settings, settings.get("run_name"), config.trainer.get("default_root_dir"))
        if resume is None:
            print(f"ckpt_path last: no checkpoint of a run named {settings['run_name']!r} in experiment "
                  f"{settings['experiment_name']!r}: starting a new run", file=sys.stderr)
            config.ckpt_path = None
            return
        config.ckpt_path = str(resume.ckpt_path)
        if self.subcommand == "fit":
            config.trainer.get("logger").get("init_args")["run_id"] = resume.run_id
        print(f"ckpt_path last: {resume.ckpt_path} (run {resume.run_name!r} {resume.run_id}, "
              f"step {resume.step})", file=sys.stderr)

    def instantiate_classes(self) -> None:
        """As LightningCLI's, but an error while building the objects becomes one :class:`UserError`
        naming the config field (or file, or row) at fault."""
        try:
            super().instantiate_classes()
        except UserError:
            raise
        except Exception as err:  # noqa: BLE001 - reported in one line; LIT_ALPHA_DEBUG=1 re-raises
            raise UserError(self._explain(err)) from err

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # crash-safe saves by default
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        trainer.callbacks.append(PassAtKPlot())  # every validation: the pass@k curve PNG to MLflow
        config = self.config.get(self.subcommand) if self.subcommand else None
        if self.subcommand == "fit" and config is not None and config.get("save_model", True):
            trainer.callbacks.append(SaveModel(model=config.model.get("model"), dtype=config.model.get("dtype")))
        if self.subcommand == "fit":
            trainer.callbacks.append(RunReport())  # after SaveModel: the closing table names the model's path
        return trainer

    def _explain(self, err: BaseException) -> str:
        """The innermost error raised by lit_alpha code in ``err``'s chain (else the innermost one),
        prefixed with the config key of the class whose constructor raised it."""
        chain: list[BaseException] = []
        while err is not None and all(err is not e for e in chain):
            chain.append(err)
            err = err.__cause__ or (None if err.__suppress_context__ else err.__context__)
        ours = [e for e in chain if _raised_in_package(e)]
        pick = ours[-1] if ours else chain[-1]
        message = " ".join(str(pick).split()) or type(pick).__name__
        if not ours:
            message = f"{type(pick).__name__}: {message} (LIT_ALPHA_DEBUG=1 shows the traceback)"
        key, cls = self._config_key_of(pick)
        if key is None or message.startswith(("model.", "data.", "trainer.", key)):
            return message
        params = inspect.signature(cls.__init__).parameters if cls is not None else {}
        first = message.split(" ")[0].rstrip(":")
        if first in params:
            sep = "." if key in ("model", "data") else ".init_args."
            return f"{key}{sep}{message}"
        return f"{key}: {message}"

    def _config_key_of(self, err: BaseException) -> tuple[str | None, type | None]:
        """The config key (``model.objective``) of the innermost constructor in ``err``'s traceback."""
        cls = None
        tb = err.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            if frame.f_code.co_name == "__init__" and "self" in frame.f_locals:
                cls = type(frame.f_locals["self"])
            tb = tb.tb_next
        if cls is None:
            return None, None
        if issubclass(cls, AlphaModule):
            return "model", cls
        if issubclass(cls, RolloutDataModule):
            return "data", cls
        config = self.config.get(self.subcommand) if self.subcommand else self.config
        for key, value in _walk(config.as_dict() if config is not None else {}):
            if str(value.get("class_path", "")).split(".")[-1] == cls.__name__:
                return key, cls
        return None, cls

    def before_fit(self) -> None:
        config = self.config_init["fit"]
        if config.get("validate_at_start") and config.get("ckpt_path") is None:
            self.trainer.validate(self.model, datamodule=self.datamodule)
            for logger in self.trainer.loggers:  # validate() finalised the run; fit goes on in it
                if isinstance(logger, MLFlowLogger):
                    logger.experiment.update_run(logger.run_id, status="RUNNING")


def _raised_in_package(err: BaseException) -> bool:
    """Was ``err`` raised by a line of lit_alpha (not by a library it called)?"""
    tb = err.__traceback__
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    return last is not None and last.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR)


def _walk(tree: dict[str, Any], prefix: str = ""):
    """Every ``(dotted key, dict)`` below ``tree``, deepest last."""
    for key, value in tree.items():
        if isinstance(value, dict):
            yield f"{prefix}{key}", value
            yield from _walk(value, f"{prefix}{key}.")


def main(args: list[str] | None = None) -> LitAlphaCLI | None:
    """The console entry point: ``python -m lit_alpha <command> ...`` (see :mod:`lit_alpha.cli.commands`);
    known errors end in one line on stderr."""
    argv = list(sys.argv[1:] if args is None else args)
    if not argv or argv[0] in ("-h", "--help"):
        (sys.stdout if argv else sys.stderr).write(overview())
        if not argv:
            print("error: command: give one of the commands above", file=sys.stderr)
        raise SystemExit(0 if argv else 2)
    if argv[0] in OTHERS:
        code = command_main(argv[0])(argv[1:])
        if code:
            raise SystemExit(code)
        return None
    if argv[0] not in LIGHTNING and not argv[0].startswith("-"):
        print(f"error: command: {argv[0]!r} is not a command; give one of "
              f"{', '.join([*LIGHTNING, *OTHERS])} (python -m lit_alpha --help)", file=sys.stderr)
        raise SystemExit(2)
    try:
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
    except (UserError, NonFiniteError) as err:
        if debugging():
            raise
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2 if isinstance(err, UserError) else 1) from None


if __name__ == "__main__":
    main()
