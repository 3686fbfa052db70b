"""Test-only faulty verifiers, importable by name from a config (``class_path: faulty_verifiers.X``): the tests
put this directory on ``PYTHONPATH``. Kept free of heavy imports: verification workers import it."""

from __future__ import annotations

import os
import time
import zlib
from typing import Any, Mapping

from lit_alpha.verifiers.base import Verdict
from lit_alpha.verifiers.countdown import CountdownVerifier


def bucket(completion: str, mod: int) -> int:
    """A stable per-completion number in [0, mod) (unlike hash(), the same in every process)."""
    return zlib.crc32(str(completion).encode("utf-8", "replace")) % mod


class FaultyVerifier(CountdownVerifier):
    """Countdown's verifier, except on some completions: raise, hang, or return garbage.

    A completion marked ``boom``/``hang``/``junk``/``die`` triggers that fault; otherwise a stable
    hash of the completion picks a fault for about ``rate`` of them (``rate`` 0: markers only).
    """

    def __init__(self, rate: float = 0.0, hang_s: float = 60.0) -> None:
        super().__init__()
        self.rate, self.hang_s = rate, hang_s

    def _fault(self, completion: str) -> str | None:
        if not completion:
            return None  # an empty completion stays an ordinary "empty" verdict
        for marker in ("boom", "hang", "junk", "die", "nan"):
            if marker in str(completion):
                return marker
        if self.rate > 0 and bucket(completion, 1000) < self.rate * 1000:
            return ("boom", "hang", "junk", "nan")[bucket(completion[::-1], 4)]
        return None

    def verify(self, record: Mapping[str, Any], completion: str) -> Verdict:  # overrides the safe one
        fault = self._fault(completion)
        if fault == "boom":
            raise RuntimeError("injected verifier crash")
        if fault == "hang":
            time.sleep(self.hang_s)
        if fault == "junk":
            return "not a verdict"  # type: ignore[return-value]
        if fault == "nan":
            return Verdict(float("nan"), "ok")
        if fault == "die":
            os._exit(3)
        return super().verify(record, completion)
