"""Statistics of the precision–coverage frontier: pass@k per problem, the random guesser, answer
diversity, aligning and grouping runs, bootstrap over problems, the upper-right hull, difficulty
transitions. Pure numpy: the analysis of one split is :mod:`lit_alpha.analysis.tables`, figures
:mod:`lit_alpha.analysis.figures`, files and MLflow :mod:`lit_alpha.analysis.frontier`.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from lit_alpha.metrics.pass_at_k import default_ks, pass_at_k_per_problem  # noqa: F401 - re-exported

GUESSER = "random guesser"
BIN_NAMES = ("unsolved", "hard", "medium", "easy")
DEFAULT_BIN_EDGES = (0.25, 0.75)  # hard ≤ 0.25 < medium ≤ 0.75 < easy; unsolved is c = 0

def pass_at_k_matrix(n: Sequence[int], c: Sequence[int], ks: Sequence[int]) -> np.ndarray:
    """Per-problem pass@k for every k.  [P, K]"""
    return np.stack([pass_at_k_per_problem(n, c, k) for k in ks], axis=1) if len(ks) else np.zeros((len(n), 0))


def guesser_matrix(p: Sequence[float], ks: Sequence[int]) -> np.ndarray:
    """Per-problem pass@k ``1 − (1 − p)^k`` of independent guesses with hit probability p.  [P, K]"""
    p = np.asarray(p, dtype=np.float64)[:, None]
    return 1.0 - (1.0 - p) ** np.asarray(ks, dtype=np.float64)[None, :]


# -- diversity ----------------------------------------------------------------------------
def shannon_entropy(counts: Iterable[int]) -> float:
    """Shannon entropy (nats) of the empirical distribution given by ``counts``; 0 if empty."""
    x = np.asarray([v for v in counts if v > 0], dtype=np.float64)
    if x.size == 0:
        return 0.0
    p = x / x.sum()
    return float(-(p * np.log(p)).sum())


def simpson_index(counts: Iterable[int]) -> float:
    """Gini–Simpson diversity ``1 − Σ p_i²`` (probability that two draws, with replacement, differ)."""
    x = np.asarray([v for v in counts if v > 0], dtype=np.float64)
    if x.size == 0:
        return 0.0
    p = x / x.sum()
    return float(1.0 - (p * p).sum())


TARGET_COLUMNS = ("fkl_to_target", "alpha_div_to_target")
"""Per-problem divergences to the filtered base model (:mod:`lit_alpha.metrics.target`)."""


# -- runs ---------------------------------------------------------------------------------
@dataclass
class RunResult:
    """One run's per-problem results on one split (problems in a fixed order)."""

    name: str
    problem_ids: list[str]
    n: np.ndarray  # [P] samples per problem
    c: np.ndarray  # [P] correct samples per problem
    records: list[dict[str, Any]] = field(default_factory=list)  # numbers/target per problem
    diversity: dict[str, np.ndarray] = field(default_factory=dict)  # column -> [P]
    run_id: str | None = None
    members: list["RunResult"] = field(default_factory=list, repr=False)  # seeds averaged into this one
    hit_p: np.ndarray | None = None  # the random guesser's per-problem hit probability (guesser only)

    @property
    def frac_solved(self) -> np.ndarray:
        return self.c / np.maximum(self.n, 1)

    def matrix(self, ks: Sequence[int]) -> np.ndarray:
        key = [int(k) for k in ks]
        if self.hit_p is not None:
            return guesser_matrix(self.hit_p, key)
        if self.members:
            return np.mean([m.matrix(key) for m in self.members], axis=0)
        return pass_at_k_matrix(self.n, self.c, key)

    @classmethod
    def from_rows(cls, name: str, rows: Sequence[Mapping[str, Any]], run_id: str | None = None) -> "RunResult":
        """From table rows (dicts with problem_id, n, c, and optionally numbers/target/diversity columns)."""
        rows = sorted(rows, key=lambda r: str(r["problem_id"]))
        diversity_cols = [k for k in ("distinct_correct", "answer_entropy", "answer_simpson",
                                      "correct_entropy", "correct_simpson") + TARGET_COLUMNS
                          if rows and k in rows[0]]
        return cls(
            name=name,
            problem_ids=[str(r["problem_id"]) for r in rows],
            n=np.asarray([int(r["n"]) for r in rows], dtype=np.int64),
            c=np.asarray([int(r["c"]) for r in rows], dtype=np.int64),
            records=[{"numbers": list(r["numbers"]), "target": r["target"]} for r in rows
                     if "numbers" in r and "target" in r],
            diversity={k: np.asarray([np.nan if r.get(k) is None else float(r[k]) for r in rows])
                       for k in diversity_cols},  # divergence columns: NaN where the base solves nothing
            run_id=run_id,
        )


