r"""Math word problems from your own JSONL files (GSM8K-style), verified by final answer.

One JSON object per line (blank lines are skipped)::

    {"question": "Tom has 3 apples and buys 4 more. How many apples does he have?", "answer": "7"}
    {"question": "What is half of 1/3?", "answer": "\\frac{1}{6}", "id": "half-third"}
    {"question": "...", "answer": "Natalia sold 48/2 = 24 clips in May ... #### 72"}

* ``question`` (alias ``problem``, as in MATH): the problem text, a non-empty string;
* ``answer`` (alias ``solution``): the reference, a string or a number. A GSM8K solution is reduced
  to the text after its last ``####``, a MATH solution to its last ``\boxed{...}``; the result must
  be non-empty and at most 256 characters;
* ``id`` (optional, default ``<file stem>-<line>``): unique across the task's files.

Other fields (``level``, ``type``, ...) are ignored. Every row is checked at start-up; an error
names the config field, the file and the line. The answer is checked with
:class:`~lit_alpha.verifiers.math_answer.MathAnswerVerifier` (equivalence rules there).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lit_alpha.errors import UserError
from lit_alpha.tasks.base import Record, Task
from lit_alpha.verifiers.math_answer import MathAnswerVerifier, answer_text, extract_boxed, extract_gsm8k

MAX_QUESTION_CHARS = 100_000
MAX_ANSWER_CHARS = 256
DEFAULT_TEMPLATE = "{question}\nPut the final answer in \\boxed{}."


def reference_answer(answer: object) -> str:
    r"""The final answer of a reference (GSM8K ``#### n`` or MATH ``\boxed{}`` reduced); ValueError if unusable."""
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        raise ValueError(f"'answer' must be a string or a number, got {answer!r}"[:200])
    text = answer_text(answer)
    reduced = extract_gsm8k(text)
    if reduced is None and ("\\boxed" in text or "\\fbox" in text):
        reduced = extract_boxed(text, MAX_ANSWER_CHARS)
    text = (text if reduced is None else reduced).strip()
    if not text:
        raise ValueError("'answer' is empty")
    if len(text) > MAX_ANSWER_CHARS:
        raise ValueError(f"'answer' is longer than {MAX_ANSWER_CHARS} characters (give the final answer only)")
    return text


def _row(obj: object, default_id: str) -> Record:
    """Validate one parsed row and return its record, or raise ValueError(reason)."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    question = obj.get("question", obj.get("problem"))
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"'question' must be a non-empty string, got {question!r}"[:200])
    if len(question) > MAX_QUESTION_CHARS:
        raise ValueError(f"'question' is longer than {MAX_QUESTION_CHARS} characters")
    if "answer" not in obj and "solution" not in obj:
        raise ValueError("missing 'answer'")
    answer = reference_answer(obj.get("answer", obj.get("solution")))
    rid = obj.get("id", default_id)
    if not isinstance(rid, (str, int)) or isinstance(rid, bool):
        raise ValueError(f"'id' must be a string, got {rid!r}"[:200])
    return {"id": str(rid), "question": question, "answer": answer}


def load_math_file(path: str | Path, field: str, seen: set[str] | None = None) -> list[Record]:
    """Read and check every row of ``path``. Any problem raises a :class:`UserError` naming
    ``field``, the file and the line. ``seen`` collects ids across files (duplicates are errors)."""
    path = Path(path).expanduser()
    seen = set() if seen is None else seen
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        why = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise UserError(f"{field}: cannot read {str(path)!r} ({why})") from None
    rows: list[Record] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{field}: {path}:{lineno}"
        try:
            record = _row(json.loads(line), f"{path.stem}-{lineno}")
        except json.JSONDecodeError as err:
            raise UserError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None
        except ValueError as err:
            raise UserError(f"{where}: {err}") from None
        if record["id"] in seen:
            raise UserError(f"{where}: duplicate id {record['id']!r}")
        seen.add(record["id"])
        rows.append(record)
    if not rows:
        raise UserError(f"{field}: {str(path)!r} holds no problems")
    return rows


class MathTask(Task):
    r"""Math word problems from JSONL files, answers checked by equivalence of the final answer.

    Args:
        train_file: JSONL training problems (format in the module docstring).
        val_file: JSONL validation problems; without one, ``holdout`` training rows are held out.
        test_file: JSONL test problems; without one, ``test`` uses the validation problems.
        holdout: how many training rows (chosen with ``seed``) form the validation set when
            ``val_file`` is not given (they are removed from training).
        seed: seeds the hold-out choice.
        prompt_template: the prompt; ``{question}`` is replaced by the question (plain text
            replacement, so other braces such as ``\boxed{}`` stay as written).
        answer_format: where the model's final answer is: ``boxed`` (last ``\boxed{}``), ``tag``
            (last ``<answer_tag>...</answer_tag>``), ``gsm8k`` (after the last ``####``) or ``any``.
        answer_tag: tag name for ``tag``/``any``.
        max_completion_chars: completions longer than this are ``too_long`` (verdict 0).
        num_train_view: size of the fixed view of training problems that ``problems("train")``
            returns (for evaluation on training problems).
    """

    def __init__(
        self,
        train_file: str,
        val_file: str | None = None,
        test_file: str | None = None,
        holdout: int = 0,
        seed: int = 0,
        prompt_template: str = DEFAULT_TEMPLATE,
        answer_format: str = "boxed",
        answer_tag: str = "answer",
        max_completion_chars: int = 65536,
        num_train_view: int = 200,
    ) -> None:
        if "{question}" not in prompt_template:
            raise UserError(f"data.task.init_args.prompt_template: must contain {{question}}, got {prompt_template!r}")
        if holdout < 0 or num_train_view < 1:
            raise UserError("data.task.init_args.holdout must be >= 0 and num_train_view >= 1")
        try:
            self.verifier = MathAnswerVerifier(answer_format, answer_tag, MAX_ANSWER_CHARS, max_completion_chars)
        except ValueError as err:
            raise UserError(f"data.task.init_args: {err}") from None
        self.prompt_template, self.seed, self.num_train_view = prompt_template, seed, num_train_view
        seen: set[str] = set()
        train = load_math_file(train_file, "data.task.init_args.train_file", seen)
        if val_file:
            val = load_math_file(val_file, "data.task.init_args.val_file", seen)
        elif holdout:
            if holdout >= len(train):
                raise UserError(f"data.task.init_args.holdout: {holdout} rows held out of {len(train)} training rows")
            order = np.random.default_rng([seed, 7]).permutation(len(train))
            held = set(int(i) for i in order[:holdout])
            val = [r for i, r in enumerate(train) if i in held]
            train = [r for i, r in enumerate(train) if i not in held]
        else:
            raise UserError("data.task.init_args: give val_file, or holdout > 0 to hold out training rows")
        test = load_math_file(test_file, "data.task.init_args.test_file", seen) if test_file else val
        self._splits: dict[str, list[Record]] = {"train": train, "val": val, "test": test}

    def problems(self, split: str) -> list[Record]:
        if split not in self._splits:
            raise ValueError(f"split must be one of train/val/test, got {split!r}")
        if split == "train" and len(self._splits["train"]) > self.num_train_view:
            rng = np.random.default_rng([self.seed, 11])
            picks = sorted(rng.choice(len(self._splits["train"]), self.num_train_view, replace=False))
            return [self._splits["train"][int(i)] for i in picks]
        return self._splits[split]

    def sample_train(self, rng: np.random.Generator) -> Record:
        rows = self._splits["train"]
        return rows[int(rng.integers(len(rows)))]

    def prompt(self, record: Record) -> str:
        return self.prompt_template.replace("{question}", record["question"])
