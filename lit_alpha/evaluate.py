"""``python -m lit_alpha.evaluate``: the old entry point of ``python -m lit_alpha evaluate`` (:mod:`lit_alpha.analysis.evaluate`)."""

from lit_alpha.analysis.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
