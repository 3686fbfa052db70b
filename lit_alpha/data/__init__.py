"""Data: the rollout service, the training sources (online prompts, the offline-RFT cache), the DataModule."""

from lit_alpha.data.datamodule import RolloutDataModule
from lit_alpha.data.rollout import Rollout, RolloutModels

__all__ = ["Rollout", "RolloutDataModule", "RolloutModels"]
