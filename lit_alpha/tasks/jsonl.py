"""Reading a JSONL data file row by row, with errors that name the config field, the file and the line
(the Countdown problems file and the prompts file of :class:`~lit_alpha.tasks.prompts.PromptsTask`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from lit_alpha.errors import UserError


def jsonl_rows(path: str | Path, field: str) -> Iterator[tuple[int, str, Any]]:
    """``(line number, "field: path:line", parsed JSON)`` for each non-blank line of ``path``; an unreadable
    file or a line that is not JSON raises a :class:`UserError` naming ``field``, the file and the line."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        why = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise UserError(f"{field}: cannot read {str(path)!r} ({why})") from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{field}: {path}:{lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None
        yield lineno, where, row
