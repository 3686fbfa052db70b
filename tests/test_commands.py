"""One CLI: every command under ``python -m lit_alpha``, the old module entry points as aliases,
one-line errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lit_alpha.cli.lightning import main
from lit_alpha.cli.commands import LIGHTNING, OTHERS, one_line

REPO = Path(__file__).resolve().parents[1]


def test_overview_lists_every_command(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in ["fit", "validate", "test", "evaluate", "sweep", "frontier", "export", "pretrain", "convert"]:
        assert f"\n  {name} " in out
    assert set(LIGHTNING) | set(OTHERS) == {"fit", "validate", "test", "evaluate", "sweep", "frontier", "export",
                                            "pretrain", "convert"}


@pytest.mark.parametrize("argv, message", [
    ([], "error: command: give one of the commands above"),
    (["trian"], "error: command: 'trian' is not a command"),
    (["evaluate", "--config", "x.yaml", "--n", "many"], "error: --n: invalid int value: 'many'"),
    (["sweep", "--seeds", "a"], "error: --seeds: invalid int value: 'a'"),
    (["frontier", "--k", "x"], "error: --k: invalid int value: 'x'"),
    (["convert"], "error: the following arguments are required: --out"),
    (["pretrain", "--out", "x", "--seed", "q"], "error: seed: Expected a <class 'int'>. Got value: q"),
    (["fit", "--config", str(REPO / "configs/a05.yaml"), "--data.n_samples", "x"],
     "error: data.n_samples: Expected a <class 'int'>. Got value: x"),
])
def test_bad_input_is_one_line_exit_2(argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(message), errors


def test_nested_errors_name_the_full_field() -> None:
    message = ('Parser key "model.objective":\n  Problem with given class_path \'lit_alpha.objectives.AlphaDPG\':\n'
               '    Parser key "normalizer":\n      Expected a <class \'float\'>. Got value: abc')
    assert one_line(message) == "model.objective.init_args.normalizer: Expected a <class 'float'>. Got value: abc"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(OTHERS))
def test_old_entry_points_are_aliases(name) -> None:
    out = subprocess.run([sys.executable, "-m", f"lit_alpha.{name}", "--help"], capture_output=True, text=True,
                         cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith(f"usage: python -m lit_alpha {name}")
