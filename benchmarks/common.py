"""What both sides of the TRL comparison share: the run settings, the prompts, the result format.

A *worker* (``lit_worker.py``, ``trl_worker.py``) trains for ``steps`` optimizer steps in its own
process and writes one JSON result: a list of per-step timings plus the process's peak RSS. Every
step's time is split the same way on both sides::

    step_s = sample_s + verify_s + ref_fwd_s + policy_fwd_s + update_s

``sample_s``: prompts → completion token ids and texts (tokenise, generate, decode); ``verify_s``: the
Countdown verifier on every completion; ``ref_fwd_s``: no-grad forwards after sampling (lit_alpha's
frozen-base log-probs; TRL's reference/old log-probs, none at β=0 with one iteration);
``policy_fwd_s``: the policy's forward with grad (log-probs for the loss); ``update_s``: everything
else in the step: loss, backward, gradient clipping, the optimizer step, the trainer's bookkeeping.
Every step also records the process's CPU time (``step_cpu_s``, ``time.process_time``): with one
thread per process it equals the wall time on an idle machine, and it still measures the work when
other jobs share the cores (then ``*_per_cpu_s`` are the figures to compare).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
from dataclasses import asdict, dataclass, field, fields
from typing import Any

PHASES = ("sample_s", "verify_s", "ref_fwd_s", "policy_fwd_s", "update_s")
PRECISIONS = ("fp32", "bf16")


@dataclass
class BenchConfig:
    """One GRPO run, identical on both sides.

    Args:
        model: a local model directory or an embedded model name (``countdown-tiny``).
        steps: optimizer steps.
        warmup_steps: the first steps, left out of the means (reported apart): model load, first-touch
            memory (slow on some VMs) and kernel set-up land there.
        prompts_per_step: prompts per optimizer step (B).
        group_size: completions per prompt (G); B·G sequences per step.
        max_new_tokens: completion budget (TRL's ``max_completion_length``) and the loss normaliser C.
        threads: torch intra-op threads (``torch.set_num_threads``; OMP/MKL env vars too).
        lr: AdamW learning rate, constant (no warm-up, no decay).
        clip_eps: PPO clip ε (both bounds).
        temperature: sampling temperature.
        top_p: nucleus mass (1.0 = off).
        seed: prompt stream seed (lit_alpha's ``data.seed``) and trainer seed.
        precision: ``fp32`` (float32 throughout) or ``bf16`` (bf16 autocast, float32 master weights:
            lit_alpha's ``trainer.precision bf16-mixed``, TRL's ``bf16=True``).
    """

    model: str = "countdown-tiny"
    steps: int = 10
    warmup_steps: int = 1
    prompts_per_step: int = 32
    group_size: int = 8
    max_new_tokens: int = 32
    threads: int = 1
    lr: float = 3e-4
    clip_eps: float = 0.2
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        for name in ("steps", "prompts_per_step", "group_size", "max_new_tokens", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.warmup_steps < self.steps:
            raise ValueError(f"warmup_steps must be in [0, steps), got {self.warmup_steps} with {self.steps} steps")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "BenchConfig":
        data = json.loads(text)
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass
class StepRecord:
    """Timings (seconds) and sizes of one optimizer step."""

    step_s: float
    sample_s: float = 0.0
    verify_s: float = 0.0
    ref_fwd_s: float = 0.0
    policy_fwd_s: float = 0.0
    update_s: float = 0.0
    sequences: int = 0
    completion_tokens: float = 0.0
    step_cpu_s: float = 0.0  # CPU time of the process over the step (time.process_time): robust to a shared machine
    train_cpu_s: float = 0.0  # lit_alpha: CPU time of the training part (forward, backward, update) of the step
    logprob_mismatch: float = 0.0  # lit_alpha: mean |sampler − trainer| token log-prob (perf/logprob_mismatch)
    train_matmul_flop: float = 0.0  # lit_alpha: matmul FLOPs of the policy's forward + backward this step

    def close(self) -> "StepRecord":
        """Set ``update_s`` to what the other phases leave of ``step_s``."""
        self.update_s = max(0.0, self.step_s - self.sample_s - self.verify_s - self.ref_fwd_s - self.policy_fwd_s)
        return self


@dataclass
class WorkerResult:
    side: str
    config: dict[str, Any]
    steps: list[StepRecord] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)
    setup_s: float = 0.0  # process start to the first step (imports, model load, trainer set-up)

    def save(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(asdict(self), f)

    @classmethod
    def load(cls, path: str) -> "WorkerResult":
        with open(path) as f:
            data = json.load(f)
        data["steps"] = [StepRecord(**s) for s in data["steps"]]
        return cls(**data)

    def summary(self) -> dict[str, float]:
        """Means over the measured steps: all but the config's ``warmup_steps`` first (the last step when
        a run has no more)."""
        warmup = int(self.config.get("warmup_steps", 1))
        measured = self.steps[warmup:] if len(self.steps) > warmup else self.steps[-1:]
        step_s = statistics.fmean(s.step_s for s in measured)
        out = {
            "step_s": step_s,
            "seq_per_s": sum(s.sequences for s in measured) / sum(s.step_s for s in measured),
            "tok_per_s": sum(s.completion_tokens for s in measured) / sum(s.step_s for s in measured),
            "completion_len": sum(s.completion_tokens for s in measured) / max(1, sum(s.sequences for s in measured)),
            "first_step_s": self.steps[0].step_s,
            "step_cpu_s": statistics.fmean(s.step_cpu_s for s in measured),
            "seq_per_cpu_s": _ratio(sum(s.sequences for s in measured), sum(s.step_cpu_s for s in measured)),
            "tok_per_cpu_s": _ratio(sum(s.completion_tokens for s in measured), sum(s.step_cpu_s for s in measured)),
            "peak_rss_mb": self.peak_rss_mb,
        }
        for phase in PHASES:
            out[phase] = statistics.fmean(getattr(s, phase) for s in measured)
        out["logprob_mismatch"] = statistics.fmean(s.logprob_mismatch for s in measured)
        # matmul FLOP/s of the training forward + backward: over the policy forward and the update phase
        # (backward, clipping, optimizer: a lower bound on the backward's own rate)
        flop = sum(s.train_matmul_flop for s in measured)
        out["train_gflop_per_s"] = _ratio(flop, sum(s.policy_fwd_s + s.update_s for s in measured)) / 1e9
        out["train_gflop_per_cpu_s"] = _ratio(flop, sum(s.train_cpu_s for s in measured)) / 1e9  # per CPU second
        return out


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else 0.0


def matmul_peak_gflops(dtype_name: str, threads: int, seconds: float = 1.0) -> dict[str, float]:
    """This core's matmul peak in GFLOP/s for ``fp32`` or ``bf16``: the best of a few plain ``a @ b``
    products of the shapes a 135M model's training step runs (``[512, 576] x [576, 1536]`` and kin),
    each timed for about ``seconds`` after a warm-up."""
    import time

    import torch

    set_threads(threads)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    out = {}
    for m, k, n in ((512, 576, 1536), (512, 1536, 576), (512, 576, 8192), (1024, 1024, 1024)):
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        for _ in range(3):
            a @ b
        reps, t0 = 0, time.process_time()  # CPU time: what one core does, whatever else the machine runs
        while time.process_time() - t0 < seconds / 4:
            a @ b
            reps += 1
        out[f"{m}x{k}x{n}"] = 2 * m * k * n * reps / (time.process_time() - t0) / 1e9
    out["peak"] = max(out.values())
    return out


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def set_threads(threads: int) -> None:
    """Pin torch's intra-op (and inter-op) thread pools; call before any torch work."""
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # already started: only the intra-op setting matters for these runs
        pass


def worker_env(threads: int) -> dict[str, str]:
    """The environment both workers run in: same thread counts, offline, quiet."""
    env = dict(os.environ)
    env.update({
        "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "HF_DATASETS_OFFLINE": "1",
        "PYTHONWARNINGS": "ignore",
    })
    return env


def train_records(cfg: BenchConfig) -> list[list[dict[str, Any]]]:
    """The prompts of each step, exactly as lit_alpha's training stream draws them (``PromptStream``)."""
    from lit_alpha.data.sources import PromptStream
    from lit_alpha.tasks.countdown import COUNTDOWN4, CountdownTask

    stream = iter(PromptStream(CountdownTask(**COUNTDOWN4), cfg.prompts_per_step, cfg.seed))
    return [[dict(r) for r in next(stream)["records"]] for _ in range(cfg.steps)]


def versions() -> dict[str, str]:
    """Versions of the libraries that decide the speed of both sides."""
    import importlib.metadata as md

    out = {}
    for name in ("torch", "transformers", "lightning", "trl", "accelerate"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def add_run_args(p: argparse.ArgumentParser) -> None:
    """The sampling/run options both benchmark scripts take, defaulting to :class:`BenchConfig`'s."""
    d = BenchConfig()
    p.add_argument("--group-size", type=int, default=d.group_size)
    p.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--temperature", type=float, default=d.temperature)
    p.add_argument("--top-p", type=float, default=d.top_p)
    p.add_argument("--seed", type=int, default=d.seed)


def worker_args(description: str) -> argparse.Namespace:
    """``--config JSON --out PATH``: the command line every worker takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, help="BenchConfig as JSON")
    parser.add_argument("--out", required=True, help="where to write the WorkerResult JSON")
    return parser.parse_args()
