"""The strategy benchmark (known optima): the task (:mod:`~lit_alpha.tasks.strategy.task`), its closed-form
optima (:mod:`~lit_alpha.tasks.strategy.optima`) and the pretraining of its embedded base
(:mod:`~lit_alpha.tasks.strategy.pretrain`). The verifier is :mod:`lit_alpha.verifiers.strategy`."""

from lit_alpha.tasks.strategy.task import DEFAULT_PRIOR, DEFAULT_RATES, StrategyTask

__all__ = ["DEFAULT_PRIOR", "DEFAULT_RATES", "StrategyTask"]
