"""bf16 as the fast path: which precision a run gets, and the pieces that make ``bf16-mixed`` fast.

``--trainer.precision bf16-mixed`` is Lightning's autocast: parameters, gradients and the AdamW
state stay float32 (the master weights), the matmuls and attention run in bfloat16, and everything
numerically sensitive is float32 by construction: the output logits are upcast before the
log-softmax (:mod:`lit_alpha.scoring.logprobs`, :mod:`lit_alpha.sampling.hf`), sequence log-prob sums,
the α-DPG ratios and every objective are elementwise float32 maths (autocast only lowers matmul-like
ops), and the entropy's dot product runs with autocast off.

What this module adds to Lightning's plugin:

* :func:`rollout_context`: sampling and π_base scoring (all no-grad) run under an autocast whose
  weight-cast cache is *on* (Lightning's is off): the policy's float32 weights are cast to bf16 once
  per rollout instead of once per decoded token.
* :func:`cast_frozen_linears`: the frozen base's linear weights are stored in bf16 (what autocast
  would cast them to on every call; the same bits, so π_base still equals π_θ at step 0 exactly),
  under Lightning's plain ``MixedPrecision`` only (:func:`frozen_base_dtype`; FSDP's own mixed precision
  casts its flat parameters, each of which must hold one dtype).
* :func:`clip_gradients`: gradient clipping under bf16-mixed without Lightning's AMP check, so the
  fused AdamW (the same update, one kernel per tensor) stays on: the module clips, then hands the
  optimizer already-clipped float32 gradients. There is no loss scaler in bf16, so nothing to unscale.
* :func:`auto_precision`: the precision a run gets when ``trainer.precision`` is not given:
  ``bf16-mixed`` for a pretrained model on hardware with bf16 matmuls (CPUs with AVX512-BF16 or AMX,
  CUDA GPUs that support bf16), float32 for the embedded ``countdown-tiny`` (bf16 is not faster at that
  size, docs/performance.md).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.utilities import GradClipAlgorithmType

AUTO_BF16 = "bf16-mixed"


def bf16_supported(device_type: str = "cpu") -> bool:
    """Does this machine run bf16 matmuls natively (CPU: AVX512-BF16 or AMX tiles; CUDA: ``is_bf16_supported``)?"""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return torch.backends.mkldnn.is_available() and any(bool(check()) for check in checks if callable(check))


def auto_precision(model: str, accelerator: str = "auto", dtype: str = "float32") -> tuple[str | None, str]:
    """``(precision, why)`` for a run whose ``trainer.precision`` was not given: ``bf16-mixed`` for a
    pretrained float32 model where bf16 is native, else None (Lightning's ``32-true``)."""
    from lit_alpha.models import EMBEDDED

    if model in EMBEDDED:
        return None, f"float32: {model} is the embedded tiny model, where bf16 is not faster"
    if dtype != "float32":
        return None, f"model.dtype {dtype}: the weights are already {dtype}, no autocast added"
    accel = str(accelerator or "auto").lower()
    device = "cuda" if accel in ("gpu", "cuda") or (accel == "auto" and torch.cuda.is_available()) else "cpu"
    if accel not in ("auto", "cpu", "gpu", "cuda"):
        return None, f"float32: trainer.accelerator {accelerator} (bf16 is picked automatically on cpu/cuda only)"
    if not bf16_supported(device):
        return None, f"float32: this {device.upper()} has no native bf16 matmuls"
    return AUTO_BF16, (f"bf16-mixed: a pretrained model on a {device.upper()} with native bf16 matmuls "
                       "(float32 master weights and optimizer state)")


def autocast_dtype(plugin: Any) -> torch.dtype | None:
    """The autocast dtype of a Lightning precision plugin (bf16 / fp16 mixed), else None."""
    precision = str(getattr(plugin, "precision", ""))
    if precision == "bf16-mixed":
        return torch.bfloat16
    if precision == "16-mixed":
        return torch.float16
    return None


def frozen_base_dtype(plugin: Any) -> torch.dtype | None:
    """The dtype to store the frozen base's linear weights in (:func:`cast_frozen_linears`): the autocast
    dtype under Lightning's plain ``MixedPrecision`` (bf16/fp16-mixed, single process or DDP), else None.

    Not under FSDP's plugins: FSDP flattens each unit's parameters into one flat parameter of a single
    dtype (bf16 linears next to float32 norms would be refused) and casts them for compute itself
    (``MixedPrecision(param_dtype=...)``); nor under 32-true or other plugins, where nothing autocasts."""
    return autocast_dtype(plugin) if type(plugin) is MixedPrecision else None


def rollout_context(trainer: Any, device: torch.device) -> contextlib.AbstractContextManager:
    """The precision context for sampling and π_base scoring (no-grad forwards).

    Under Lightning's ``MixedPrecision`` (plain bf16/fp16-mixed): the same autocast as the training
    step but with the weight-cast cache on. The cache is safe here and only here: every forward in
    the block is no-grad (a cast cached under no-grad and then used with grad would carry no gradient,
    which is why Lightning's training-step autocast keeps it off), and it is emptied when the block ends,
    so the next rollout sees the updated weights. Other plugins (32-true, FSDP's) keep their own context.
    """
    plugin = trainer.precision_plugin
    dtype = autocast_dtype(plugin)
    if type(plugin) is MixedPrecision and dtype is not None:
        return torch.autocast(device.type, dtype=dtype, cache_enabled=True)
    return plugin.forward_context()


def fused_ok(plugin: Any) -> bool:
    """May the fused AdamW run under this precision plugin (clipping included)?

    Full precision (``*-true``): yes. Lightning's plain ``MixedPrecision`` in bf16 (no loss scaler):
    yes, with :func:`clip_gradients` doing the clipping. fp16 (a scaler) and other plugins: no."""
    precision = str(getattr(plugin, "precision", "32-true"))
    if precision.endswith("-true"):
        return True
    return type(plugin) is MixedPrecision and precision == "bf16-mixed" and plugin.scaler is None


def clip_gradients(plugin: Any, optimizer: torch.optim.Optimizer, clip_val: float | None,
                   algorithm: str | None) -> bool:
    """Clip like Lightning's base ``Precision.clip_gradients`` (``clip_grad_norm_`` / ``clip_grad_value_``
    over the optimizer's parameters) when ``plugin`` is bf16 ``MixedPrecision``, whose own method
    refuses fused optimizers although bf16 has nothing to unscale. Returns False (nothing done) for
    any other plugin: the caller then uses Lightning's path."""
    if not (type(plugin) is MixedPrecision and plugin.scaler is None):
        return False
    if clip_val is None or float(clip_val) <= 0:
        return True
    Precision.clip_gradients(plugin, optimizer, float(clip_val), GradClipAlgorithmType(algorithm or "norm"))
    return True


def cast_frozen_linears(model: torch.nn.Module, dtype: torch.dtype = torch.bfloat16) -> int:
    """Store the weights (and biases) of ``model``'s ``nn.Linear`` layers in ``dtype``, except a layer
    whose weight is shared with the input embedding (a tied output head, read by the embedding lookup,
    which autocast does not cast). Under autocast to ``dtype`` the result is bit-for-bit what the
    float32 layers give (autocast casts inputs and weights to ``dtype`` anyway), without the per-call
    cast. For frozen models only (no gradients, no optimizer). Returns the number of layers cast."""
    embedding = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    shared = {id(embedding.weight)} if embedding is not None and hasattr(embedding, "weight") else set()
    count = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and id(module.weight) not in shared:
            if module.weight.requires_grad:
                raise ValueError("cast_frozen_linears: the model has trainable linear weights")
            module.weight.data = module.weight.data.to(dtype)
            if module.bias is not None:
                module.bias.data = module.bias.data.to(dtype)
            count += 1
    return count


@contextlib.contextmanager
def no_autocast(device_type: str) -> Iterator[None]:
    """Autocast off inside the block (float32 maths inside a bf16-mixed region)."""
    with torch.autocast(device_type, enabled=False):
        yield
