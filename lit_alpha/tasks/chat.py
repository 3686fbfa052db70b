"""Any task, asked the way a chat model is asked: its prompt as the user's message in the model's
own chat template, optionally with the start of the assistant's reply already written.

A chat model (SmolLM2-Instruct, Qwen-Instruct, ...) answers best inside the template it was tuned
on. :class:`ChatTask` wraps a task: each prompt becomes
``tokenizer.apply_chat_template([system?, user: inner prompt], add_generation_prompt=True)`` as
text, followed by ``assistant_prefix`` (e.g. ``"<answer>"``: the model then starts with its answer
instead of a preamble). The rendered text holds the template's special tokens as text; the
tokenizer maps them back to the same ids (:meth:`ChatTask.prompt` is checked against
``apply_chat_template(tokenize=True)`` in the tests), so every sampler (HF, vLLM) and the target
scorer see exactly the template's tokens.

The verifier sees the whole assistant message, ``assistant_prefix + completion``: a prefilled
``<answer>`` and the model's ``17 + 25</answer>`` are checked as ``<answer>17 + 25</answer>``.
The tokenizer is read from a local directory (``${model.model}`` in YAML); nothing is downloaded.
"""

from __future__ import annotations

import numpy as np

from lit_alpha.errors import UserError
from lit_alpha.tasks.base import Record, Task
from lit_alpha.verifiers.prefixed import PrefixedVerifier

FIELD = "data.task.init_args"


class ChatTask(Task):
    """A task whose prompts go through the model's chat template.

    Args:
        task: the task asked (its problems, splits, verifier and prompt text are kept).
        tokenizer: a local model directory with the chat template, usually ``${model.model}``.
        system: the system message; ``None`` keeps the template's default (if it has one).
        assistant_prefix: text the assistant's reply starts with, written into the prompt (prefill);
            the verifier sees it in front of every completion.
    """

    def __init__(self, task: Task, tokenizer: str, system: str | None = None, assistant_prefix: str = "") -> None:
        from transformers import AutoTokenizer

        from lit_alpha.models import resolve_model_path

        if not isinstance(task, Task):
            raise UserError(f"{FIELD}.task: expected a Task, got {type(task).__name__}")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(tokenizer))
        except (OSError, ValueError) as err:
            raise UserError(f"{FIELD}.tokenizer: cannot load a tokenizer from {tokenizer!r}: {err}"[:400]) from None
        if not getattr(self.tokenizer, "chat_template", None):
            raise UserError(f"{FIELD}.tokenizer: {tokenizer!r} has no chat template")
        self.task, self.system, self.assistant_prefix = task, system, assistant_prefix
        self.verifier = PrefixedVerifier(task.verifier, assistant_prefix) if assistant_prefix else task.verifier
        self.verify_timeout_s = float(getattr(task, "verify_timeout_s", 0.0))
        bos = self.tokenizer.bos_token
        adds_bos = bos is not None and self.tokenizer("")["input_ids"][:1] == [self.tokenizer.bos_token_id]
        self._bos = bos if adds_bos else None  # a BOS the template writes and the tokenizer would repeat

    def messages(self, record: Record) -> list[dict[str, str]]:
        """The conversation of one problem: an optional system message, then the user's prompt."""
        head = [] if self.system is None else [{"role": "system", "content": self.system}]
        return [*head, {"role": "user", "content": self.task.prompt(record)}]

    def prompt(self, record: Record) -> str:
        text = self.tokenizer.apply_chat_template(self.messages(record), add_generation_prompt=True, tokenize=False)
        if self._bos and text.startswith(self._bos):  # the tokenizer adds it again when encoding
            text = text[len(self._bos):]
        return text + self.assistant_prefix

    def problems(self, split: str) -> list[Record]:
        return self.task.problems(split)

    def sample_train(self, rng: np.random.Generator) -> Record:
        return self.task.sample_train(rng)
