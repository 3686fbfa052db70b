"""The knob candidates of the strategy benchmark, judged on closed-form statistics only.

    python scripts/strategy_knobs.py            # the hand candidates, as a markdown table
    python scripts/strategy_knobs.py --search   # plus the seeded random search over priors and rates

Every number is closed form (lit_alpha.tasks.strategy.optima over all acceptance patterns): the base
is the prior with exact execution (1 - s)^5 (5 digits, per-digit slip s); optima execute perfectly.
Gates (docs/science/regime.md §5): base pass@1 in 8-25%, >= 20% of groups of 8 with >= 2 correct,
base pass@256 <= ~90% and far above the guesser, the α = 0 optimum >= 10 points above the base at k = 256.
"""

from __future__ import annotations

import argparse

import numpy as np

from lit_alpha.tasks.strategy.optima import distribution_table

NAMES = ["cpy", "rev", "inc", "sft", "neg"]
CANDIDATES = [  # label, prior, acceptance rates, per-digit slip (order of NAMES)
    ("A", [.6, .25, .1, .045, .005], [.1, .15, .2, .3, .4], .05),
    ("B", [.6, .25, .1, .045, .005], [.1, .15, .2, .3, .4], .10),
    ("C", [.6, .3, .08, .015, .005], [.15, .1, .2, .3, .5], .05),
    ("D", [.6, .3, .08, .015, .005], [.15, .1, .2, .3, .5], .10),
    ("E", [.6, .25, .12, .025, .005], [.2, .1, .05, .3, .5], .10),
    ("F", [.6, .25, .12, .025, .005], [.2, .1, .05, .3, .5], .05),
    ("G", [.55, .3, .1, .04, .01], [.2, .1, .04, .15, .5], .08),
    ("H", [.5, .3, .15, .04, .01], [.25, .1, .04, .15, .5], .08),
    ("I", [.6, .25, .1, .04, .01], [.3, .1, .04, .15, .6], .08),
    ("J", [.55, .3, .13, .017, .003], [.25, .1, .04, .15, .5], .08),
    ("K", [.6, .3, .08, .017, .003], [.25, .1, .04, .15, .5], .08),
    ("L", [.6, .3, .087, .01, .003], [.2, .1, .05, .2, .5], .08),
    ("M", [.6, .3, .087, .01, .003], [.2, .1, .05, .2, .5], .05),  # first choice: measured base 19.6% groups≥2 on val
    ("M2", [.6, .3, .087, .01, .003], [.25, .1, .05, .2, .5], .05),  # chosen
    ("N", [.6, .3, .085, .01, .005], [.2, .1, .05, .2, .5], .06),
    ("O", [.55, .3, .13, .015, .005], [.25, .1, .04, .2, .5], .06),
    ("P", [.6, .25, .12, .025, .005], [.25, .1, .04, .2, .5], .06),
]
TAGS = ("a0", "a025", "a05", "a075", "a0999", "pass1")


def row(prior, rates, slip, length: int = 5) -> dict:
    t = distribution_table(prior, rates, execution=(1 - slip) ** length, digits=length, ks=(1, 256))
    b = t["base"]
    out = {"ceiling": t["ceiling"]["pass@inf"], "base_p1": b["pass@1"], "base_g2": b["groups_ge2_of_8"],
           "base_p256": b["pass@256"], "guesser_p256": t["guesser"]["pass@256"]}
    out.update({f"{tag}_p256": t[f"optimum_{tag}"]["pass@256"] for tag in TAGS})
    out.update({f"{tag}_p1": t[f"optimum_{tag}"]["pass@1"] for tag in ("a0", "a05", "a0999")})
    out["passes"] = (0.08 <= out["base_p1"] <= 0.25 and out["base_g2"] >= 0.2 and out["base_p256"] <= 0.9
                     and out["a0_p256"] - out["base_p256"] >= 0.10)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--search", action="store_true", help="also the seeded random search")
    args = parser.parse_args()
    print("| cand | prior | rates | s | ceiling | base p@1 | groups≥2/8 | base p@256 | opt α=0 / .25 / .5 / .75 / .999 / pass@1-opt p@256 | opt p@1 α=0 / .5 / .999 | gates |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for label, prior, rates, slip in CANDIDATES:
        r = row(prior, rates, slip)
        opts = " / ".join(f"{100 * r[f'{t}_p256']:.1f}" for t in TAGS)
        p1 = " / ".join(f"{100 * r[f'{t}_p1']:.1f}" for t in ("a0", "a05", "a0999"))
        print(f"| {label} | {prior} | {rates} | {slip} | {100 * r['ceiling']:.1f} | {100 * r['base_p1']:.1f} | "
              f"{100 * r['base_g2']:.1f} | {100 * r['base_p256']:.1f} | {opts} | {p1} | {'pass' if r['passes'] else 'fail'} |")
    if args.search:
        rng = np.random.default_rng(0)
        found = []
        for J in (5, 6, 7):
            for _ in range(3000):
                prior = np.maximum(np.sort(rng.dirichlet(np.full(J, 0.5)))[::-1], 0.002)
                prior /= prior.sum()
                rates = rng.choice([0.02, 0.04, 0.06, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6], size=J)
                r = row(prior, rates, 0.05)
                if r["passes"]:
                    p = [r[f"{t}_p256"] for t in ("a0", "a025", "a05", "a075")]
                    found.append((min(p[0] - p[1], p[1] - p[2], p[2] - p[3]), p[0] - r["a0999_p256"], J))
        found.sort(reverse=True)
        print(f"\nrandom search (J = 5, 6, 7 strategies x 3000 draws, s = 0.05): {len(found)} pass the gates; "
              f"largest smallest gap in pass@256 between consecutive α in (0, .25, .5, .75): "
              f"{100 * found[0][0]:.2f} points; α = 0 vs α = 0.999 gap there: {100 * found[0][1]:.1f} points")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
