"""The trained policy in Hugging Face format: ``save_pretrained`` (safetensors) + tokenizer.

* At the end of every ``fit`` (:class:`SaveModel`, added by the CLI; ``--save_model false`` turns it
  off) the final policy goes to ``model/`` beside the run's checkpoints
  (``mlruns/<experiment id>/<run id>/model``) and is logged to the MLflow run as the artifact
  directory ``model/``, so ``AutoModelForCausalLM.from_pretrained`` loads either copy.
* ``python -m lit_alpha export --config CONFIG --ckpt_path PATH|last --out DIR [--merge true|false]``
  (:mod:`lit_alpha.cli.export`) does the same for any checkpoint. With LoRA, ``--merge true`` (the default) writes a plain merged
  model, ``--merge false`` the peft adapter directory alone (``PeftModel.from_pretrained(base, DIR)``;
  its ``base_model_name_or_path`` is the run's ``model.model``).
* Sharded runs (FSDP) gather the full policy on rank 0 (a collective, run on every rank) and rank 0
  writes; under DDP every rank holds the full weights and rank 0 writes them.

Why a plain artifact directory and not MLflow's ``transformers`` flavour: the directory *is* a
``save_pretrained`` output, so the copy on disk and the one in MLflow load the same way with
``from_pretrained`` (vLLM, the hub, other tools take it as is); the flavour wraps it in a pipeline
layout with an MLmodel file that needs ``mlflow.transformers.load_model`` (and a pipeline task) to
load back, and would write the weights once more.
"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

MODEL_DIR = "model"  # beside the run's checkpoints, and the MLflow artifact path
_WRAPPER_PREFIXES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "module.")


def _is_peft(model: torch.nn.Module) -> bool:
    return hasattr(model, "merge_and_unload") and hasattr(model, "peft_config")


def save_policy(policy: torch.nn.Module, tokenizer: Any, out: str | os.PathLike) -> Path:
    """``policy.save_pretrained(out)`` in safetensors, plus the tokenizer; returns ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    policy.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def export_module(module: LightningModule, out: str | os.PathLike, merge: bool = True,
                  policy_state: dict[str, torch.Tensor] | None = None, model: str | None = None,
                  dtype: str = "float32") -> Path:
    """Write ``module``'s policy (an :class:`lit_alpha.module.AlphaModule`'s) to ``out``.

    Args:
        module: holds ``policy`` (a HF causal LM, or a peft ``PeftModel`` with LoRA) and ``tokenizer``.
        out: the directory (created).
        merge: LoRA only: write the merged plain model (True) or the adapter directory alone (False).
        policy_state: the full policy weights gathered from a sharded run (keys of ``policy``'s
            ``state_dict``); then a fresh CPU copy of ``model`` gets them, as the live policy is sharded.
        model: ``model.model`` of the run (needed with ``policy_state``, and names the base of an adapter
            directory).
        dtype: the parameter dtype of that fresh copy.
    """
    policy = module.policy
    if policy_state is not None:
        from lit_alpha.models import apply_lora, load_policy

        if model is None:
            raise ValueError("export_module: a gathered policy_state needs the run's model.model")
        policy, _ = load_policy(model, dtype)
        if getattr(module, "lora", None) is not None:
            policy = apply_lora(policy, module.lora)
        state = {_strip(k): v for k, v in policy_state.items()}
        missing, unexpected = policy.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if not k.endswith("lm_head.weight")]:  # tied heads are not stored
            raise ValueError(f"export: the gathered weights do not match {model!r} "
                             f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})")
    if _is_peft(policy):
        if merge:
            # a copy: the live module keeps its adapters (merge_and_unload works in place)
            policy = (policy if policy_state is not None else copy.deepcopy(policy)).merge_and_unload()
        elif model is not None:
            from lit_alpha.models import resolve_model_path

            for config in policy.peft_config.values():
                config.base_model_name_or_path = resolve_model_path(model)
    return save_policy(policy, module.tokenizer, out)


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if prefix in key:
                key = key.replace(prefix, "")
                changed = True
    return key


def gather_policy_state(trainer: Trainer) -> dict[str, torch.Tensor] | None:
    """The full policy weights of a sharded (FSDP) run on rank 0 (None elsewhere): a collective."""
    from torch.distributed.fsdp import FullStateDictConfig, StateDictType
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    strategy = trainer.strategy
    context = getattr(strategy, "_full_state_dict_context", None)  # DecoderFSDP: no CPU offload on CPU
    if context is not None:
        with context():
            state = strategy.model.state_dict()
    else:
        offload = strategy.root_device.type != "cpu"
        with FSDP.state_dict_type(strategy.model, StateDictType.FULL_STATE_DICT,
                                  FullStateDictConfig(offload_to_cpu=offload, rank0_only=True)):
            state = strategy.model.state_dict()
    if not trainer.is_global_zero:
        return None
    return {k.removeprefix("policy."): v for k, v in state.items() if k.startswith("policy.")}


def _is_sharded(trainer: Trainer) -> bool:
    from lightning.pytorch.strategies import FSDPStrategy

    return isinstance(trainer.strategy, FSDPStrategy) and trainer.world_size > 1


def run_model_dir(trainer: Trainer) -> Path:
    """``<run dir>/model``: beside the checkpoints' directory, else ``<root>/<experiment id>/<run id>``."""
    ckpt = getattr(trainer.checkpoint_callback, "dirpath", None)
    if ckpt:
        return Path(ckpt).parent / MODEL_DIR
    logger = trainer.logger
    parts = [trainer.default_root_dir]
    if logger is not None and getattr(logger, "run_id", None):
        parts += [str(logger.experiment_id), str(logger.run_id)]
    return Path(*parts) / MODEL_DIR


class SaveModel(Callback):
    """At the end of ``fit``: the final policy and tokenizer in HF format to the run's ``model/``
    directory, logged to the MLflow run as the artifact directory ``model`` (rank 0 writes; FSDP
    gathers first).

    Args:
        model: the run's ``model.model`` (a sharded run rebuilds the policy from it on rank 0).
        dtype: the run's ``model.dtype``.
        merge: LoRA: write the merged model (True) or the adapters alone (False).
    """

    def __init__(self, model: str | None = None, dtype: str = "float32", merge: bool = True) -> None:
        self.model, self.dtype, self.merge = model, dtype, merge
        self.path: Path | None = None

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        from lightning.pytorch.loggers import MLFlowLogger

        state = gather_policy_state(trainer) if _is_sharded(trainer) else None
        if trainer.is_global_zero:
            out = run_model_dir(trainer)
            export_module(pl_module, out, self.merge, policy_state=state, model=self.model, dtype=self.dtype)
            self.path = out
            for logger in trainer.loggers:
                if isinstance(logger, MLFlowLogger) and logger.run_id:
                    logger.experiment.log_artifacts(logger.run_id, str(out), MODEL_DIR)
            print(f"model: {out} (MLflow artifact {MODEL_DIR}/)", file=sys.stderr)
        trainer.strategy.barrier("lit_alpha.models.export")
