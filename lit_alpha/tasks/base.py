"""The Task contract: problems (dict records with an ``id``), a prompt for each, a verifier."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from lit_alpha.verifiers.base import Verifier

Record = Mapping[str, Any]


class Task:
    """A source of problems. ``split`` is ``"train"``, ``"val"`` or ``"test"``."""

    verifier: Verifier

    def problems(self, split: str) -> list[Record]:
        """The fixed, held-out problem list of ``val``/``test`` (and a finite view of ``train``)."""
        raise NotImplementedError

    def sample_train(self, rng: np.random.Generator) -> Record:
        """One training problem drawn with ``rng`` (the stream is infinite and reproducible)."""
        raise NotImplementedError

    def prompt(self, record: Record) -> str:
        """The text the model continues."""
        raise NotImplementedError

    def eval_metrics(self, records: Sequence[Record], completions: Sequence[Sequence[str]],
                     rewards: Sequence[Sequence[float]]) -> dict[str, float]:
        """Task-specific diagnostics of one evaluation (optional; default: none).

        Called once per validation/test epoch and per ``evaluate`` split with every problem evaluated
        and its samples; the trainer logs the result under ``val/<key>`` (``test/<key>``), ``evaluate``
        under ``eval/<split>/<key>`` and in its summary. Must not raise on hostile completions.

        Args:
            records: the problems, in evaluation order.
            completions: for each problem, its sampled completion texts.
            rewards: for each problem, the verifier's score of each sample (0/1 for 0/1 verifiers).
        """
        return {}


def has_eval_metrics(task: Task) -> bool:
    """Whether ``task`` overrides :meth:`Task.eval_metrics` (else the trainer collects nothing for it)."""
    return type(task).eval_metrics is not Task.eval_metrics
