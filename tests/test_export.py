"""The trained policy in Hugging Face format: the model/ of a fit (on disk and in MLflow), the
``export`` command for any checkpoint (LoRA merged or as adapters), and an export as the model of a
new fit. Real fits of the embedded model into a real MLflow store; log-probs compared exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import TINY_TASK, store_client

from lit_alpha.cli.lightning import main
from lit_alpha.models import EMBEDDED

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (EMBEDDED["countdown-tiny"] / "config.json").exists(), reason="needs the embedded model")]

REPO = Path(__file__).resolve().parents[1]
A05 = str(REPO / "configs/a05.yaml")
SMALL = ["--trainer.max_steps", "3", "--trainer.val_check_interval", "3",
         "--data.task.init_args.num_val", "4", "--data.task.init_args.num_test", "4",
         "--data.val_samples", "4", "--data.eval_prompts_per_batch", "4",
         "--data.prompts_per_step", "4", "--data.n_samples", "4", "--data.max_new_tokens", "16",
         "--trainer.enable_progress_bar", "false", *TINY_TASK]
LORA = ["--model.lora.r", "4", "--model.lora.alpha", "8", "--model.lora.target_modules", "[q_proj,v_proj]"]
PROMPT, COMPLETIONS = "3 7 9 12 | 59 = ", ["7*9-12/3", "9*7-3", "12+7*9", "(3+9)*7-12"]


def sequence_logprobs(model: torch.nn.Module, tokenizer) -> torch.Tensor:
    """``[4]`` log π(completion | prompt) of fixed completions, summed over their tokens."""
    from lit_alpha.scoring.logprobs import token_logprobs

    prompt = tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    rows = [prompt + tokenizer(c, add_special_tokens=False)["input_ids"] for c in COMPLETIONS]
    width = max(map(len, rows))
    ids = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    with torch.no_grad():
        return token_logprobs(model.eval(), ids, mask, len(prompt)).double().sum(-1)


def checkpointed(ckpt: Path, *extra: str):
    """The policy module of ``ckpt``, built from the run's config as every command builds it."""
    from lit_alpha.cli.run import build_run
    from lit_alpha.training.checkpoint import load_checkpoint

    run = build_run(["--config", A05, *SMALL, *extra])
    load_checkpoint(run.module, ckpt)
    return run.module


def the_run():
    client = store_client()
    (run,) = client.search_runs([client.get_experiment_by_name("lit_alpha").experiment_id])
    return client, run


def test_fit_saves_the_model_and_export_matches_the_checkpoint(in_tmp: Path, capsys) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    main(["fit", "--config", A05, *SMALL])
    client, run = the_run()
    run_dir = Path("mlruns") / run.info.experiment_id / run.info.run_id
    ckpt, model_dir = run_dir / "checkpoints/last.ckpt", run_dir / "model"
    assert (model_dir / "model.safetensors").is_file() and (model_dir / "tokenizer_config.json").is_file()
    listed = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "model")}
    assert {"model.safetensors", "config.json", "tokenizer_config.json"} <= listed
    plots = [a.path for a in client.list_artifacts(run.info.run_id, "plots")]
    assert plots == ["plots/pass_at_k_step000000.png", "plots/pass_at_k_step000003.png"]

    module = checkpointed(ckpt)
    want = sequence_logprobs(module.policy, module.tokenizer)
    base = sequence_logprobs(module.base, module.tokenizer)
    assert (want - base).abs().max() > 1e-4  # the run trained: the check below is not vacuous
    downloaded = client.download_artifacts(run.info.run_id, "model", str(in_tmp / "from_mlflow"))
    for directory in (model_dir, Path(downloaded)):
        model = AutoModelForCausalLM.from_pretrained(directory)
        got = sequence_logprobs(model, AutoTokenizer.from_pretrained(directory))
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)

    # export: the same weights from the checkpoint, `last` resolved like fit --ckpt_path last
    main(["export", "--config", A05, *SMALL, "--ckpt_path", "last", "--out", "exported"])
    assert "wrote model of" in capsys.readouterr().out
    got = sequence_logprobs(AutoModelForCausalLM.from_pretrained("exported"), AutoTokenizer.from_pretrained("exported"))
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)

    # the export is a model directory a new fit starts from (its step-0 evaluation is that policy's)
    main(["fit", "--config", A05, *SMALL, "--trainer.max_steps", "1", "--model.model", str(in_tmp / "exported"),
          "--trainer.logger.init_args.run_name", "from_export"])
    runs = client.search_runs([run.info.experiment_id], filter_string="attributes.run_name = 'from_export'")
    assert runs[0].info.status == "FINISHED"
    assert runs[0].data.params["model.model"] == str(in_tmp / "exported")


def test_export_errors_are_one_line(in_tmp: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--config", A05, "--ckpt_path", "nope.ckpt", "--out", "x"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == "error: ckpt_path: 'nope.ckpt' is not a checkpoint file"
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--config", A05, "--ckpt_path", "x.ckpt", "--out", "x", "--merge", "maybe"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("error: merge: Expected a <class 'bool'>. Got value: maybe")


def test_lora_export_merged_equals_adapters_on(in_tmp: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    main(["fit", "--config", A05, *SMALL, *LORA])
    _, run = the_run()
    run_dir = Path("mlruns") / run.info.experiment_id / run.info.run_id
    module = checkpointed(run_dir / "checkpoints/last.ckpt", *LORA)
    want = sequence_logprobs(module.policy, module.tokenizer)  # adapters on
    assert (want - sequence_logprobs(module.base, module.tokenizer)).abs().max() > 1e-4
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "model")

    # the fit's model/ and export --merge true: plain merged models (no peft needed to load them)
    main(["export", "--config", A05, *SMALL, *LORA, "--ckpt_path", "last", "--out", "merged"])
    for directory in (run_dir / "model", Path("merged")):
        assert not (directory / "adapter_config.json").exists()
        merged = AutoModelForCausalLM.from_pretrained(directory)
        torch.testing.assert_close(sequence_logprobs(merged, tokenizer), want, atol=1e-5, rtol=0)

    # --merge false: the adapters alone, loadable over the base model they name
    main(["export", "--config", A05, *SMALL, *LORA, "--ckpt_path", "last", "--out", "adapters", "--merge", "false"])
    assert (Path("adapters") / "adapter_config.json").is_file() and not (Path("adapters") / "model.safetensors").exists()
    base = AutoModelForCausalLM.from_pretrained(EMBEDDED["countdown-tiny"])
    adapted = PeftModel.from_pretrained(base, "adapters")
    torch.testing.assert_close(sequence_logprobs(adapted, tokenizer), want, atol=1e-6, rtol=0)
