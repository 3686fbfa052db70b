"""Errors that the command line reports in one line (``error: ...``), without a traceback.

``LIT_ALPHA_DEBUG=1`` shows the traceback as well.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input: a config field, a file or a data row. The message names it. Exit code 2."""


class NonFiniteError(RuntimeError):
    """Training stopped: too many optimizer steps in a row had a NaN/inf loss or gradient. Exit code 1."""
