"""Your own reward function as a verifier: ``reward(prompts, completions, **row) -> list[float]``.

The signature is TRL's: ``prompts`` and ``completions`` are lists of strings and every other field of
the problem's row comes as a keyword argument holding a list (``answer=[...]``), so accept
``**kwargs`` for the fields you do not use. Return one score per completion in [0, 1]; a score of
1 is "correct" (pass@k, and α-DPG's filter ``v``).

:class:`FunctionVerifier` calls it one sample at a time under the
:class:`~lit_alpha.verifiers.guarded.GuardedVerifier` like any verifier: an exception is a ``crash``
verdict, a score that is not a finite number in [0, 1] (or a list of the wrong length) ``garbage``,
a call past ``data.verify_timeout_s`` a ``timeout`` (the worker process is replaced); each is a 0
for that sample, counted in ``verifier/<reason>_frac``, and the loop goes on. The function is named
by an import path, ``package.module:function`` or ``path/to/file.py:function``; the worker processes
import it themselves, so it need not be picklable.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from pathlib import Path
from typing import Any, Callable, Mapping

from lit_alpha.verifiers.base import Verdict, Verifier

MAX_ANSWER_CHARS = 200


def load_function(spec: str, field: str = "reward") -> Callable[..., Any]:
    """The callable named by ``module:function``, ``module.function`` or ``file.py:function``."""
    if ":" in spec:
        module_name, _, attr = spec.rpartition(":")
    else:
        module_name, _, attr = spec.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"{field}: {spec!r} is not an import path (package.module:function or file.py:function)")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name).expanduser().resolve()
            if not path.is_file():
                raise ValueError(f"{field}: {spec!r}: no file {str(path)!r}")
            loader = importlib.util.spec_from_file_location(f"lit_alpha_user_{path.stem}", path)
            module = importlib.util.module_from_spec(loader)  # type: ignore[arg-type]
            loader.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            module = importlib.import_module(module_name)
    except ValueError:
        raise
    except Exception as err:  # noqa: BLE001 - a user's module: any import error, named
        raise ValueError(f"{field}: cannot import {module_name!r} ({type(err).__name__}: {err})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"{field}: {module_name!r} has no function {attr!r}")
    return fn


class FunctionVerifier(Verifier):
    """A plain reward function (see the module docstring) behind the Verifier contract.

    Args:
        reward: import path of ``reward(prompts, completions, **row) -> list[float]``.
        prompt_field: the row's field that holds the prompt (passed as ``prompts``, not as a keyword).
    """

    def __init__(self, reward: str, prompt_field: str = "prompt", field: str = "reward") -> None:
        self.reward, self.prompt_field = reward, prompt_field
        self._fn: Callable[..., Any] | None = load_function(reward, field)  # fails now, not in a worker

    def __getstate__(self) -> dict[str, Any]:  # workers import the function themselves
        return {"reward": self.reward, "prompt_field": self.prompt_field, "_fn": None}

    def check(self, record: Mapping[str, Any], completion: str) -> Verdict:
        if self._fn is None:
            self._fn = load_function(self.reward)
        row = {k: [v] for k, v in record.items() if k != self.prompt_field}
        out = self._fn([record[self.prompt_field]], [completion], **row)
        scores = list(out)
        if len(scores) != 1:
            return Verdict(0.0, "garbage")
        score = float(scores[0])
        if not math.isfinite(score) or not 0.0 <= score <= 1.0:
            return Verdict(0.0, "garbage")
        answer = None
        if score >= 1.0:  # canonical answer, bounded: only a prefix of (hostile, maybe huge or non-text) output
            text = completion if isinstance(completion, str) else str(completion)
            answer = " ".join(text[: 8 * MAX_ANSWER_CHARS].split())[:MAX_ANSWER_CHARS]
        return Verdict(score, "ok" if score >= 1.0 else "wrong", answer)
