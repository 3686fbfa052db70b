"""Loading policies: a local directory, a hub id the user gives, or an embedded model by name.

Nothing is downloaded silently: a hub id is passed to ``from_pretrained`` only when the user names
one, and ``HF_HUB_OFFLINE=1`` is respected as usual.

LoRA (:class:`LoraSpec`, :func:`apply_lora`): the policy gets low-rank adapters through peft and only
they train; π_base is then the very same model with its adapters switched off
(:class:`AdapterDisabled`), so no second copy of the weights is ever held.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

ASSETS = Path(__file__).resolve().parents[1] / "assets"
EMBEDDED = {"countdown-tiny": ASSETS / "countdown-tiny", "countdown5-tiny": ASSETS / "countdown5-tiny",
            "strategy-tiny": ASSETS / "strategy-tiny",
            "steps-tiny": ASSETS / "steps-tiny", "steps-tiny-noslip": ASSETS / "steps-tiny-noslip"}


def resolve_model_path(name_or_path: str) -> str:
    """Map an embedded model name to its directory; check that a local-looking path exists."""
    if name_or_path in EMBEDDED:
        return str(EMBEDDED[name_or_path])
    path = Path(name_or_path).expanduser()
    looks_local = name_or_path.startswith((".", "/", "~")) or path.exists() or name_or_path.count("/") != 1
    if looks_local and not path.is_dir():
        raise FileNotFoundError(
            f"model.model: {name_or_path!r} is not a directory; give a local model directory, "
            f"a hub id (owner/name), or one of the embedded models {sorted(EMBEDDED)}"
        )
    return str(path) if path.is_dir() else name_or_path


def load_policy(name_or_path: str, dtype: str = "float32"):
    """Load ``(model, tokenizer)`` with ``from_pretrained``; the tokenizer gets a pad token."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    path = resolve_model_path(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
    return model, tokenizer


@dataclass
class LoraSpec:
    """LoRA adapters (peft) on the policy, the only weights that train.

    π_base is then the same model with the adapters switched off, so the weights are held once.

    Args:
        r: rank of each adapter (the update of a ``d_out × d_in`` weight is ``B·A``, ``B`` d_out × r).
        alpha: scaling numerator: the update is multiplied by ``alpha / r``.
        dropout: dropout on each adapter's input while training (0 keeps the trainer's forward equal
            to the sampler's, which runs in eval mode).
        target_modules: names (or name suffixes) of the modules to adapt, e.g. ``[q_proj, v_proj]``;
            ``all-linear``: every linear layer except the output head.
    """

    r: int = 16
    alpha: float = 32.0
    dropout: float = 0.0
    target_modules: list[str] | str = "all-linear"

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError(f"model.lora.r must be >= 1, got {self.r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.lora.dropout must be in [0, 1), got {self.dropout}")
        if not self.target_modules:
            raise ValueError("model.lora.target_modules must name at least one module (or be 'all-linear')")


def apply_lora(model: torch.nn.Module, spec: LoraSpec) -> torch.nn.Module:
    """Wrap ``model`` with peft LoRA adapters (a ``PeftModel``); only the adapters require grad.

    The adapters start as a no-op (``B = 0``), so the wrapped model computes what ``model`` did.
    """
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as err:  # an optional dependency: only LoRA runs need it
        raise ImportError("model.lora needs peft: pip install peft") from err
    targets = spec.target_modules if isinstance(spec.target_modules, str) else list(spec.target_modules)
    config = LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                        target_modules=targets, task_type="CAUSAL_LM")
    return get_peft_model(model, config)


@contextlib.contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """Every submodule of ``model`` in eval mode inside the block; each one's own mode restored after,
    also when the block raises. A model view that is not an ``nn.Module`` (:class:`AdapterDisabled`)
    has its own ``eval()``/``train(mode)`` called instead."""
    if not isinstance(model, torch.nn.Module):
        was = bool(getattr(model, "training", False))
        model.eval()
        try:
            yield
        finally:
            model.train(was)
        return
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


class AdapterDisabled:
    """π_base of a LoRA policy: a view of ``policy`` (a peft ``PeftModel``) that runs it with its
    adapters switched off and in eval mode.

    Deliberately not an ``nn.Module``: assigned to a module attribute it registers nothing, so the
    policy's weights appear once in ``state_dict()``, ``parameters()`` and the optimizer. It offers
    what the sampler and :func:`lit_alpha.scoring.logprobs.token_logprobs` use of a model: calling it,
    ``parameters()``, ``training``, ``train()``/``eval()`` (no-ops: the view is always in eval mode)
    and :meth:`unwrapped`.

    ``AdapterDisabled(policy)`` views that model; ``AdapterDisabled(owner=module)`` views whatever
    ``module.policy`` (``attribute``) is at each call, so a strategy that later replaces the policy by a
    wrapper (FSDP's ``DecoderFSDP``) is followed instead of bypassed.
    """

    def __init__(self, policy: torch.nn.Module | None = None, *, owner: torch.nn.Module | None = None,
                 attribute: str = "policy") -> None:
        if (policy is None) == (owner is None):
            raise TypeError("AdapterDisabled takes a policy or an owner, not both or neither")
        self._policy, self._owner, self._attribute = policy, owner, attribute
        if not hasattr(self.policy, "disable_adapter"):
            raise TypeError(f"AdapterDisabled needs a peft PeftModel, got {type(self.policy).__name__}")

    @property
    def policy(self) -> torch.nn.Module:
        """The adapted policy this view runs (the owner's current one when following an owner)."""
        return self._policy if self._owner is None else getattr(self._owner, self._attribute)

    @contextlib.contextmanager
    def unwrapped(self) -> Iterator[torch.nn.Module]:
        """Inside the block the policy itself computes π_base: adapters off, every submodule in eval
        mode (no dropout); adapters and each submodule's mode are restored after it."""
        with eval_mode(self.policy), self.policy.disable_adapter():
            yield self.policy

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self.unwrapped() as model:
            return model(*args, **kwargs)

    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]:
        """The policy's parameters (for device look-ups; they are shared, not a copy)."""
        return self.policy.parameters(recurse)

    @property
    def training(self) -> bool:
        return False

    def train(self, mode: bool = True) -> "AdapterDisabled":
        return self

    def eval(self) -> "AdapterDisabled":
        return self
