"""Data: prompt streams and the rollout that turns prompts into verified RolloutBatches."""

from lit_alpha.data.datamodule import RolloutDataModule
from lit_alpha.data.rollout import rollout

__all__ = ["RolloutDataModule", "rollout"]
