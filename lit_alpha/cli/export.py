"""``python -m lit_alpha export``: a checkpoint's policy in Hugging Face format
(:func:`lit_alpha.models.export.export_module`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from lit_alpha.cli.commands import parse_command
from lit_alpha.cli.run import build_run, run_config_args
from lit_alpha.errors import reported
from lit_alpha.models.export import export_module
from lit_alpha.training.checkpoint import Resume, load_checkpoint


def export(config: list[str], ckpt_path: str, out: str, merge: bool = True, run_name: str | None = None,
           overrides: Sequence[str] = ()) -> int:
    """A checkpoint's policy in Hugging Face format (``save_pretrained``, safetensors).

    Args:
        config: the run's config file(s) (--config A --config B, as for fit; give the run's overrides too,
            e.g. its --model.lora.*)
        ckpt_path: a checkpoint file, or 'last': the newest of the latest run named like the config
        out: the model directory to write
        merge: LoRA: true writes the merged plain model, false the peft adapter directory alone
        run_name: with --ckpt_path last: the run (default: the config's)
        overrides: run config overrides (``--model.x v`` ...)
    """
    args = argparse.Namespace(config=config, ckpt_path=ckpt_path, out=out, merge=merge, run_name=run_name)
    return reported(lambda: _export(args, list(overrides)))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lit_alpha export``: :func:`export` from the command line (``--print_config``: the
    resolved run config)."""
    kwargs, overrides = parse_command(export, argv, "python -m lit_alpha export", run_config=True, append=["config"])
    if kwargs.pop("print_config"):
        build_run(run_config_args(kwargs["config"], overrides) + ["--print_config"])
        return 0
    return export(**kwargs, overrides=overrides)


def _export(args: argparse.Namespace, overrides: list[str]) -> int:
    if args.ckpt_path != "last" and not Path(args.ckpt_path).is_file():  # before building anything
        raise ValueError(f"ckpt_path: {args.ckpt_path!r} is not a checkpoint file")
    run = build_run(run_config_args(args.config, overrides))
    module, dm = run.module, run.datamodule
    close = getattr(getattr(dm, "guard", None), "close", None)
    if close is not None:
        close()  # the task's verifier workers: not needed here
    settings = run.logger or {}
    found = run.checkpoint(args.ckpt_path, args.run_name or settings.get("run_name") or Path(args.config[0]).stem)
    ckpt = str(found.ckpt_path) if isinstance(found, Resume) else found
    step = load_checkpoint(module, ckpt)
    out = export_module(module, args.out, args.merge, model=run.config.model.get("model"))
    kind = "adapters" if module.lora is not None and not args.merge else "model"
    print(f"wrote {kind} of {ckpt} (step {step}) to {out}")
    return 0

