"""The short table a run ends with: the base model against the trained policy, in three numbers.

``fit`` prints it from its first validation (step 0: the base model) and its last one
(:class:`lit_alpha.training.report.RunReport`); ``evaluate`` from its split's table and, when the
experiment has one, the base model's table of the same split. The columns are pass@1 (precision),
pass@k at the largest k every row has (coverage) and the mean number of distinct correct answers per
problem (diversity); a last row gives the change when there are two rows.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

_PASS = re.compile(r"(?:^|/)pass(?:_at_|@)(\d+)$")  # MLflow names pass@k pass_at_k


def largest_common_k(metrics: Sequence[Mapping[str, float]]) -> int | None:
    """The largest k with a ``pass_at_<k>`` or ``pass@<k>`` (with any ``prefix/``) in every mapping."""
    common: set[int] | None = None
    for m in metrics:
        ks = {int(match.group(1)) for key in m if (match := _PASS.search(key))}
        common = ks if common is None else common & ks
    return max(common) if common else None


def _get(m: Mapping[str, float], name: str) -> float | None:
    names = {name, name.replace("pass_at_", "pass@")}
    for key, value in m.items():
        if key.rpartition("/")[2] in names:
            return float(value)
    return None


def end_table(rows: Sequence[tuple[str, Mapping[str, float]]], title: str = "") -> str:
    """A fixed-width table of ``(label, metrics)`` rows: pass@1, pass@k (largest common k), distinct
    correct. Metric keys may carry a prefix (``val/pass_at_1``). Two rows add a ``change`` row."""
    k = largest_common_k([m for _, m in rows])
    columns = ["pass@1"] + ([f"pass@{k}"] if k is not None and k > 1 else []) + ["distinct correct"]
    names = ["pass_at_1"] + ([f"pass_at_{k}"] if k is not None and k > 1 else []) + ["distinct_correct"]
    values = [[_get(m, n) for n in names] for _, m in rows]
    labels = [label for label, _ in rows]
    if len(rows) == 2:
        labels.append("change")
        values.append([None if a is None or b is None else b - a for a, b in zip(*values)])
    width = max(len(x) for x in [*labels, ""]) + 2

    def cell(v: float | None, name: str, signed: bool) -> str:
        if v is None:
            return "-"
        if name.startswith("pass_at"):
            return f"{100 * v:+.1f}" if signed else f"{100 * v:.1f}"
        return f"{v:+.2f}" if signed else f"{v:.2f}"

    widths = [max(len(c), 8) for c in columns]
    lines = [title] if title else []
    lines.append(" " * width + "  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    for i, (label, row) in enumerate(zip(labels, values)):
        signed = label == "change" and i == len(labels) - 1 and len(rows) == 2
        lines.append(label.ljust(width) + "  ".join(cell(v, n, signed).rjust(w)
                                                    for v, n, w in zip(row, names, widths)))
    lines.append("(pass@k in %, unbiased estimator; distinct correct: per problem)")
    return "\n".join(lines)
