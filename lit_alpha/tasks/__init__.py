"""Tasks: seeded problem sets with disjoint splits, a prompt format and a verifier."""

from lit_alpha.tasks.base import Task
from lit_alpha.tasks.countdown import CountdownTask

__all__ = ["Task", "CountdownTask"]
