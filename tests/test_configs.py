"""The shipped configs: every method config resolves to the budget of its folder's ``base.yaml``, the
code's defaults are the default benchmark's, the trainer budget is written once (in code), and omegaconf
interpolation (``${data.max_new_tokens}``) resolves after command-line overrides."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import yaml

from lit_alpha.cli.lightning import TRAINER_DEFAULTS, LitAlphaCLI
from lit_alpha.data.datamodule import RolloutDataModule
from lit_alpha.module import AlphaModule
from lit_alpha.training.tracking import flatten

REPO = Path(__file__).resolve().parents[1]
METHOD_CONFIGS = sorted(p for p in (REPO / "configs").glob("*.yaml") if p.name != "base.yaml")
#: method configs of the folders that hold their own base.yaml (another model, task or budget)
FOLDER_METHODS = sorted(p for p in (REPO / "configs").glob("*/*.yaml")
                        if p.name != "base.yaml" and (p.parent / "base.yaml").is_file()
                        and "\n__base__: base.yaml\n" in "\n" + p.read_text())
ALL_CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))
# what a method config may set differently from the base: its objective (not its normaliser), how it
# samples (vLLM) or what data it trains on (offline RFT), and where it runs (FSDP on GPUs)
MAY_DIFFER = ("model.objective.", "model.num_threads", "data.sampler", "data.offline", "trainer.strategy",
              "trainer.accelerator", "trainer.devices", "trainer.num_nodes", "trainer.precision",
              "config", "trainer.logger.init_args.run_name")  # (the file names and the run name)


class _ParseOnly(LitAlphaCLI):
    """The CLI's parser (files, bases, interpolation, defaults), nothing instantiated."""

    def instantiate_classes(self) -> None:
        pass


def resolve(*args: str) -> dict:
    """The fully resolved config of ``python -m lit_alpha fit <args>``, flattened."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cli = _ParseOnly(AlphaModule, RolloutDataModule, args=list(args), run=False,
                         trainer_defaults=TRAINER_DEFAULTS, subclass_mode_model=False, subclass_mode_data=False)
    return flatten(cli.config.as_dict())


def test_there_are_method_configs() -> None:
    assert len(METHOD_CONFIGS) >= 15
    names = {p.name for p in METHOD_CONFIGS}
    for path in METHOD_CONFIGS:  # base.yaml, or a method config that starts from it (grpo_kl_bc: grpo_kl)
        bases = re.findall(r"\n__base__: (\S+)\n", path.read_text())
        assert len(bases) == 1, f"{path.name} does not name one __base__"
        if bases[0] != "base.yaml":
            assert bases[0] in names, f"{path.name} does not start from base.yaml or a method config"
            assert (REPO / "configs" / bases[0]).read_text().count("\n__base__: base.yaml\n") == 1


@pytest.mark.parametrize("path", METHOD_CONFIGS, ids=lambda p: p.stem)
def test_every_method_config_has_the_base_budget(path: Path) -> None:
    base = resolve("--config", str(REPO / "configs/base.yaml"))
    method = resolve("--config", str(path))
    differ = {k for k in set(base) | set(method) if base.get(k, "<unset>") != method.get(k, "<unset>")}
    assert {k for k in differ if not k.startswith(MAY_DIFFER)} == set()
    assert method["model.objective.init_args.normalizer"] == base["data.max_new_tokens"] == 12  # the strategy benchmark
    assert method["model.objective.class_path"].startswith("lit_alpha.objectives.")


@pytest.mark.parametrize("path", FOLDER_METHODS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_folder_method_config_has_its_folder_budget(path: Path) -> None:
    base = resolve("--config", str(path.parent / "base.yaml"))
    method = resolve("--config", str(path))
    differ = {k for k in set(base) | set(method) if base.get(k, "<unset>") != method.get(k, "<unset>")}
    assert {k for k in differ if not k.startswith(MAY_DIFFER)} == set()


def test_there_are_folder_method_configs() -> None:
    assert {p.parent.name for p in FOLDER_METHODS} >= {"lean", "smollm2"}


def test_the_code_defaults_are_the_default_benchmark() -> None:
    """A fit without --config trains what configs/base.yaml trains: base.yaml adds only a seed and
    the thread count, everything else (task, model, data and trainer budget) is the code's default."""
    bare = resolve()
    base = resolve("--config", str(REPO / "configs/base.yaml"))
    differ = {k for k in set(bare) | set(base) if bare.get(k, "<unset>") != base.get(k, "<unset>")}
    assert differ <= {"seed_everything", "model.num_threads", "config", "trainer.logger.init_args.run_name"}, differ
    assert base["data.task.class_path"] == "lit_alpha.tasks.StrategyTask"
    assert (base["data.task.init_args.reveal"], base["model.model"]) == (False, "strategy-tiny")


