"""The end of a fit speaks: the base model against the trained policy, and where to look next.

:class:`RunReport` keeps the first and the last validation of a fit (the first is step 0, the base
model, when the run validates at its start) and, when the fit ends, prints on stdout:

* a short table (:func:`lit_alpha.metrics.report.end_table`): pass@1, pass@k at the largest k and
  distinct correct answers per problem, for both validations and their change;
* the MLflow run id, where the trained model was written, and the ``mlflow ui`` command that opens
  the store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import MLFlowLogger

from lit_alpha.metrics.report import end_table


class RunReport(L.Callback):
    """Print the fit's closing summary (rank 0). Keeps only two small dicts of validation metrics."""

    def __init__(self) -> None:
        self.first: tuple[int, dict[str, float]] | None = None
        self.last: tuple[int, dict[str, float]] | None = None
        self.text: str | None = None  # what was printed (for tests and callers)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        if not metrics:
            return
        entry = (int(trainer.global_step), metrics)
        if self.first is None:
            self.first = entry
        self.last = entry

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        self.text = self.summary(trainer)
        print("\n" + self.text, flush=True)

    def summary(self, trainer: L.Trainer) -> str:
        return _summary(self.first, self.last, trainer)


def _label(step: int) -> str:
    return "base (step 0)" if step == 0 else f"step {step}"


def _summary(first, last, trainer: L.Trainer) -> str:
    lines: list[str] = []
    if first is not None and last is not None:
        rows = [(_label(first[0]), first[1])]
        if last[0] != first[0]:
            rows.append((_label(last[0]), last[1]))
        lines.append(end_table(rows, title="validation"))
    for logger in trainer.loggers:
        if isinstance(logger, MLFlowLogger) and logger.run_id:
            name = getattr(logger, "experiment_name", None)
            lines.append(f"MLflow run: {logger.run_id}" + (f" (experiment {name!r})" if name else ""))
            uri = getattr(logger, "tracking_uri", None)
            if uri:
                lines.append(f"open it:    mlflow ui --backend-store-uri {uri}")
    for callback in trainer.callbacks:
        path: Any = getattr(callback, "path", None)
        if type(callback).__name__ == "SaveModel" and path is not None:
            lines.append(f"model:      {Path(path)}")
    return "\n".join(lines)
