"""Schedules: a hyper-parameter as a function of the optimizer step (an α curriculum, for example).

The α-DPG paper fixes α for a whole run and names an α curriculum as future work; these classes let
a YAML config write ``alpha: {class_path: lit_alpha.objectives.schedule.Linear, init_args: {...}}``.
Every schedule is a pure function ``value(step, max_steps)`` of the step the batch trains (0-based,
Lightning's ``global_step``) and the run's ``trainer.max_steps`` (0 when unknown), so a resumed run
gets exactly the values it would have had. ``steps=None`` means "over the whole run" (``max_steps``).

With ``s = steps`` (or ``max_steps``) and the progress ``u = clamp((step − begin) / s, 0, 1)``:

* :class:`Constant`: ``value``;
* :class:`Linear`: ``start + (end − start) · u``;
* :class:`Cosine`: ``start + (end − start) · (1 − cos(π u)) / 2`` (slow at both ends);
* :class:`Step`: ``values[i]`` with ``i`` the number of ``boundaries`` ≤ step (piecewise constant).

When the length is unknown (``s ≤ 0``) Linear and Cosine stay at ``start``.
"""

from __future__ import annotations

import bisect
import math
from typing import Sequence


class Schedule:
    """A value per step. Subclasses implement :meth:`value` and :meth:`bounds`."""

    def value(self, step: int, max_steps: int = 0) -> float:
        raise NotImplementedError

    def bounds(self) -> tuple[float, float]:
        """The smallest and the largest value the schedule can take (for range checks)."""
        raise NotImplementedError

    def __call__(self, step: int, max_steps: int = 0) -> float:
        return float(self.value(int(step), int(max_steps)))


class Constant(Schedule):
    """The same value at every step.

    Args:
        value: the value.
    """

    def __init__(self, value: float) -> None:
        self.v = float(value)

    def value(self, step: int, max_steps: int = 0) -> float:
        return self.v

    def bounds(self) -> tuple[float, float]:
        return self.v, self.v

    def __repr__(self) -> str:
        return f"Constant({self.v})"


class _Ramp(Schedule):
    """A monotone ramp from ``start`` to ``end`` over ``steps`` steps beginning at ``begin``."""

    def __init__(self, start: float, end: float, steps: int | None = None, begin: int = 0) -> None:
        if steps is not None and steps < 1:
            raise ValueError(f"steps must be >= 1 or None, got {steps}")
        if begin < 0:
            raise ValueError(f"begin must be >= 0, got {begin}")
        self.start, self.end, self.steps, self.begin = float(start), float(end), steps, int(begin)

    def progress(self, step: int, max_steps: int) -> float:
        """``u ∈ [0, 1]``; 0 when the length is unknown."""
        length = self.steps if self.steps is not None else max_steps - self.begin
        if length <= 0:
            return 0.0
        return min(1.0, max(0.0, (step - self.begin) / length))

    def shape(self, u: float) -> float:
        raise NotImplementedError

    def value(self, step: int, max_steps: int = 0) -> float:
        return self.start + (self.end - self.start) * self.shape(self.progress(step, max_steps))

    def bounds(self) -> tuple[float, float]:
        return min(self.start, self.end), max(self.start, self.end)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.start}, {self.end}, steps={self.steps}, begin={self.begin})"


class Linear(_Ramp):
    """``start + (end − start) · u``, ``u = clamp((step − begin) / steps, 0, 1)``.

    Args:
        start: the value up to step ``begin``.
        end: the value from step ``begin + steps`` on.
        steps: length of the ramp in steps; None: until the end of the run (``max_steps − begin``).
        begin: the step the ramp starts at.
    """

    def shape(self, u: float) -> float:
        return u


class Cosine(_Ramp):
    """``start + (end − start) · (1 − cos(π u)) / 2``, ``u = clamp((step − begin) / steps, 0, 1)``.

    Args:
        start: the value up to step ``begin``.
        end: the value from step ``begin + steps`` on.
        steps: length of the ramp in steps; None: until the end of the run (``max_steps − begin``).
        begin: the step the ramp starts at.
    """

    def shape(self, u: float) -> float:
        return (1.0 - math.cos(math.pi * u)) / 2.0


class Step(Schedule):
    """Piecewise constant: ``values[i]`` where ``i = #{b ∈ boundaries : b ≤ step}``.

    Args:
        values: one more value than boundaries, e.g. ``[0.0, 0.5, 0.9]``.
        boundaries: strictly increasing steps at which the value changes, e.g. ``[50, 100]``.
    """

    def __init__(self, values: Sequence[float], boundaries: Sequence[int]) -> None:
        if len(values) != len(boundaries) + 1:
            raise ValueError(f"need len(values) == len(boundaries) + 1, got {len(values)} and {len(boundaries)}")
        if any(b >= c for b, c in zip(boundaries, boundaries[1:])):
            raise ValueError(f"boundaries must be strictly increasing, got {list(boundaries)}")
        self.values = [float(v) for v in values]
        self.boundaries = [int(b) for b in boundaries]

    def value(self, step: int, max_steps: int = 0) -> float:
        return self.values[bisect.bisect_right(self.boundaries, step)]

    def bounds(self) -> tuple[float, float]:
        return min(self.values), max(self.values)

    def __repr__(self) -> str:
        return f"Step({self.values}, boundaries={self.boundaries})"
