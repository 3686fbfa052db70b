"""``python -m lit_alpha.frontier``: the old entry point of ``python -m lit_alpha frontier`` (:mod:`lit_alpha.analysis.frontier`)."""

from lit_alpha.analysis.frontier import main

if __name__ == "__main__":
    raise SystemExit(main())
