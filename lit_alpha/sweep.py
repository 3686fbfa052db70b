"""``python -m lit_alpha.sweep``: the old entry point of ``python -m lit_alpha sweep`` (:mod:`lit_alpha.analysis.sweep`)."""

from lit_alpha.analysis.sweep import main

if __name__ == "__main__":
    raise SystemExit(main())
