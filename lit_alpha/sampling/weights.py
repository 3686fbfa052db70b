"""The policy's weights as a Hugging Face checkpoint names them, whatever wraps the policy.

What an inference engine loads (:mod:`lit_alpha.sampling.vllm` pushes them after each optimizer step):
full tensors even when the policy is FSDP-sharded (FSDP1 ``FullyShardedDataParallel`` or FSDP2
``fully_shard``: gathered with ``torch.distributed.checkpoint``'s full state dict, a collective), LoRA
adapters (peft) merged into their base weights, and the sampler-facing views of
:mod:`lit_alpha.training.strategy` and :mod:`lit_alpha.models` unwrapped.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch
from torch import Tensor


def local_tensor(p: Tensor) -> Tensor:
    """This rank's shard of a DTensor (FSDP2) parameter; any other tensor itself."""
    return getattr(p, "_local_tensor", p)


def unwrap(model: Any) -> Any:
    """The model behind a sampler-facing view (``lit_alpha.training.strategy.LockstepForward``, made per call)."""
    while type(model).__name__ == "LockstepForward":
        model = model.model
    return model


def is_sharded(model: torch.nn.Module) -> bool:
    """FSDP2 (DTensor parameters) or FSDP1 (a FullyShardedDataParallel submodule)."""
    from torch.distributed.fsdp import FullyShardedDataParallel

    return any(hasattr(p, "_local_tensor") for p in model.parameters()) or any(
        isinstance(m, FullyShardedDataParallel) for m in model.modules())


def _merge_lora(peft_model: torch.nn.Module, named: dict[str, Tensor], enabled: bool) -> Iterator[tuple[str, Tensor]]:
    """Translate a peft ``PeftModel``'s names back to the base checkpoint's, adding each LoRA delta
    ``scaling · B @ A`` (``B`` [out, r], ``A`` [r, in]) to its base weight unless ``enabled`` is False."""
    modules = dict(peft_model.named_modules())
    for name, w in named.items():
        if ".lora_" in name or ".original_module." in name:
            continue
        out = name.removeprefix("base_model.model.").replace(".modules_to_save.default.", ".")
        if ".base_layer." in name:
            owner = name.split(".base_layer.")[0]
            out = out.replace(".base_layer.", ".")
            layer = modules[owner]
            if enabled and name.endswith(".weight") and not getattr(layer, "merged", False):
                for adapter in layer.active_adapters:
                    if getattr(layer, "use_dora", {}).get(adapter) or getattr(layer, "fan_in_fan_out", False):
                        raise NotImplementedError(f"VLLMSampler: LoRA variant of {owner} (DoRA/Conv1D) is not supported")
                    a, b = named[f"{owner}.lora_A.{adapter}.weight"], named[f"{owner}.lora_B.{adapter}.weight"]
                    w = w + (b.float() @ a.float() * layer.scaling[adapter]).to(w.dtype)
        yield out, w


def policy_weights(model: Any) -> Iterator[tuple[str, Tensor]]:
    """``(checkpoint name, full tensor)`` for every parameter of ``model``: FSDP shards gathered (a
    collective: every rank must call it), LoRA adapters merged (``AdapterDisabled`` views: left out),
    tied weights under each name. Tensors stay on the model's device, not copied when unsharded."""
    enabled = not hasattr(model, "unwrapped")  # lit_alpha.models.AdapterDisabled: π_base, adapters off
    module = model.policy if not enabled else model
    if is_sharded(module):  # full (unsharded) tensors on every rank, one model at a time
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        named = get_model_state_dict(module, options=StateDictOptions(full_state_dict=True))
    else:
        named = {k: v.detach() for k, v in module.named_parameters(remove_duplicate=False)}  # tied: both names
    if hasattr(module, "peft_config"):
        yield from _merge_lora(module, named, enabled)
    else:
        yield from named.items()
