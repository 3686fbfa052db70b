"""Models in and out: loading policies (and LoRA, π_base as the policy with adapters off), the policy
back in Hugging Face format (:mod:`~lit_alpha.models.export`), GGUF → HF (:mod:`~lit_alpha.models.convert`)."""

from lit_alpha.models.loading import (
                                      ASSETS,
                                      EMBEDDED,
                                      AdapterDisabled,
                                      LoraSpec,
                                      apply_lora,
                                      eval_mode,
                                      load_policy,
                                      resolve_model_path,
)

__all__ = ["ASSETS", "EMBEDDED", "AdapterDisabled", "LoraSpec", "apply_lora", "eval_mode", "load_policy",
           "resolve_model_path"]
