"""Countdown: the task (:mod:`~lit_alpha.tasks.countdown.task`), your own problems from a JSONL file
(:mod:`~lit_alpha.tasks.countdown.problems_file`), the random guesser's exact hit probabilities
(:mod:`~lit_alpha.tasks.countdown.guesser`) and the pretraining of the embedded base models
(:mod:`~lit_alpha.tasks.countdown.pretrain`, ``python -m lit_alpha pretrain``)."""

from lit_alpha.tasks.countdown.task import COUNTDOWN4, CountdownTask, all_expressions, random_expression, solutions

__all__ = ["COUNTDOWN4", "CountdownTask", "all_expressions", "random_expression", "solutions"]
