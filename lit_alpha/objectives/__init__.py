"""Objectives: typed :class:`~lit_alpha.batch.ObjectiveInputs` in, ``(loss, detached metrics)`` out."""

from lit_alpha.objectives.alpha_dpg import AlphaDPG
from lit_alpha.objectives.base import Objective
from lit_alpha.objectives.entropy_clip import GRPOEntropyRatioClip
from lit_alpha.objectives.grpo import GRPO
from lit_alpha.objectives.mixture import MixtureAlphaDPG
from lit_alpha.objectives.passk import GRPOPassAtK
from lit_alpha.objectives.rft import RFT
from lit_alpha.objectives.rloo import RLOO
from lit_alpha.objectives.schedule import Constant, Cosine, Linear, Schedule, Step
from lit_alpha.objectives.sft import SFT
from lit_alpha.objectives.smoothing import GRPODifferentialSmoothing
from lit_alpha.objectives.unlikeliness import GRPOUnlikely

__all__ = [
    "Objective", "AlphaDPG", "MixtureAlphaDPG", "GRPO", "RFT", "SFT", "RLOO", "GRPOPassAtK", "GRPOUnlikely",
    "GRPODifferentialSmoothing", "GRPOEntropyRatioClip",
    "Schedule", "Constant", "Linear", "Cosine", "Step",
]
