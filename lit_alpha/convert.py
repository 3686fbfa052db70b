"""``python -m lit_alpha.convert``: the old entry point of ``python -m lit_alpha convert`` (:mod:`lit_alpha.models.convert`)."""

from lit_alpha.models.convert import main

if __name__ == "__main__":
    raise SystemExit(main())
