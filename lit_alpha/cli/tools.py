"""The entry points of ``sweep``, ``frontier``, ``pretrain`` and ``convert``: each parses its command
line into the typed library function that does the work (:func:`lit_alpha.cli.commands.parse_command`)."""

from __future__ import annotations

import sys
from typing import Callable, Sequence

from lit_alpha.analysis.frontier import frontier
from lit_alpha.analysis.sweep import sweep
from lit_alpha.cli.commands import parse_command
from lit_alpha.models.convert import convert_command
from lit_alpha.tasks.countdown.pretrain import pretrain as pretrain_countdown
from lit_alpha.tasks.countdown.steps_pretrain import pretrain_steps
from lit_alpha.tasks.strategy.pretrain import pretrain as pretrain_strategy

#: ``python -m lit_alpha pretrain [BENCHMARK] ...``: the benchmark's pretraining function (default first)
PRETRAIN: dict[str, Callable[..., object]] = {"countdown": pretrain_countdown, "strategy": pretrain_strategy,
                                               "steps": pretrain_steps}


def sweep_main(argv: Sequence[str] | None = None) -> int:
    """``python -m lit_alpha sweep CONFIG... [--flags] [-- extra overrides]``: :func:`~lit_alpha.analysis.sweep.sweep`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    kwargs, _ = parse_command(sweep, argv, "python -m lit_alpha sweep", positional="configs")
    if extra:
        kwargs["extra"] = [*(kwargs.get("extra") or []), *extra]
    return sweep(**kwargs)


def frontier_main(argv: Sequence[str] | None = None) -> int:
    """``python -m lit_alpha frontier``: :func:`~lit_alpha.analysis.frontier.frontier`."""
    kwargs, _ = parse_command(frontier, argv, "python -m lit_alpha frontier")
    return frontier(**kwargs)


def convert_main(argv: Sequence[str] | None = None) -> int:
    """``python -m lit_alpha convert``: :func:`~lit_alpha.models.convert.convert_command`."""
    kwargs, _ = parse_command(convert_command, argv, "python -m lit_alpha convert")
    return convert_command(**kwargs)


def pretrain_main(argv: Sequence[str] | None = None) -> int:
    """``python -m lit_alpha pretrain [BENCHMARK] --out DIR ...``: rebuild an embedded base model.
    ``BENCHMARK`` is one of :data:`PRETRAIN` (default ``countdown``); ``pretrain BENCHMARK --help``
    lists its options, from its pretraining function's typed signature and docstring."""
    argv = list(sys.argv[1:] if argv is None else argv)
    name = "countdown"
    if argv and not argv[0].startswith("-"):
        name = argv.pop(0)
        if name not in PRETRAIN:
            print(f"error: benchmark: {name!r} is not one of {', '.join(PRETRAIN)}", file=sys.stderr)
            return 2
    fn = PRETRAIN[name]
    kwargs, _ = parse_command(fn, argv, f"python -m lit_alpha pretrain {name}")
    fn(**kwargs)
    return 0
