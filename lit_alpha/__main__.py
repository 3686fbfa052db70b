"""``python -m lit_alpha <command> ...``: every command (:mod:`lit_alpha.cli`)."""

from lit_alpha.cli import main

if __name__ == "__main__":
    main()
