"""A verifier applied to the whole assistant message when the prompt already wrote its start.

With a prefilled reply (``ChatTask(assistant_prefix="<answer>")``) the model's completion is only the
rest of the message (``17 + 25</answer>``); the answer is checked on ``prefix + completion``.
"""

from __future__ import annotations

from typing import Any, Mapping

from lit_alpha.verifiers.base import Verdict, Verifier


class PrefixedVerifier(Verifier):
    """``inner`` applied to ``prefix + completion``. Picklable, so the guarded verifier can run it in
    worker processes like any other; bounded like ``inner`` (the prefix is fixed text)."""

    def __init__(self, inner: Verifier, prefix: str) -> None:
        self.inner, self.prefix = inner, prefix

    def check(self, record: Mapping[str, Any], completion: str) -> Verdict:
        if not isinstance(completion, str):
            return Verdict(0.0, "parse")
        return self.inner.check(record, self.prefix + completion)
