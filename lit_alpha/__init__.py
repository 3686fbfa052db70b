"""lit_alpha: fit the verifier-filtered base model with α-divergences (α-DPG) in Lightning."""

__version__ = "0.1.0"