def read_table(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a per-problem JSONL table."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def align(runs: Sequence[RunResult]) -> list[RunResult]:
    """The runs restricted to the problems they all share, in the same order (for paired statistics)."""
    if not runs:
        return []
    common = set(runs[0].problem_ids)
    for r in runs[1:]:
        common &= set(r.problem_ids)
    if not common:
        raise ValueError("the runs share no problem: were they evaluated on the same split?")
    order = sorted(common)
    out = []
    for r in runs:
        pos = {p: i for i, p in enumerate(r.problem_ids)}
        idx = np.asarray([pos[p] for p in order], dtype=np.int64)
        out.append(RunResult(
            name=r.name, problem_ids=order, n=r.n[idx], c=r.c[idx],
            records=[r.records[i] for i in idx] if len(r.records) == len(r.problem_ids) else [],
            diversity={k: v[idx] for k, v in r.diversity.items()}, run_id=r.run_id,
            members=[_subset(m, order, idx) for m in r.members],  # members share the parent's rows
            hit_p=None if r.hit_p is None else r.hit_p[idx],
        ))
    return out


def _subset(r: RunResult, order: list[str], idx: np.ndarray) -> RunResult:
    return RunResult(name=r.name, problem_ids=order, n=r.n[idx], c=r.c[idx], run_id=r.run_id,
                     members=[_subset(m, order, idx) for m in r.members])


_SEED_SUFFIX = re.compile(r"^(?P<method>.+)-s(?P<seed>\d+)$")


def method_of(run_name: str) -> str:
    """``a05-s2`` → ``a05`` (a name without a seed suffix is its own method)."""
    m = _SEED_SUFFIX.match(run_name)
    return m.group("method") if m else run_name


def group_seeds(runs: Sequence[RunResult]) -> list[RunResult]:
    """One result per method: per-problem pass@k (and diversity) averaged over its seeds' runs
    (``n``/``c`` are summed, so difficulty bins use the pooled fraction solved)."""
    groups: dict[str, list[RunResult]] = {}
    for r in align(runs):
        groups.setdefault(method_of(r.name), []).append(r)
    out = []
    for method, members in groups.items():
        if len(members) == 1:
            out.append(RunResult(**{**members[0].__dict__, "name": method}))
            continue
        first = members[0]
        merged = RunResult(
            name=method, problem_ids=first.problem_ids,
            n=np.sum([m.n for m in members], axis=0), c=np.sum([m.c for m in members], axis=0),
            records=first.records,
            diversity={k: np.mean([m.diversity[k] for m in members], axis=0) for k in first.diversity
                       if all(k in m.diversity for m in members)},
            members=members,
        )
        out.append(merged)
    return out


def guesser_run(template: RunResult,
                hit_probabilities: Callable[[Sequence[Mapping[str, Any]]], np.ndarray]) -> RunResult | None:
    """A random guesser on the problems of ``template``, whose per-problem hit probability the task
    gives (``hit_probabilities(records)``, e.g. :func:`lit_alpha.tasks.countdown.guesser.hit_probabilities`);
    None when the template has no problem records."""
    if len(template.records) != len(template.problem_ids) or not template.records:
        return None
    return RunResult(name=GUESSER, problem_ids=list(template.problem_ids), n=template.n.copy(),
                     c=np.zeros_like(template.c), records=template.records,
                     hit_p=hit_probabilities(template.records))


# -- curves and bootstrap -----------------------------------------------------------------
def pass_at_k_curve(run: RunResult, ks: Sequence[int]) -> np.ndarray:
    """Mean pass@k over problems for each k.  [K]"""
    return run.matrix(ks).mean(axis=0)


@dataclass(frozen=True)
class Bootstrap:
    """``num_boot`` seeded resamples (with replacement) of ``num_problems`` problems, the same for every
    statistic of an analysis, so differences between runs are paired. Intervals are percentile intervals
    from ``scipy.stats.bootstrap``; :attr:`indices` are the very resamples it draws (for the hull band,
    which needs every run's means on each resample jointly)."""

    num_problems: int
    num_boot: int = 1000
    seed: int = 0
    level: float = 0.95

    def __post_init__(self) -> None:
        if self.num_problems < 1 or self.num_boot < 1:
            raise ValueError("need at least one problem and one resample")

    def rng(self) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.num_problems])

    @property
    def indices(self) -> np.ndarray:
        """The resamples of problem indices, as scipy draws them from :meth:`rng`.  [B, P]"""
        return self.rng().integers(0, self.num_problems, size=(self.num_boot, self.num_problems))

    def _run(self, data: tuple[np.ndarray, ...], statistic, paired: bool):
        from scipy.stats import bootstrap

        with warnings.catch_warnings():  # a constant sample (zero-width interval) is a fine answer here
            warnings.simplefilter("ignore")
            return bootstrap(data, statistic, n_resamples=self.num_boot, batch=None, vectorized=True, paired=paired,
                             axis=0, confidence_level=self.level, method="percentile", rng=self.rng())

    def interval(self, values: np.ndarray, statistic=np.mean) -> tuple[np.ndarray, np.ndarray]:
        """Percentile interval of ``statistic`` over problems (axis 0) of ``values`` [P, ...] → ([...], [...]);
        resamples where the statistic is NaN (``np.nanmean`` of only NaNs) are left out."""
        values = np.asarray(values, dtype=np.float64)
        res = self._run((values,), lambda x, axis: statistic(x, axis=axis), paired=False)
        boot = np.moveaxis(np.asarray(res.bootstrap_distribution), -1, 0)  # [B, ...]
        if not np.isnan(boot).any():
            return np.asarray(res.confidence_interval.low), np.asarray(res.confidence_interval.high)
        q = [50 * (1 - self.level), 50 * (1 + self.level)]
        low, high = np.nanpercentile(boot, q, axis=0)
        return low, high

    def paired_difference(self, a: np.ndarray, b: np.ndarray) -> tuple[float, float, float, float]:
        """``mean(a) − mean(b)`` over problems, its interval and two-sided p-value, resampling the problems
        of both together (``paired=True``).  a, b: [P] → (difference, low, high, p)"""
        d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
        res = self._run((np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)),
                        lambda x, y, axis: x.mean(axis=axis) - y.mean(axis=axis), paired=True)
        boot = np.asarray(res.bootstrap_distribution)  # [B]
        if np.all(d == 0):
            p = 1.0
        else:
            ties = 0.5 * (boot == 0).mean()  # mid-p: resamples with exactly no difference count half
            p = float(min(1.0, 2 * min((boot < 0).mean() + ties, (boot > 0).mean() + ties)))
        return float(d.mean()), float(res.confidence_interval.low), float(res.confidence_interval.high), p


