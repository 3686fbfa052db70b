"""Your own task: prompts (and whatever your checker needs) in a JSONL file, your reward function.

One JSON object per line (blank lines are skipped)::

    {"prompt": "3 4 | 7 = ", "answer": 7, "numbers": [3, 4]}
    {"prompt": "5 6 | 30 = ", "answer": 30, "numbers": [5, 6], "split": "val"}

* ``prompt``: the text the model continues, a non-empty string;
* ``split`` (optional, default ``train``): ``train``, ``val`` or ``test``; without ``val`` rows,
  ``holdout`` training rows are held out (chosen with ``seed``); ``test`` defaults to ``val``;
* ``id`` (optional, default ``<file stem>-<line>``): unique;
* any other field (``answer`` ...) is passed to the reward function as a keyword argument.

The reward function (:mod:`lit_alpha.verifiers.function`) runs in worker processes with a time
limit by default (``verify_timeout_s``); it can neither crash nor stall the run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lit_alpha.errors import UserError
from lit_alpha.tasks.base import Record, Task
from lit_alpha.tasks.jsonl import jsonl_rows
from lit_alpha.verifiers.function import FunctionVerifier

FIELD = "data.task.init_args"
SPLITS = ("train", "val", "test")
MAX_PROMPT_CHARS = 100_000


def load_prompts(path: str | Path, field: str = f"{FIELD}.file") -> dict[str, list[Record]]:
    """Every row of ``path`` checked, by split; a bad row raises a :class:`UserError` naming
    ``field``, the file and the line."""
    path = Path(path).expanduser()
    out: dict[str, list[Record]] = {s: [] for s in SPLITS}
    seen: set[str] = set()
    for lineno, where, row in jsonl_rows(path, field):
        if not isinstance(row, dict):
            raise UserError(f"{where}: expected a JSON object, got {type(row).__name__}")
        prompt = row.get("prompt")
        if not isinstance(prompt, str) or not prompt or len(prompt) > MAX_PROMPT_CHARS:
            raise UserError(f"{where}: 'prompt' must be a non-empty string (at most {MAX_PROMPT_CHARS} "
                            f"characters), got {prompt!r}"[:300])
        split = row.pop("split", "train")
        if split not in SPLITS:
            raise UserError(f"{where}: 'split' must be one of {SPLITS}, got {split!r}"[:300])
        rid = row.get("id", f"{path.stem}-{lineno}")
        if not isinstance(rid, (str, int)) or isinstance(rid, bool) or str(rid) in seen:
            raise UserError(f"{where}: 'id' must be a unique string, got {rid!r}"[:300])
        seen.add(str(rid))
        out[split].append({**row, "id": str(rid)})
    if not out["train"]:
        raise UserError(f"{field}: {str(path)!r} holds no training rows")
    return out


class PromptsTask(Task):
    """Prompts from a JSONL file, scored by your reward function.

    Args:
        file: the JSONL file (format in the module docstring; paths relative to the working directory).
        reward: import path of ``reward(prompts, completions, **row) -> list[float]`` (scores in [0, 1],
            1 = correct): ``package.module:function`` or ``path/to/file.py:function``.
        holdout: without ``val`` rows in the file, this many training rows form the validation set.
        seed: seeds the hold-out choice and the fixed view of training problems.
        num_train_view: how many training problems ``problems("train")`` returns (evaluation on them).
        verify_timeout_s: the per-sample time limit for the reward function (worker processes; a call
            past it is a ``timeout`` 0 verdict); used unless ``data.verify_timeout_s`` is set.
    """

    def __init__(self, file: str, reward: str, holdout: int = 0, seed: int = 0, num_train_view: int = 200,
                 verify_timeout_s: float = 10.0) -> None:
        if holdout < 0 or num_train_view < 1 or not verify_timeout_s >= 0:
            raise UserError(f"{FIELD}: holdout must be >= 0, num_train_view >= 1, verify_timeout_s >= 0")
        try:
            self.verifier = FunctionVerifier(reward, field=f"{FIELD}.reward")
        except ValueError as err:
            raise UserError(str(err)) from None
        self.seed, self.num_train_view, self.verify_timeout_s = seed, num_train_view, verify_timeout_s
        splits = load_prompts(file)
        if not splits["val"]:
            if not 0 < holdout < len(splits["train"]):
                raise UserError(f"{FIELD}: the file has no 'split': 'val' rows; set holdout to between 1 and "
                                f"{len(splits['train']) - 1} training rows to hold out")
            order = np.random.default_rng([seed, 7]).permutation(len(splits["train"]))
            held = {int(i) for i in order[:holdout]}
            splits["val"] = [r for i, r in enumerate(splits["train"]) if i in held]
            splits["train"] = [r for i, r in enumerate(splits["train"]) if i not in held]
        splits["test"] = splits["test"] or splits["val"]
        self._splits = splits

    def problems(self, split: str) -> list[Record]:
        if split not in self._splits:
            raise ValueError(f"split must be one of train/val/test, got {split!r}")
        rows = self._splits[split]
        if split == "train" and len(rows) > self.num_train_view:
            picks = sorted(np.random.default_rng([self.seed, 11]).choice(len(rows), self.num_train_view, replace=False))
            return [rows[int(i)] for i in picks]
        return rows

    def sample_train(self, rng: np.random.Generator) -> Record:
        rows = self._splits["train"]
        return rows[int(rng.integers(len(rows)))]

    def prompt(self, record: Record) -> str:
        return record["prompt"]
