"""Countdown verifier throughput: verdicts per second on one core, before vs after the one-pass rewrite.

::

    python benchmarks/bench_verifier.py            # about 20 s

"Before" is ``tests/countdown_reference.py`` (the AST implementation, frozen), "after" the shipped
``lit_alpha.verifiers.countdown``. Both run in this process, one after the other, in alternating
rounds (ABAB..., the median round reported), on the same completions:

* ``model-like``: what the tiny model writes: a well-formed expression over the record's 4 numbers
  (``random_expression``, the random-guesser baseline) with one in three replaced by a correct
  solution, groups of 8 samples per record, as in a training batch;
* ``random+hostile``: ``tests/countdown_corpus.py`` (mutations, other numbers, deep nesting, long
  literals, answer tags ...; most fail early).

Verification is single-threaded Python, so verdicts/s here is per core. No timing assertion lives
in the tests; this script only prints.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import countdown_reference  # noqa: E402
from countdown_corpus import corpus  # noqa: E402

from lit_alpha.tasks.countdown import COUNTDOWN4, CountdownTask, random_expression, solutions  # noqa: E402
from lit_alpha.verifiers import countdown  # noqa: E402


def model_like(n: int, seed: int = 0) -> list[tuple[dict, str]]:
    """``n`` (record, completion) pairs in groups of 8 per record; a third of them correct."""
    task = CountdownTask(**COUNTDOWN4, seed=seed)
    records = task.problems("val")[:50]  # 50 problems (their solutions are enumerated once each)
    rng = np.random.default_rng(seed)
    out, sols_of = [], {}
    for i in range(n):
        rec = records[i // 8 % len(records)]
        nums = tuple(rec["numbers"])
        if i % 3 == 0:
            if rec["id"] not in sols_of:
                sols_of[rec["id"]] = solutions(nums, rec["target"])
            sols = sols_of[rec["id"]]
            text = sols[int(rng.integers(len(sols)))] if sols else random_expression(nums, rng)[1]
        else:
            text = random_expression(nums, rng)[1]
        out.append((rec, text))
    return out


def rate(verifier, pairs) -> float:
    """Verdicts per second of ``verifier.verify`` over ``pairs`` (process CPU time)."""
    verify = verifier.verify
    start = time.process_time()
    for rec, text in pairs:
        verify(rec, text)
    return len(pairs) / (time.process_time() - start)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=50_000, help="completions per corpus")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds per implementation")
    a = p.parse_args(argv)
    corpora = {"model-like": model_like(a.n), "random+hostile": corpus(a.n, seed=1)}
    sides = {"before": countdown_reference.CountdownVerifier(), "after": countdown.CountdownVerifier()}
    for name, pairs in corpora.items():
        assert all(sides["before"].verify(r, c) == sides["after"].verify(r, c) for r, c in pairs[:5000])
        rates: dict[str, list[float]] = {k: [] for k in sides}
        for _ in range(a.rounds):
            for side, v in sides.items():
                rates[side].append(rate(v, pairs))
        before, after = (statistics.median(rates[k]) for k in ("before", "after"))
        print(f"{name:15s} before {before / 1e3:7.1f}k verdicts/s   after {after / 1e3:7.1f}k verdicts/s   "
              f"x{after / before:.2f}   ({1e6 / before:.1f} -> {1e6 / after:.1f} us per verdict)")


if __name__ == "__main__":
    main()