def bootstrap_indices(num_problems: int, num_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """``num_boot`` resamples (with replacement) of ``range(num_problems)``, seeded: :attr:`Bootstrap.indices`.  [B, P]"""
    return Bootstrap(num_problems, num_boot, seed).indices


def bootstrap_means(per_problem: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Mean over each resample of problems: ``[P, ...]`` values, ``[B, P]`` indices → ``[B, ...]``."""
    return per_problem[idx].mean(axis=1)


def curve_with_band(run: RunResult, ks: Sequence[int], boot: Bootstrap):
    """(mean curve, lower band, upper band) of pass@k over k, bootstrapped over problems.  [K] each"""
    m = run.matrix(ks)
    low, high = boot.interval(m)
    return m.mean(axis=0), low, high


@dataclass(frozen=True)
class PairedDifference:
    a: str
    b: str
    k: int
    diff: float  # mean pass@k of a minus b
    low: float
    high: float
    p_value: float

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0


def paired_bootstrap(a: np.ndarray, b: np.ndarray, boot: Bootstrap) -> tuple[float, float, float, float]:
    """Paired bootstrap of ``mean(a) − mean(b)`` over problems (same resample for both).

    ``a``, ``b``: per-problem values on the same problems [P]. The interval is the percentile interval
    of the resampled differences; the two-sided p-value ``2·min(P*(Δ < 0), P*(Δ > 0))`` (ties at 0
    count half, clipped to 1). Returns (difference, CI low, CI high, p-value).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same problems, got {a.shape} and {b.shape}")
    return boot.paired_difference(a, b)


def significance_table(runs: Sequence[RunResult], ks: Sequence[int], boot: Bootstrap,
                       reference: str | None = None) -> list[PairedDifference]:
    """Paired-bootstrap differences of pass@k for each k in ``ks``: every run against ``reference``
    (if given), else every pair of runs. Runs must be aligned (:func:`align`)."""
    names = [r.name for r in runs]
    mats = {r.name: r.matrix(ks) for r in runs}
    if reference is not None:
        if reference not in mats:
            raise ValueError(f"reference run {reference!r} not among {names}")
        pairs = [(n, reference) for n in names if n != reference]
    else:
        pairs = [(names[i], names[j]) for i in range(len(names)) for j in range(i + 1, len(names))]
    out = []
    for a, b in pairs:
        for j, k in enumerate(ks):
            diff, low, high, p = paired_bootstrap(mats[a][:, j], mats[b][:, j], boot)
            out.append(PairedDifference(a, b, int(k), diff, low, high, p))
    return out


# -- the hull -----------------------------------------------------------------------------
def upper_right_hull(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated points (maximising both coordinates), sorted by x ascending
    (so y descends): the precision–coverage frontier. Duplicates keep the first index."""
    pts = [(float(x), float(y)) for x, y in points]
    keep = []
    for i, (x, y) in enumerate(pts):
        dominated = any(
            (x2 >= x and y2 >= y and (x2 > x or y2 > y)) or ((x2, y2) == (x, y) and j < i)
            for j, (x2, y2) in enumerate(pts) if j != i
        )
        if not dominated:
            keep.append(i)
    return sorted(keep, key=lambda i: (pts[i][0], -pts[i][1]))


def staircase(points: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """``f(x) = max{y_i : x_i ≥ x}`` on ``grid`` (NaN where no point has x_i ≥ x).  points [R, 2]"""
    out = np.full(grid.shape, np.nan)
    for x, y in points:
        mask = grid <= x
        out[mask] = np.fmax(out[mask], y)
    return out


def hull_band(mats: Sequence[np.ndarray], idx: np.ndarray, grid: np.ndarray, level: float = 0.95):
    """Bootstrap band of the frontier staircase: for each resample, the runs' (pass@1, pass@k)
    means → staircase on ``grid``; percentile band pointwise over the resamples where it is defined
    (NaN where fewer than half of them reach that pass@1).  mats: per run [P, 2] (pass@1, pass@k)."""
    boots = np.stack([bootstrap_means(m, idx) for m in mats], axis=1)  # [B, R, 2]
    curves = np.stack([staircase(b, grid) for b in boots])  # [B, G]
    defined = (~np.isnan(curves)).mean(axis=0) >= 0.5
    low, high = np.full(grid.shape, np.nan), np.full(grid.shape, np.nan)
    if defined.any():
        lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
        low[defined] = np.nanquantile(curves[:, defined], lo_q, axis=0)
        high[defined] = np.nanquantile(curves[:, defined], hi_q, axis=0)
    return low, high


# -- difficulty transitions ---------------------------------------------------------------
def difficulty_bins(frac_solved: Sequence[float], edges: Sequence[float] = DEFAULT_BIN_EDGES) -> np.ndarray:
    """0 unsolved (frac = 0), 1 hard (0, e0], 2 medium (e0, e1], 3 easy (e1, 1]."""
    f = np.asarray(frac_solved, dtype=np.float64)
    bins = np.where(f <= 0, 0, np.where(f <= edges[0], 1, np.where(f <= edges[1], 2, 3)))
    return bins.astype(np.int64)


def transition_table(base: RunResult, tuned: RunResult, edges: Sequence[float] = DEFAULT_BIN_EDGES) -> np.ndarray:
    """Counts ``T[i, j]`` of problems in bin i under ``base`` and bin j under ``tuned`` (shared problems)."""
    base, tuned = align([base, tuned])
    bb, tb = difficulty_bins(base.frac_solved, edges), difficulty_bins(tuned.frac_solved, edges)
    table = np.zeros((4, 4), dtype=np.int64)
    np.add.at(table, (bb, tb), 1)
    return table


def format_transition(table: np.ndarray, base: str, tuned: str) -> str:
    width = max(len(b) for b in BIN_NAMES) + 2
    head = f"{base + ' → ' + tuned:<{width + 10}}" + "".join(f"{b:>{width}}" for b in BIN_NAMES) + f"{'total':>{width}}"
    lines = [head]
    for i, name in enumerate(BIN_NAMES):
        lines.append(f"{name:<{width + 10}}" + "".join(f"{v:>{width}d}" for v in table[i]) + f"{table[i].sum():>{width}d}")
    lines.append(f"{'total':<{width + 10}}" + "".join(f"{v:>{width}d}" for v in table.sum(0)) + f"{table.sum():>{width}d}")
    return "\n".join(lines)

