"""Markdown tables for docs/results.md from a ``frontier --group_seeds --all_pairs`` output folder.

``python scripts/frontier_table.py DIR [--split val] [--alpha a0,a025,...]``

Reads ``seeds_<split>.csv`` (mean ± sd over seeds), ``points_<split>.csv`` (bootstrap intervals over
problems, seeds pooled; hull membership), ``summary_<split>.csv`` (base and guesser rows) and
``significance_<split>.csv`` (paired bootstrap, all pairs) and prints: the main table, the paired tests
behind the paper's claims, and the hull. Nothing is recomputed: every number is in those files.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Sequence

ALPHA_DPG = ("a0", "a025", "a05", "a075", "a0999", "a_schedule", "a0_mix", "a025_mix")


def _read(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def _f(v: str | None) -> float | None:
    return None if v in (None, "") else float(v)


def _pct(v: float | None, digits: int = 1) -> str:
    return "" if v is None else f"{100 * v:.{digits}f}"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dir", type=Path)
    p.add_argument("--split", default="val")
    p.add_argument("--k", type=int, default=256)
    p.add_argument("--alpha", default=",".join(ALPHA_DPG), help="the α-DPG (lit_alpha) methods, comma-separated")
    a = p.parse_args(argv)
    s, k = a.split, a.k
    seeds = {r["method"]: r for r in _read(a.dir / f"seeds_{s}.csv")}
    points = {r["run"]: r for r in _read(a.dir / f"points_{s}.csv")}
    summary = {r["method"]: r for r in _read(a.dir / f"summary_{s}.csv")}
    sig = _read(a.dir / f"significance_{s}.csv")
    alpha = [m for m in a.alpha.split(",") if m in summary]

    print(f"| method | seeds | pass@1 | pass@16 | pass@{k} | distinct correct | KL(p‖π) nats "
          f"| pass@1, 95% CI (pooled) | pass@{k}, 95% CI (pooled) | hull |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for method, row in summary.items():
        pt = points.get("random guesser" if method == "guesser" else method, {})
        sd = seeds.get(method)

        def cell(col: str, scale: float = 100.0, digits: int = 1) -> str:
            mean = _f(row.get(col))
            if mean is None:
                return ""
            text = f"{scale * mean:.{digits}f}"
            if sd is not None and _f(sd.get(f"{col}_sd")) is not None:
                text += f" ± {scale * _f(sd[f'{col}_sd']):.{digits}f}"
            return text

        ci1 = f"[{_pct(_f(pt.get('pass@1_lo')))}, {_pct(_f(pt.get('pass@1_hi')))}]" if pt else ""
        cik = f"[{_pct(_f(pt.get(f'pass@{k}_lo')))}, {_pct(_f(pt.get(f'pass@{k}_hi')))}]" if pt else ""
        print(f"| `{method}` | {row['seeds'] or '—'} | {cell('pass@1')} | {cell('pass@16')} | {cell(f'pass@{k}')} "
              f"| {cell('distinct_correct', 1.0, 2)} | {cell('fkl_to_target', 1.0, 2)} | {ci1} | {cik} "
              f"| {'*' if pt.get('hull') == 'True' else ''} |")

    def pair(x: str, y: str, kk: int) -> str:
        for r in sig:
            if int(r["k"]) == kk and {r["a"], r["b"]} == {x, y}:
                sign = 1 if r["a"] == x else -1
                d, lo, hi = (sign * float(r[c]) for c in ("diff", "low", "high"))
                lo, hi = min(lo, hi), max(lo, hi)
                mark = "" if lo > 0 or hi < 0 else " (n.s.)"
                return f"{100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}], p={float(r['p_value']):.3f}{mark}"
        return "—"

    others = [m for m in summary if m not in alpha and m not in ("base", "guesser")]
    best = max(alpha, key=lambda m: float(summary[m][f"pass@{k}"])) if alpha else None
    print(f"\nPaired bootstrap, points (a − b, 95% CI):\n\n| a − b | Δ pass@1 | Δ pass@{k} |\n|---|---|---|")
    rows = [(m, "base") for m in alpha + others]
    if best:
        rows += [(best, m) for m in others]
    if "a0999" in summary and "grpo" in summary:
        rows.append(("a0999", "grpo"))
    for x, y in rows:
        print(f"| `{x}` − `{y}` | {pair(x, y, 1)} | {pair(x, y, k)} |")
    hull = [m for m, r in points.items() if r.get("hull") == "True"]
    print(f"\nOn the (pass@1, pass@{k}) hull: {', '.join(hull)}; best α-DPG pass@{k}: {best}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
