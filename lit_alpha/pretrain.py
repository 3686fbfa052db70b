"""``python -m lit_alpha.pretrain``: the old entry point of ``python -m lit_alpha pretrain`` (:mod:`lit_alpha.tasks.countdown.pretrain`)."""

from lit_alpha.tasks.countdown.pretrain import main

if __name__ == "__main__":
    raise SystemExit(main())
