"""One CLI: every command under ``python -m lit_alpha``, the old module entry points as aliases,
one-line errors with exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from lit_alpha.cli.commands import LIGHTNING, OTHERS, one_line, with_moved_hint
from lit_alpha.cli.lightning import main

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
    (["evaluate", "--config", "x.yaml", "--n", "many"], "error: n: Not of type PositiveInt: invalid literal"),
    (["evaluate", "--config", "x.yaml", "--split", "val", "dev"], "error: split: Expected a typing.Literal["),
    (["evaluate", "--n", "4"], "error: config: required, not given"),
    (["sweep", "--seeds", "a"], "error: seeds: Expected a <class 'int'>. Got value: a"),
    (["sweep", "configs/a05.yaml", "--jobs", "0"], "error: jobs: Not of type PositiveInt: 0 does not conform"),
    (["frontier", "--k", "x"], "error: k: Not of type PositiveInt: invalid literal for int() with base 10: 'x'"),
    (["frontier", "--level", "2"], "error: level: Not of type OpenUnitInterval"),
    (["export", "--config", "x.yaml", "--ckpt_path", "x.ckpt", "--out", "x", "--merge", "maybe"],
     "error: merge: Expected a <class 'bool'>. Got value: maybe"),
    (["convert"], "error: out: required, not given"),
    (["convert", "--out", "x", "--dtype", "int8"], "error: dtype: Expected a typing.Literal["),
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


#: every non-Lightning command: documented fields its --help must list, and arguments for --print_config
TYPED = {
    "evaluate": (["config", "ckpt_path", "split", "n", "num_problems", "problems_per_batch", "eval_seed", "run_id",
                  "run_name", "experiment", "out", "no_mlflow", "target", "alpha"], None),
    "export": (["config", "ckpt_path", "out", "merge", "run_name"], None),
    "sweep": (["configs", "seeds", "experiment", "tracking_uri", "n", "splits", "num_problems", "jobs", "no_base",
               "frontier", "frontier_out", "dry_run"],
              ["configs/a05.yaml", "configs/rft.yaml", "--seeds", "0", "2", "--splits", "val", "--no_base", "--jobs", "2"]),
    "frontier": (["experiment", "tracking_uri", "splits", "k", "runs", "reference", "all_pairs", "group_seeds",
                  "num_boot", "seed", "level", "out", "no_mlflow"],
                 ["--splits", "val", "test", "--group_seeds", "--k", "8", "--runs", "a05", "it's", "--level", "0.9"]),
    "convert": (["out", "gguf", "dtype"], ["--out", "models/x", "--dtype", "bfloat16"]),
    "pretrain": (["out", "minutes", "seed", "steps", "attempts", "dtype"], ["--out", "x", "--minutes", "0.5"]),
}


@pytest.mark.parametrize("name", sorted(TYPED))
def test_help_lists_the_documented_fields(name, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m lit_alpha {name}")
    for field in TYPED[name][0]:
        line = next((line for line in out.splitlines() if line.strip().startswith(f"--{field} ")), None)
        assert line is not None, f"--{field} missing from {name} --help"
    assert "(type: " in out  # from the typed signature, with the docstring's text
    if name in ("evaluate", "export"):
        assert "--print_config prints the resolved run config" in " ".join(out.split())
    else:
        assert "--config CONFIG" in out and "--print_config" in out


@pytest.mark.parametrize("name", sorted(n for n, (_, args) in TYPED.items() if args is not None))
def test_print_config_round_trips(name, tmp_path, capsys) -> None:
    """--print_config shows every field with the given values; fed back with --config it prints the same."""
    import yaml

    with pytest.raises(SystemExit) as exit_info:
        main([name, *TYPED[name][1], "--print_config"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    values = yaml.safe_load(printed)
    assert set(TYPED[name][0]) <= set(values)
    (tmp_path / "args.yaml").write_text(printed)
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--config", str(tmp_path / "args.yaml"), "--print_config"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == printed
    if name == "sweep":
        assert values["configs"] == ["configs/a05.yaml", "configs/rft.yaml"] and values["seeds"] == [0, 2]
        assert values["no_base"] is True and values["jobs"] == 2 and values["splits"] == ["val"]
    if name == "frontier":
        assert values["splits"] == ["val", "test"] and values["group_seeds"] is True and values["k"] == 8
        assert values["runs"] == ["a05", "it's"] and values["level"] == 0.9 and values["all_pairs"] is False


@pytest.mark.parametrize("name", ["evaluate", "export"])
def test_print_config_of_a_run_command_is_the_resolved_run_config(name, tmp_path, capsys) -> None:
    """``evaluate``/``export``: --config is the run's; --print_config prints it resolved (overrides and
    interpolation applied), and that file given back as --config resolves to the same."""
    import yaml

    extra = ["--ckpt_path", "x.ckpt", "--out", "x"] if name == "export" else ["--split", "val", "train"]
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--config", str(REPO / "configs/a05.yaml"), *extra, "--data.max_new_tokens", "24",
              "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = capsys.readouterr().out
    run = yaml.safe_load(printed)
    assert run["data"]["max_new_tokens"] == 24 and run["model"]["objective"]["init_args"]["normalizer"] == 24
    (tmp_path / "run.yaml").write_text(printed)
    with pytest.raises(SystemExit):
        main([name, "--config", str(tmp_path / "run.yaml"), *extra, "--print_config"])
    assert yaml.safe_load(capsys.readouterr().out) == run


def test_argparse_spellings_still_parse() -> None:
    """The flags as docs/results.md and the sweep write them: several values after a list flag, a bool
    flag alone, repeated --config, run config overrides passed through in order."""
    from lit_alpha.analysis.sweep import sweep
    from lit_alpha.cli.commands import parse_command
    from lit_alpha.cli.evaluate import evaluate

    kwargs, overrides = parse_command(
        evaluate, ["--config", "a.yaml", "--split", "val", "train", "--n", "8", "--data.seed", "3", "--no_mlflow",
                   "--config", "b.yaml", "--trainer.max_steps", "-1"], "p", run_config=True, append=["config"])
    assert kwargs["config"] == ["a.yaml", "b.yaml"] and kwargs["split"] == ["val", "train"] and kwargs["n"] == 8
    assert kwargs["no_mlflow"] is True and kwargs["print_config"] is False and kwargs["ckpt_path"] is None
    assert overrides == ["--data.seed", "3", "--trainer.max_steps", "-1"]
    kwargs, _ = parse_command(sweep, ["c1.yaml", "c2.yaml", "--seeds", "0", "1", "2", "--dry_run", "--no_base",
                                      "false"], "p", positional="configs")
    assert kwargs["configs"] == ["c1.yaml", "c2.yaml"] and kwargs["seeds"] == [0, 1, 2]
    assert kwargs["dry_run"] is True and kwargs["no_base"] is False and kwargs["n"] == 256


def test_nested_errors_name_the_full_field() -> None:
    message = ('Parser key "model.objective":\n  Problem with given class_path \'lit_alpha.objectives.AlphaDPG\':\n'
               '    Parser key "normalizer":\n      Expected a <class \'float\'>. Got value: abc')
    assert one_line(message) == "model.objective.init_args.normalizer: Expected a <class 'float'>. Got value: abc"


def test_a_moved_field_points_to_its_new_place() -> None:
    for message in ("Group 'data' does not accept option 'base_samples'", "unrecognized arguments: --data.base_samples 8"):
        hinted = with_moved_hint(message)
        assert hinted.startswith(message) and "data.base_samples was moved" in hinted
        assert "lit_alpha.objectives.MixtureAlphaDPG" in hinted and "init_args.base_samples" in hinted
    assert with_moved_hint("Group 'data' does not accept option 'foo'") == "Group 'data' does not accept option 'foo'"


@pytest.mark.parametrize("name", sorted(OTHERS))
def test_every_command_has_its_help(name, capsys) -> None:
    """Each command's entry point lives in the command layer and answers --help from its signature."""
    assert OTHERS[name][0].startswith("lit_alpha.cli.")
    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: python -m lit_alpha {name}")
