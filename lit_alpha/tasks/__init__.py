"""Tasks: seeded problem sets with disjoint splits, a prompt format and a verifier."""

from lit_alpha.tasks.base import Task
from lit_alpha.tasks.chat import ChatTask
from lit_alpha.tasks.countdown import CountdownTask
from lit_alpha.tasks.countdown.steps import StepsTask
from lit_alpha.tasks.lean import LeanTask
from lit_alpha.tasks.math import MathTask
from lit_alpha.tasks.prompts import PromptsTask
from lit_alpha.tasks.strategy import StrategyTask

__all__ = ["Task", "ChatTask", "CountdownTask", "LeanTask", "MathTask", "PromptsTask", "StepsTask", "StrategyTask"]
