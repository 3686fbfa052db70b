"""The command line: ``python -m lit_alpha <command>``.

:mod:`~lit_alpha.cli.lightning` holds ``fit``/``validate``/``test`` (LightningCLI) and the entry point,
:mod:`~lit_alpha.cli.commands` the other commands and the conventions they share,
:mod:`~lit_alpha.cli.config` the ``__base__`` composition and omegaconf interpolation of config files.
"""

from lit_alpha.cli.lightning import main

__all__ = ["main"]
