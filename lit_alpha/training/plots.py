"""Plots logged to the MLflow run while training: the pass@k curve of every validation.

:class:`PassAtKPlot` (added by the CLI to every run) draws, after each validation, pass@k against k
(log axis) for the current policy next to the base model's step-0 curve, and logs it as the PNG
artifact ``plots/pass_at_k_step<step>.png``, so the MLflow UI shows it beside the metrics. A resumed
run reads the step-0 curve back from the run's metrics.
"""

from __future__ import annotations

import re
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

_KEY = re.compile(r"^(val|test)/pass@(\d+)$")


def pass_at_k_curve(metrics: dict[str, Any], stage: str = "val") -> dict[int, float]:
    """``{k: pass@k}`` from logged metrics named ``<stage>/pass@<k>``, k ascending."""
    found = {int(m.group(2)): float(v) for name, v in metrics.items()
             if (m := _KEY.match(name)) is not None and m.group(1) == stage}
    return dict(sorted(found.items()))


def pass_at_k_figure(curve: dict[int, float], step: int, base: dict[int, float] | None = None,
                     title: str | None = None):
    """A matplotlib ``Figure`` (no pyplot: safe headless) of pass@k vs k, log₂ axis."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 3.8), dpi=110)
    ax = fig.add_subplot()
    if base:
        ax.plot(list(base), list(base.values()), "s--", color="0.55", label="base model (step 0)")
    ax.plot(list(curve), list(curve.values()), "o-", color="C0", label=f"step {step}")
    ax.set_xscale("log", base=2)
    ks = sorted(set(curve) | set(base or {}))
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("k (samples per problem)")
    ax.set_ylabel("pass@k")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(title or f"pass@k at step {step}")
    fig.tight_layout()
    return fig


class PassAtKPlot(Callback):
    """After every validation: the pass@k curve (with the step-0 base curve) as a PNG to MLflow."""

    def __init__(self) -> None:
        self.base: dict[int, float] | None = None

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        from lightning.pytorch.loggers import MLFlowLogger

        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        curve = pass_at_k_curve({k: v for k, v in trainer.callback_metrics.items()})
        loggers = [lg for lg in trainer.loggers if isinstance(lg, MLFlowLogger) and lg.run_id]
        if not curve or not loggers:
            return
        step = int(trainer.global_step)
        if step == 0:
            self.base = curve
        for logger in loggers:
            base = self.base if self.base is not None else self._base_from(logger, curve)
            name = getattr(logger, "_run_name", None)
            fig = pass_at_k_figure(curve, step, None if step == 0 else base,
                                   title=f"{name + ': ' if name else ''}pass@k at step {step}")
            logger.experiment.log_figure(logger.run_id, fig, f"plots/pass_at_k_step{step:06d}.png")

    def _base_from(self, logger: Any, curve: dict[int, float]) -> dict[int, float] | None:
        """The step-0 curve of a resumed run, from its metric history (None if it has none)."""
        from lit_alpha.training.tracking import mlflow_metric_name

        base = {}
        for k in curve:
            history = logger.experiment.get_metric_history(logger.run_id, mlflow_metric_name(f"val/pass@{k}"))
            at0 = [m.value for m in history if m.step == 0]
            if at0:
                base[k] = float(at0[0])
        self.base = base or None
        return self.base
