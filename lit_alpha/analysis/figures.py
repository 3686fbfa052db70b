"""The frontier's figures (matplotlib only, from an :class:`~lit_alpha.analysis.tables.Analysis`): pass@k
curves with bootstrap bands, and the precision–coverage plane with the upper-right hull and its band."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from lit_alpha.analysis.stats import GUESSER, hull_band, staircase
from lit_alpha.analysis.tables import Analysis


def _colors(names: Sequence[str]) -> dict[str, Any]:
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def plot_passk(analysis: Analysis, ax=None, title: str | None = None):
    """pass@k curves (k on a log axis) with bootstrap bands; the guesser dashed grey."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 5))
    colors = _colors([r.name for r in analysis.models()])
    for name, (mean, low, high) in analysis.curves().items():
        style = dict(color="0.4", ls="--") if name == GUESSER else dict(color=colors[name])
        ax.plot(analysis.ks, mean, marker="o", ms=3, label=name, **style)
        ax.fill_between(analysis.ks, low, high, alpha=0.15, color=style["color"], lw=0)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(title or f"pass@k on {analysis.split} ({len(analysis.runs[0].problem_ids)} problems, "
                          f"{int(analysis.level * 100)}% bootstrap bands)")
    ax.legend(fontsize=7, loc="lower right")
    return ax.figure


def plot_frontier(analysis: Analysis, ax=None, title: str | None = None):
    """Every run as a point (pass@1, pass@k) with bootstrap error bars, the upper-right hull and its
    bootstrap band, the guesser as a reference."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 5))
    pts = analysis.points()
    models = analysis.models()
    colors = _colors([r.name for r in models])
    for name, (x, xl, xh, y, yl, yh) in pts.items():
        color = "0.4" if name == GUESSER else colors[name]
        ax.errorbar([x], [y], xerr=[[x - xl], [xh - x]], yerr=[[y - yl], [yh - y]], fmt="x" if name == GUESSER else "o",
                    color=color, ms=6, capsize=2, lw=1, label=name)
    hull = analysis.hull()
    if hull:
        hx = np.asarray([pts[n][0] for n in hull])
        hy = np.asarray([pts[n][3] for n in hull])
        grid = np.linspace(0, max(pts[r.name][2] for r in models), 300)
        ax.plot(grid, staircase(np.stack([hx, hy], 1), grid), color="k", lw=1.2, zorder=0,
                label="upper-right hull")
        mats = [r.matrix([1, analysis.k]) for r in models]
        low, high = hull_band(mats, analysis.boot.indices, grid, analysis.level)
        ax.fill_between(grid, low, high, color="k", alpha=0.08, lw=0, label="hull bootstrap band")
    ax.set_xlabel("pass@1 (precision)")
    ax.set_ylabel(f"pass@{analysis.k} (coverage)")
    ax.grid(alpha=0.3)
    ax.set_title(title or f"precision–coverage frontier on {analysis.split}")
    ax.legend(fontsize=7, loc="lower right")
    return ax.figure
