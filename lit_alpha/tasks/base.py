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
        """Task-specific diagnostics of one evaluation (none by default).

        Args:
            records: the problems evaluated.
            completions: per problem, its sampled completions (texts).
            rewards: per problem, the reward of each completion.
        """
        return {}
