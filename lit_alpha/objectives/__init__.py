"""Objectives: typed :class:`~lit_alpha.batch.ObjectiveInputs` in, ``(loss, detached metrics)`` out."""

from lit_alpha.objectives.alpha_dpg import AlphaDPG
from lit_alpha.objectives.base import Objective
from lit_alpha.objectives.grpo import GRPO
from lit_alpha.objectives.rft import RFT
from lit_alpha.objectives.sft import SFT

__all__ = ["Objective", "AlphaDPG", "GRPO", "RFT", "SFT"]
