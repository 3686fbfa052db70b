"""``python -m lit_alpha.export``: the old entry point of ``python -m lit_alpha export`` (:mod:`lit_alpha.models.export`)."""

from lit_alpha.models.export import main

if __name__ == "__main__":
    raise SystemExit(main())
