"""Countdown problems from a JSONL file, checked row by row (errors name the file and the line).

One JSON object per line::

    {"numbers": [3, 7, 9, 12], "target": 59}
    {"numbers": [1, 2, 3, 4], "target": 10, "split": "test", "id": "my-test-0"}

``numbers`` (alias ``nums``, as in public Countdown sets): 1 to 64 integers in [0, 999999];
``target``: an integer; ``split`` (optional, default ``train``): ``train``, ``val`` or ``test``;
``id`` (optional, default ``<file stem>-<line>``): unique. Blank lines are skipped.
"""

from __future__ import annotations

from pathlib import Path

from lit_alpha.errors import UserError
from lit_alpha.tasks.base import Record
from lit_alpha.tasks.jsonl import jsonl_rows

SPLITS = ("train", "val", "test")
MAX_NUMBERS = 64
MAX_VALUE = 999_999  # the verifier reads literals of at most 6 digits


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _row(obj: object, default_id: str) -> tuple[str, Record]:
    """Validate one parsed row; return its split and record, or raise ValueError(reason)."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    unknown = set(obj) - {"numbers", "nums", "target", "split", "id"}
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)}")
    numbers = obj.get("numbers", obj.get("nums"))
    if not isinstance(numbers, list) or not 1 <= len(numbers) <= MAX_NUMBERS:
        raise ValueError(f"'numbers' must be a list of 1 to {MAX_NUMBERS} integers, got {numbers!r}"[:200])
    if not all(_is_int(n) and 0 <= n <= MAX_VALUE for n in numbers):
        raise ValueError(f"'numbers' must hold integers in [0, {MAX_VALUE}], got {numbers!r}"[:200])
    target = obj.get("target")
    if not _is_int(target) or abs(target) > 10**12:
        raise ValueError(f"'target' must be an integer, got {target!r}"[:200])
    split = obj.get("split", "train")
    if split not in SPLITS:
        raise ValueError(f"'split' must be one of {SPLITS}, got {split!r}"[:200])
    rid = obj.get("id", default_id)
    if not isinstance(rid, (str, int)) or isinstance(rid, bool):
        raise ValueError(f"'id' must be a string, got {rid!r}"[:200])
    return split, {"id": str(rid), "numbers": list(numbers), "target": int(target)}


def load_problems(path: str | Path, field: str = "data.task.init_args.problems_file") -> dict[str, list[Record]]:
    """Read and check every row of ``path``; records by split. Any problem raises a
    :class:`UserError` naming ``field``, the file and the line."""
    path = Path(path).expanduser()
    out: dict[str, list[Record]] = {s: [] for s in SPLITS}
    seen: set[str] = set()
    for lineno, where, row in jsonl_rows(path, field):
        try:
            split, record = _row(row, f"{path.stem}-{lineno}")
        except ValueError as err:
            raise UserError(f"{where}: {err}") from None
        if record["id"] in seen:
            raise UserError(f"{where}: duplicate id {record['id']!r}")
        seen.add(record["id"])
        out[split].append(record)
    if not any(out.values()):
        raise UserError(f"{field}: {str(path)!r} holds no problems")
    return out
