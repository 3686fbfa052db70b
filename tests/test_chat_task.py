"""ChatTask: a task asked through the model's chat template, with a prefilled reply. The rendered
prompt must encode to exactly the template's tokens (with and without a tokenizer that adds BOS),
the verifier must see the whole assistant message, and a fit over it runs from the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import store_client
from transformers import AutoTokenizer

from lit_alpha.errors import UserError
from lit_alpha.models import resolve_model_path
from lit_alpha.tasks import ChatTask, CountdownTask

REPO = Path(__file__).resolve().parents[1]
# a ChatML-style template (the shape of SmolLM2's), BOS first as Llama-style templates write it
TEMPLATE = ("{{ bos_token }}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<assistant>{% endif %}")


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory) -> Path:
    """The embedded tiny model with a chat template added to its tokenizer (its tokenizer adds BOS)."""
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("chat_model")
    src = resolve_model_path("countdown-tiny")
    tok = AutoTokenizer.from_pretrained(src)
    tok.chat_template = TEMPLATE
    tok.save_pretrained(out)
    AutoModelForCausalLM.from_pretrained(src).save_pretrained(out)
    return out


def _task(**kw) -> CountdownTask:
    return CountdownTask(n_numbers=2, max_number=9, min_target=2, max_target=40, num_val=8, num_test=8, **kw)


def test_prompt_encodes_to_the_templates_tokens(chat_model: Path) -> None:
    tok = AutoTokenizer.from_pretrained(chat_model)
    assert tok("")["input_ids"][:1] == [tok.bos_token_id]  # this tokenizer adds BOS itself
    task = ChatTask(_task(), str(chat_model), system="be brief", assistant_prefix="<answer>")
    record = task.problems("val")[0]
    text = task.prompt(record)
    assert text.endswith("<assistant><answer>") and "<system>be brief\n<user>" in text
    templ = tok.apply_chat_template(task.messages(record), add_generation_prompt=True, tokenize=True)
    templ = list(templ["input_ids"] if hasattr(templ, "keys") else templ)
    ids = tok(text)["input_ids"]  # what every sampler does with a prompt
    assert ids == templ + tok("<answer>", add_special_tokens=False)["input_ids"]
    assert ids.count(tok.bos_token_id) == 1  # the template's BOS is not doubled
    assert task.messages(record)[-1] == {"role": "user", "content": _task().prompt(record)}
    assert ChatTask(_task(), str(chat_model)).messages(record)[0]["role"] == "user"  # system None: template's own


def test_verifier_sees_the_prefilled_message(chat_model: Path) -> None:
    task = ChatTask(_task(), str(chat_model), assistant_prefix="<answer>")
    record = {"id": "p", "numbers": [3, 7], "target": 21}
    verdicts = task.verifier.verify_batch([record] * 4, ["3 * 7</answer>", "3 + 7</answer>", "<answer>3*7</answer>", "3*7"])
    assert [v.reason for v in verdicts] == ["ok", "wrong", "ok", "parse"]  # the last: an unclosed <answer>3*7
    plain = ChatTask(_task(), str(chat_model))  # no prefix: the inner verifier as it is
    assert plain.verifier is plain.task.verifier
    assert task.problems("val") == _task().problems("val")
    assert task.sample_train(__import__("numpy").random.default_rng(0)) == _task().sample_train(
        __import__("numpy").random.default_rng(0))


def test_bad_tokenizers_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"data\.task\.init_args\.tokenizer: .*no chat template"):
        ChatTask(_task(), "countdown-tiny")
    with pytest.raises(UserError, match=r"data\.task\.init_args\.tokenizer: cannot load"):
        ChatTask(_task(), str(tmp_path / "missing"))


def test_fit_on_a_chat_task_from_the_cli(chat_model: Path, in_tmp: Path) -> None:
    """Two steps of α-DPG over the chat-template task, the budget of configs/smollm2 (tokenizer from
    ``${model.model}``), on the tiny model: the run finishes and logs rewards for its prompts."""
    cmd = [sys.executable, "-m", "lit_alpha", "fit", "--config", str(REPO / "configs/smollm2/a05.yaml"),
           "--model.model", str(chat_model), "--trainer.max_steps", "2", "--validate_at_start", "false",
           "--trainer.precision", "32-true", "--data.prompts_per_step", "2", "--data.n_samples", "4",
           "--data.task.init_args.task.init_args.num_val", "4", "--data.val_samples", "2",
           "--trainer.enable_progress_bar", "false"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=in_tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = store_client()
    (exp,) = [e for e in client.search_experiments() if e.name == "smollm2"]
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "a05"
    history = client.get_metric_history(run.info.run_id, "train/reward_mean")
    assert [m.step for m in history] == [0, 1] and all(0.0 <= m.value <= 1.0 for m in history)
    params = run.data.params
    assert params.get("data.task.init_args.tokenizer") == str(chat_model)  # the interpolation resolved
