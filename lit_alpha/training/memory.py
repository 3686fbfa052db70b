"""Process memory figures for the ``perf/*`` metrics.

(Tried and rejected: trimming glibc's heap eagerly with ``mallopt`` cut the default run's peak RSS
from ~1.75 to ~1.5 GB but made each training step ~1.8× slower, because a fixed trim threshold turns
off glibc's dynamic mmap threshold and every large tensor then page-faults in fresh memory.)
"""

from __future__ import annotations

import resource


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