@pytest.mark.parametrize("task", ["strategy/task", "strategy/control", "countdown5/task", "steps/task"])
def test_a_benchmark_file_over_a_method_config(task: str) -> None:
    """A benchmark folder's task.yaml, given after a method config, changes only the benchmark."""
    method = resolve("--config", str(REPO / "configs/a05.yaml"))
    both = resolve("--config", str(REPO / "configs/a05.yaml"), "--config", str(REPO / f"configs/{task}.yaml"))
    differ = {k for k in set(method) | set(both) if method.get(k, "<unset>") != both.get(k, "<unset>")}
    allowed = ("data.task", "model.model", "data.max_new_tokens", "model.objective.init_args.normalizer",
               "trainer.logger.init_args.experiment_name", "config")
    assert {k for k in differ if not k.startswith(allowed)} == set(), differ
    assert both["model.objective.init_args.normalizer"] == both["data.max_new_tokens"]


BUDGET = {k: v for k, v in TRAINER_DEFAULTS.items() if k not in ("logger", "default_root_dir")}


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_the_trainer_budget_is_written_once(path: Path) -> None:
    """No config restates a trainer default (TRAINER_DEFAULTS is the one place): a value it sets differs."""
    trainer = (yaml.safe_load(path.read_text()) or {}).get("trainer") or {}
    restated = {k: v for k, v in trainer.items() if k in BUDGET and v == BUDGET[k]}
    assert not restated, f"{path.name} restates the trainer budget: {restated}"


def test_interpolation_follows_an_override() -> None:
    flat = resolve("--config", str(REPO / "configs/a05.yaml"), "--data.max_new_tokens", "48")
    assert flat["data.max_new_tokens"] == 48
    assert flat["model.objective.init_args.normalizer"] == 48.0


def test_the_base_is_one_place(tmp_path: Path) -> None:
    """A changed base changes every method config built on it; a method config's own value wins."""
    (tmp_path / "base.yaml").write_text((REPO / "configs/base.yaml").read_text() + "trainer:\n  max_steps: 7\n")
    (tmp_path / "m.yaml").write_text((REPO / "configs/grpo.yaml").read_text() + "data:\n  n_samples: 4\n")
    flat = resolve("--config", str(tmp_path / "m.yaml"))
    assert flat["trainer.max_steps"] == 7
    assert flat["data.n_samples"] == 4
    assert flat["data.prompts_per_step"] == 32
    assert flat["model.objective.class_path"] == "lit_alpha.objectives.GRPO"


def test_a_missing_base_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from lit_alpha.cli.lightning import main

    (tmp_path / "m.yaml").write_text("__base__: nope.yaml\nmodel:\n  lr: 0.1\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(tmp_path / "m.yaml")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "__base__ 'nope.yaml'" in err, err


def test_grpo_kl_bc_is_grpo_kl_with_the_bias_correction() -> None:
    kl, bc = resolve("--config", str(REPO / "configs/grpo_kl.yaml")), resolve("--config", str(REPO / "configs/grpo_kl_bc.yaml"))
    assert {k for k in set(kl) | set(bc) if kl.get(k) != bc.get(k)} - {"config", "trainer.logger.init_args.run_name"} == {
        "model.objective.init_args.bias_correction_kl"}
    assert bc["model.objective.init_args.bias_correction_kl"] is True and kl["model.objective.init_args.bias_correction_kl"] is False
    assert bc["model.objective.init_args.beta"] == 0.1


def test_mixture_configs_name_the_mixture_objective() -> None:
    for name in ("a0_mix", "a025_mix"):
        flat = resolve("--config", str(REPO / f"configs/{name}.yaml"))
        assert flat["model.objective.class_path"] == "lit_alpha.objectives.MixtureAlphaDPG"
        assert flat["model.objective.init_args.base_samples"] == 8 and flat["data.n_samples"] == 8
