"""The trainer's Lightning plumbing: crash-safe checkpoints and resume (:mod:`~lit_alpha.training.checkpoint`),
the MLflow logger and run store (:mod:`~lit_alpha.training.tracking`), the pass@k plot of every validation
(:mod:`~lit_alpha.training.plots`), precision choice and contexts (:mod:`~lit_alpha.training.precision`),
DecoderFSDP and lock-stepped sampling (:mod:`~lit_alpha.training.strategy`), memory figures
(:mod:`~lit_alpha.training.memory`)."""
