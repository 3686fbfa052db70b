"""Sharded training of any Hugging Face causal LM: :class:`DecoderFSDP`, a Lightning ``FSDPStrategy``.

``--trainer.strategy lit_alpha.training.strategy.DecoderFSDP`` shards the policy *and* the frozen base with
PyTorch FSDP (``FullyShardedDataParallel``), one FSDP unit per decoder layer, the layer classes found
at setup from the model's ``_no_split_modules`` (what ``transformers`` itself never splits across
devices), so no per-architecture configuration is needed.

Why not Lightning's plain FSDPStrategy with a wrap policy: it wraps the whole LightningModule in one
root FSDP unit. Then (1) the policy's and the base's embeddings and heads share that root's flat
parameter, half of it frozen, and (2) the rollout, which calls ``module.policy`` and ``module.base``
before the training step (``on_after_batch_transfer``), would run them outside the root's forward,
where the root's parameters are still sharded. Here every child module of the LightningModule that
holds decoder layers (``policy`` and ``base``) becomes its *own* FSDP root, so

* calling it anywhere (sampling, base scoring, the training forward) gathers what it needs;
* the frozen base is sharded like the policy, never a full extra copy per device, and its flat
  parameters are uniformly ``requires_grad=False`` (no gradient memory for it; ``use_orig_params=True``
  keeps the original parameter names for the optimizer);
* gradient clipping by norm (which Lightning's FSDP precision plugin refuses) uses FSDP's own
  ``clip_grad_norm_`` over the trainable roots.

Sampling through an FSDP module gathers each layer at every decoding step, so every rank must run the
same number of forwards even when its completions stop early: :func:`lockstep` keeps the ranks in step
(the idea of ``transformers``' ``synced_gpus``) without touching the sampler.

FSDP also runs on CPU with the gloo backend (``--trainer.accelerator cpu``), which is how it is tested here.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Iterator, Literal

import torch
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.plugins.precision.fsdp import FSDPPrecision
from lightning.pytorch.strategies import FSDPStrategy
from torch import nn


def decoder_layer_classes(model: nn.Module, names: list[str] | None = None) -> set[type[nn.Module]]:
    """The module classes to shard one by one: those named ``names``, else every name in the
    ``_no_split_modules`` of the Hugging Face models inside ``model``, that occur in ``model``.

    ``_no_split_modules`` is the list ``transformers`` keeps per architecture of the blocks that must
    stay whole on one device (``LlamaDecoderLayer``, ``Qwen2DecoderLayer``, ...): exactly the units to
    gather one at a time. Raises ValueError when nothing matches.
    """
    wanted = set(names or [])
    if not wanted:
        for module in model.modules():
            wanted.update(getattr(module, "_no_split_modules", None) or [])
    found = {type(m) for m in model.modules() if type(m).__name__ in wanted}
    if not found:
        where = "layer_classes" if names else "_no_split_modules of the model"
        raise ValueError(f"trainer.strategy: no module of the model is one of {sorted(wanted)} (from {where}); "
                         f"set trainer.strategy.init_args.layer_classes to the decoder layer class name(s)")
    return found


def shard_models(module: nn.Module, layer_classes: set[type[nn.Module]], **fsdp_kwargs: Any) -> list[str]:
    """Replace every child of ``module`` that contains a ``layer_classes`` instance (the policy, the
    frozen base) by its own root ``FullyShardedDataParallel``, one nested unit per layer.

    Returns the names of the sharded children (already sharded ones included). Raises ValueError if a trainable parameter would be
    left outside FSDP (it would be neither sharded nor gradient-synchronised).
    """
    from torch.distributed.fsdp import FullyShardedDataParallel
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    wrapped = []
    for name, child in list(module.named_children()):
        if isinstance(child, FullyShardedDataParallel):  # already sharded (a fit after a validate)
            wrapped.append(name)
        elif any(isinstance(m, tuple(layer_classes)) for m in child.modules()):
            setattr(module, name, FullyShardedDataParallel(child, auto_wrap_policy=ModuleWrapPolicy(layer_classes),
                                                           **fsdp_kwargs))
            wrapped.append(name)
    inside = tuple(f"{name}." for name in wrapped)
    loose = [n for n, p in module.named_parameters() if p.requires_grad and not n.startswith(inside)]
    if loose:
        raise ValueError(f"trainer.strategy: trainable parameters outside any module holding decoder layers "
                         f"would not be sharded or synchronised: {loose[:5]}")
    return wrapped


def fsdp_roots(module: nn.Module) -> list[nn.Module]:
    """The outermost ``FullyShardedDataParallel`` instances inside ``module`` (itself included)."""
    from torch.distributed.fsdp import FullyShardedDataParallel

    roots: list[nn.Module] = []

    def visit(m: nn.Module) -> None:
        if isinstance(m, FullyShardedDataParallel):
            roots.append(m)
            return
        for child in m.children():
            visit(child)

    visit(module)
    return roots


class LockstepForward(nn.Module):
    """A sampler-facing view of an FSDP model whose forwards all ranks run the same number of times.

    Each forward first joins a one-number all-reduce ("is anyone still decoding?"); after sampling,
    :meth:`finish` runs one-token dummy forwards for as long as any other rank still decodes, so the
    FSDP all-gathers of every rank pair up. Shapes: whatever the wrapped model takes and returns.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def _any_active(self, active: bool) -> bool:
        import torch.distributed as dist

        flag = torch.tensor([int(active)], device=next(self.model.parameters()).device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        self._any_active(True)
        return self.model(*args, **kwargs)

    def finish(self) -> None:
        """Keep joining the other ranks' forwards (with a ``[1, 1]`` dummy input) until all are done."""
        dummy = torch.zeros((1, 1), dtype=torch.long, device=next(self.model.parameters()).device)
        with torch.no_grad():
            while self._any_active(False):
                self.model(input_ids=dummy, use_cache=False)


@contextmanager
def lockstep(model: nn.Module, world_size: int) -> Iterator[nn.Module]:
    """Yield ``model`` itself, or (an FSDP model with several ranks) a :class:`LockstepForward` view
    whose exit waits, forwarding dummies, until every rank has finished its forwards.

    Every rank must enter it the same number of times (a rank with nothing to sample enters and leaves).
    """
    from_fsdp = world_size > 1 and type(model).__name__ == "FullyShardedDataParallel"
    if not from_fsdp:
        yield model
        return
    view = LockstepForward(model)
    yield view
    view.finish()


class ShardedClipPrecision(FSDPPrecision):
    """Lightning's FSDP precision plugin with gradient clipping by norm over the FSDP roots.

    The global norm is ``sqrt(Σ_roots norm_r²)`` with each root's norm from FSDP's ``clip_grad_norm_``
    (which all-reduces the shards' partial norms); all gradients are then scaled by
    ``min(1, max_norm / (norm + 1e-6))``, as ``torch.nn.utils.clip_grad_norm_`` does.
    """

    def __init__(self, precision: Any) -> None:
        super().__init__(precision)
        self.roots: list[nn.Module] = []  # set by DecoderFSDP once the model is sharded
        self.device_type = "cuda"  # set by DecoderFSDP: "cpu" when it runs on CPU

    def forward_context(self) -> Any:
        """Autocast on the device the model runs on (Lightning's FSDP plugin always names CUDA, which
        on CPU is a no-op with a warning): 16-bit compute outside the FSDP units too."""
        if "mixed" in str(self.precision):
            dtype = torch.bfloat16 if self.precision == "bf16-mixed" else torch.float16
            return torch.autocast(self.device_type, dtype=dtype)
        return super().forward_context()

    def clip_grad_by_norm(self, optimizer: Any, clip_val: int | float) -> None:  # type: ignore[override]
        trainable = [r for r in self.roots if any(p.requires_grad for p in r.parameters())]
        if not trainable:
            return
        norms = [r.clip_grad_norm_(math.inf).float() for r in trainable]  # max_norm=inf: measure only
        total = torch.stack(norms).norm()
        coef = (float(clip_val) / (total + 1e-6)).clamp(max=1.0)
        for root in trainable:
            for p in root.parameters():
                if p.grad is not None:
                    p.grad.mul_(coef.to(p.grad.device, p.grad.dtype))


class DecoderFSDP(FSDPStrategy):
    """FSDP over the policy and the frozen base, one unit per decoder layer (any HF causal LM).

    Args:
        activation_checkpointing: recompute each decoder layer's activations in the backward instead of
            storing them (less memory, about one more forward of compute).
        layer_classes: names of the classes to shard one by one; None: the model's ``_no_split_modules``.
        sharding_strategy: ``FULL_SHARD`` (parameters, gradients and optimizer state sharded),
            ``SHARD_GRAD_OP`` (parameters kept whole between forward and backward) or ``NO_SHARD``
            (replicated, DDP-like).
        cpu_offload: keep the sharded parameters (and their gradients) in CPU memory.
        state_dict_type: ``full`` (one checkpoint file gathered on rank 0) or ``sharded`` (a directory,
            one file per rank).
        process_group_backend: None: ``nccl`` on GPUs, ``gloo`` on CPU.
        timeout_s: collective timeout in seconds.
    """

    def __init__(
        self,
        activation_checkpointing: bool = False,
        layer_classes: list[str] | None = None,
        sharding_strategy: Literal["FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD"] = "FULL_SHARD",
        cpu_offload: bool = False,
        state_dict_type: Literal["full", "sharded"] = "full",
        process_group_backend: str | None = None,
        timeout_s: float = 1800.0,
    ) -> None:
        super().__init__(
            sharding_strategy=sharding_strategy,
            cpu_offload=cpu_offload,
            state_dict_type=state_dict_type,
            process_group_backend=process_group_backend,
            timeout=timedelta(seconds=timeout_s),
        )
        self.activation_checkpointing = activation_checkpointing
        self.layer_classes = list(layer_classes) if layer_classes else None
        self.sharded_children: list[str] = []

    @property
    def precision_plugin(self) -> FSDPPrecision:  # type: ignore[override]
        return self._precision_plugin if self._precision_plugin is not None else ShardedClipPrecision("32-true")

    @precision_plugin.setter
    def precision_plugin(self, plugin: Precision | None) -> None:
        if plugin is not None and not isinstance(plugin, FSDPPrecision):
            raise TypeError(f"DecoderFSDP needs an FSDPPrecision plugin, got {type(plugin).__name__}")
        if plugin is not None and not isinstance(plugin, ShardedClipPrecision):
            plugin = ShardedClipPrecision(plugin.precision)  # a fresh ShardedGradScaler for 16-mixed
        self._precision_plugin = plugin

    @property
    def mixed_precision_config(self) -> Any:
        """Lightning's config for the precision flag, but for ``*-mixed`` gradients are reduced and
        buffers (e.g. rotary frequencies) kept in float32; only the compute runs in 16 bits."""
        config = super().mixed_precision_config
        if config is not None and "mixed" in str(self.precision_plugin.precision):
            from torch.distributed.fsdp import MixedPrecision

            config = MixedPrecision(param_dtype=config.param_dtype, reduce_dtype=torch.float32,
                                    buffer_dtype=torch.float32)
        return config

    def _setup_model(self, model: nn.Module) -> nn.Module:
        """Shard each decoder-holding child of the LightningModule as its own FSDP root, then let
        Lightning finish (it sees FSDP modules, so it does not wrap the LightningModule itself)."""
        from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointWrapper
        from torch.distributed.fsdp.wrap import ModuleWrapPolicy

        if self.root_device.type == "cpu" and self.precision_plugin.precision == "16-mixed":
            raise ValueError("trainer.precision: 16-mixed needs CUDA (FSDP's gradient scaler does not run on CPU); "
                             "use bf16-mixed on CPU")
        self.precision_plugin.device_type = self.root_device.type
        base = getattr(model, "base", None)
        if base is not None and not isinstance(base, nn.Module):
            raise ValueError(f"trainer.strategy: DecoderFSDP shards the module's children, but its base is a "
                             f"{type(base).__name__} view of the policy (LoRA) that would bypass the policy's FSDP "
                             f"wrapper; LoRA with DecoderFSDP is not supported yet (use trainer.strategy ddp)")
        classes = decoder_layer_classes(model, self.layer_classes)
        self.kwargs.pop("auto_wrap_policy", None)
        self.sharded_children = shard_models(
            model, classes,
            cpu_offload=self.cpu_offload,
            mixed_precision=self.mixed_precision_config,
            sharding_strategy=self.sharding_strategy,
            device_id=self.root_device,  # a torch.device: Lightning's `.index` is None on CPU, which FSDP refuses
            **self.kwargs,
        )
        done = any(isinstance(m, CheckpointWrapper) for m in model.modules())  # a fit after validate
        wanted = self.activation_checkpointing and not done
        self._activation_checkpointing_kwargs = {"auto_wrap_policy": ModuleWrapPolicy(classes)} if wanted else {}
        model = super()._setup_model(model)
        self.precision_plugin.roots = fsdp_roots(model)
        return model


    # -- full checkpoints on CPU ------------------------------------------------------------------
    def _full_state_dict_context(self) -> Any:
        """Lightning's full-state-dict settings, but without ``offload_to_cpu`` when running on CPU: FSDP
        then "moves" each gathered tensor to where it already is and frees it, and the clone that follows
        crashes the process (a segfault in torch 2.13)."""
        from torch.distributed.fsdp import FullStateDictConfig, StateDictType
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        from torch.distributed.fsdp.api import FullOptimStateDictConfig

        offload = self.root_device.type != "cpu"
        return FSDP.state_dict_type(self.model, StateDictType.FULL_STATE_DICT,
                                    FullStateDictConfig(offload_to_cpu=offload, rank0_only=True),
                                    FullOptimStateDictConfig(offload_to_cpu=offload, rank0_only=True))

    def lightning_module_state_dict(self) -> dict[str, Any]:
        if self._state_dict_type != "full" or self.root_device.type != "cpu":
            return super().lightning_module_state_dict()
        with self._full_state_dict_context():
            return self.model.state_dict()

    def optimizer_state(self, optimizer: Any) -> dict[str, Any]:
        if self._state_dict_type != "full" or self.root_device.type != "cpu":
            return super().optimizer_state(optimizer)
        from lightning.pytorch.core.optimizer import LightningOptimizer
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        from torch.distributed.fsdp import OptimStateKeyType

        optimizer = optimizer._optimizer if isinstance(optimizer, LightningOptimizer) else optimizer
        with self._full_state_dict_context():
            state = FSDP.optim_state_dict(self.model, optimizer)
            if self.global_rank == 0:  # the standard format, as Lightning's FSDPStrategy stores it
                state = FSDP.rekey_optim_state_dict(state, OptimStateKeyType.PARAM_ID, self.model)
            return state


def _register() -> None:
    """``--trainer.strategy decoder_fsdp`` (or the class path as a plain string) picks DecoderFSDP
    with its defaults; ``--trainer.strategy.class_path lit_alpha.training.strategy.DecoderFSDP`` also sets its
    ``init_args``. (Lightning lower-cases strategy names before looking them up.)"""
    from lightning.pytorch.strategies import StrategyRegistry

    for name in ("decoder_fsdp", "lit_alpha.training.strategy.decoderfsdp"):
        StrategyRegistry.register(name, DecoderFSDP, description=DecoderFSDP.__doc__.splitlines()[0], override=True)


_register()
