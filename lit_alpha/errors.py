"""Errors that the command line reports in one line (``error: ...``), without a traceback.

``LIT_ALPHA_DEBUG=1`` shows the traceback as well.
"""

from __future__ import annotations

from typing import Callable


class UserError(Exception):
    """Bad input: a config field, a file or a data row. The message names it. Exit code 2."""


class NonFiniteError(RuntimeError):
    """Training stopped: too many optimizer steps in a row had a NaN/inf loss or gradient. Exit code 1."""


def debugging() -> bool:
    """``LIT_ALPHA_DEBUG`` is set (and not ``0``): errors re-raise with their traceback."""
    import os

    return os.environ.get("LIT_ALPHA_DEBUG", "") not in ("", "0")


def reported(call: Callable[[], int], name_type: bool = False) -> int:
    """``call()``, or, when it raises, one line ``error: [Type: ]message`` on stderr and exit code 2
    (the commands' convention; under :func:`debugging` the exception propagates). ``name_type``: prefix
    the exception's type name, except for a :class:`UserError`, whose message names the field at fault."""
    import sys

    try:
        return call()
    except Exception as err:  # noqa: BLE001 - one line, unless debugging
        if debugging():
            raise
        typed = name_type and not isinstance(err, UserError)
        print(f"error: {type(err).__name__ + ': ' if typed else ''}{err}", file=sys.stderr)
        return 2
