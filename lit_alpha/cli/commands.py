"""Every command of ``python -m lit_alpha <command>``, and the conventions they share.

``fit``, ``validate`` and ``test`` are LightningCLI subcommands (:mod:`lit_alpha.cli.lightning`); the
others are dispatched here to their module's ``main(argv)``. ``python -m lit_alpha.analysis.evaluate`` (and
``.sweep``, ``.frontier``, ``.export``, ``.pretrain``, ``.convert``) still work: the same ``main``.
Bad input ends in one line ``error: <field>: ...`` on stderr and exit code 2 everywhere.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from typing import Callable, Sequence

LIGHTNING = {
    "fit": "train a policy (evaluates the start policy first, writes checkpoints and the HF model/)",
    "validate": "pass@k of a checkpoint (or of the base model) on the validation split",
    "test": "pass@k of a checkpoint (or of the base model) on the test split",
}
OTHERS = {  # command: (module, summary)
    "evaluate": ("lit_alpha.analysis.evaluate", "many samples per problem: per-problem tables, pass@k up to n, diversity"),
    "sweep": ("lit_alpha.analysis.sweep", "configs x seeds into one MLflow experiment, each run evaluated"),
    "frontier": ("lit_alpha.analysis.frontier", "the precision-coverage frontier of an experiment: PNGs, tables, tests"),
    "export": ("lit_alpha.models.export", "a checkpoint's policy in Hugging Face format (LoRA: merged or adapters)"),
    "pretrain": ("lit_alpha.tasks.countdown.pretrain", "rebuild the embedded base model countdown-tiny from scratch"),
    "convert": ("lit_alpha.models.convert", "a GGUF file (SmolLM2-135M-Instruct) to a Hugging Face model directory"),
}


class ArgParser(argparse.ArgumentParser):
    """argparse with the CLI's error convention: ``error: --field: message`` and exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        message = re.sub(r"^argument ([^\s:/]+)(?:/[^\s:]+)?: ", r"\1: ", message.strip())
        sys.stderr.write(f"error: {message}\n(all options: {self.prog} --help)\n")
        self.exit(2)


def one_line(message: str) -> str:
    """jsonargparse's nested error (``Parser key "model.objective":`` / ``Problem with given class_path
    ...:`` / ``Parser key "alpha":`` / ``Expected ...``) as one line naming the full field:
    ``model.objective.init_args.alpha: Expected ...``."""
    keys: list[str] = []
    for match in re.finditer(r'Parser key "([^"]+)"|Problem with given class_path', message):
        if match.group(1) is not None:
            keys.append(match.group(1))
        elif keys:
            keys.append("init_args")
    if keys and keys[-1] == "init_args":
        keys.pop()
    rest = re.sub(r'Parser key "[^"]+":|Problem with given class_path \'[^\']*\':', " ", message)
    rest = " ".join(rest.split())
    return f"{'.'.join(keys)}: {rest}" if keys else rest


def overview() -> str:
    """``python -m lit_alpha --help``: the commands, one line each."""
    width = max(map(len, [*LIGHTNING, *OTHERS]))
    lines = ["usage: python -m lit_alpha <command> [--config FILE] [options]   (<command> --help: its options)",
             "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in LIGHTNING.items()]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in OTHERS.items()]
    return "\n".join(lines) + "\n"


def command_main(name: str) -> Callable[[Sequence[str] | None], int | None]:
    """The ``main(argv)`` of a non-Lightning command."""
    return importlib.import_module(OTHERS[name][0]).main
