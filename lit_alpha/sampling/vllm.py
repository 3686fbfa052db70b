"""A vLLM sampler colocated in the training process (the ``vllm`` extra: ``pip install -e ".[vllm]"``).

The engine runs in-process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``), so the policy's tensors reach it
without serialisation. It is created on the first :meth:`VLLMSampler.sample` from the policy's own
model directory (never downloaded; by default with dummy weights, since the weights always come from
the policy), and before every sampling call the policy's weights are pushed into it if they changed
since the last push (an optimizer step, a checkpoint load, a different model object). Pushing goes
through vLLM's in-place ``reload_weights`` (checkpoint-format names; vLLM fuses qkv/gate-up itself and
re-runs its kernel post-processing, e.g. the oneDNN weight packing on CPU), then the prefix cache is
dropped, since its KV entries were computed with the old weights. FSDP-sharded policies are gathered
to full tensors and LoRA adapters merged first (:func:`lit_alpha.sampling.weights.policy_weights`).

Samples have the layout of :class:`lit_alpha.sampling.hf.HFSampler`; the recorded log-probs are vLLM's
``raw_logprobs`` (log-softmax of the model's logits before temperature/top-p), i.e. log π_θ itself.
vLLM gives no full-vocabulary entropy, so ``Samples.entropy`` is None (entropy-ratio clipping needs
the HF sampler). Randomness: each call draws one seed from the passed generator; request i gets
``seed + i·n`` and vLLM gives its j-th sample ``seed + i·n + j``, so a call is a pure function of the
generator state, the prompts and the weights (not of batching or of the engine instance).

Sharing the process: vLLM's parallel state is process-global, so one engine per process (a second
sampler raises); its CPU backend binds host memory to NUMA node 0 and replaces ``torch.set_num_threads``
(restored here); sampling and pushes run outside the trainer's autocast. Sleep mode is GPU-only.
Tied embeddings are pushed under both names: the CPU backend keeps its own packed copy of the head.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch

from lit_alpha.models.loading import eval_mode
from lit_alpha.sampling.base import Samples, SamplingParams
from lit_alpha.sampling.weights import local_tensor, policy_weights, unwrap
from lit_alpha.scoring.logprobs import token_logprobs

_PROBE_LEN = 16  # tokens of the probe sequence of check_weights
_NOISE = {  # logger -> message prefixes dropped: expected with our setup, harmless
    "vllm.renderers.base": ("Chat template warmup failed",),  # no tokenizer in the engine, by design
    "vllm.model_executor.model_loader.reload.layerwise": ("RotaryEmbedding: Failed",),  # computed, not loaded
}
_ENGINE: weakref.ref | None = None  # the sampler whose engine lives in this process (vLLM allows one)


def _drop_noise(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith(_NOISE.get(record.name, ()))


@dataclass
class WeightCheck:
    """What :meth:`VLLMSampler.check_weights` found (engine vs policy)."""

    compared: int  # engine tensors compared element-wise with the policy's
    packed: int  # engine tensors held only in a kernel layout (CPU oneDNN packing): covered by the probe
    max_abs_diff: float  # over the compared tensors, after casting the policy's to the engine dtype
    logprob_gap: float  # max |engine − policy| token log-prob on a probe sequence
    unmatched: list[str] = field(default_factory=list)  # engine tensors with no policy counterpart
    ok: bool = False


@contextlib.contextmanager
def _no_autocast() -> Iterator[None]:
    """vLLM runs in its own dtype: the trainer's bf16-mixed autocast (the rollout samples inside the
    training step's precision context) must not reach the in-process engine."""
    with torch.autocast("cpu", enabled=False):
        if torch.cuda.is_available():
            with torch.autocast("cuda", enabled=False):
                yield
        else:
            yield


def _model_dir(model: Any) -> str:
    """The policy's local model directory (from ``from_pretrained``), or the hub cache's snapshot."""
    module = model.policy if hasattr(model, "unwrapped") else model
    config = getattr(module, "config", None)
    path = getattr(config, "_name_or_path", "") or getattr(module, "name_or_path", "")
    if os.path.isdir(path):
        return path
    try:  # a hub id the user named: its local snapshot only, never a download
        from huggingface_hub import snapshot_download

        return snapshot_download(path, local_files_only=True)
    except Exception as err:
        raise ValueError(f"VLLMSampler: cannot find the policy's model directory ({path!r}); "
                         f"set data.sampler.init_args.model_dir") from err


class VLLMSampler:
    """Sample with vLLM, in-process, on the current policy weights (pushed when they change).

    Args:
        model_dir: model directory the engine is built from (config + architecture; tokenizer is not
            used). None: the policy's own (``config._name_or_path``).
        dtype: engine dtype. None: the policy's parameter dtype (so the recorded log-probs match the
            trainer's forward); ``bfloat16`` for speed on a GPU (log-probs then differ by ~1e-2).
        gpu_memory_utilization: GPU memory fraction vLLM may take (weights + KV cache), when
            ``kv_cache_memory_bytes`` is None. Leave room for the trainer: it shares the GPU.
        kv_cache_memory_bytes: explicit KV-cache size. None: from ``gpu_memory_utilization`` on a GPU,
            1 GiB on CPU (where vLLM would otherwise reserve a fraction of all host memory).
        max_model_len: longest prompt + completion. None: the model's maximum (memory-hungry for
            long-context models; set it to prompt length + max_new_tokens).
        max_num_seqs: most sequences decoded at once (None: vLLM's default).
        enforce_eager: no CUDA graphs / torch.compile. None: eager on CPU, graphs on a GPU.
        enable_prefix_caching: share the prompt's KV cache across its n samples.
        enable_sleep_mode: free the engine's GPU memory between sampling calls (wake before, sleep
            after), so the trainer's step has it. GPU only: on CPU vLLM has no sleep mode and this
            is ignored with a warning.
        sleep_level: 1 keeps the weights in host memory while asleep; 2 drops them (they are pushed
            again from the policy on wake-up).
        load_format: ``dummy``: the engine starts with random weights and gets the policy's at the
            first call (nothing read twice); ``auto``: read the checkpoint from ``model_dir`` first.
        seed: engine seed, used for calls without a generator.
        check_every: every this many weight pushes, verify the engine against the policy with
            :meth:`check_weights` and fail if it differs (a debug aid; 0 = never).
        check_atol: element-wise tolerance of that check (after casting to the engine dtype).
        check_logprob_atol: tolerance of the check's probe log-probs (float32 ~1e-4; bf16 ~0.1).
        engine_kwargs: extra ``vllm.LLM`` arguments (e.g. ``tensor_parallel_size``).
    """

    def __init__(
        self,
        model_dir: str | None = None,
        dtype: str | None = None,
        gpu_memory_utilization: float = 0.3,
        kv_cache_memory_bytes: int | None = None,
        max_model_len: int | None = None,
        max_num_seqs: int | None = None,
        enforce_eager: bool | None = None,
        enable_prefix_caching: bool = True,
        enable_sleep_mode: bool = False,
        sleep_level: int = 1,
        load_format: str = "dummy",
        seed: int = 0,
        check_every: int = 0,
        check_atol: float = 1e-6,
        check_logprob_atol: float = 1e-3,
        engine_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if not 0 < gpu_memory_utilization <= 1:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
        if sleep_level not in (1, 2):
            raise ValueError(f"sleep_level must be 1 or 2, got {sleep_level}")
        if check_every < 0:
            raise ValueError(f"check_every must be >= 0, got {check_every}")
        self.model_dir, self.dtype, self.gpu_memory_utilization = model_dir, dtype, gpu_memory_utilization
        self.kv_cache_memory_bytes, self.max_model_len, self.max_num_seqs = kv_cache_memory_bytes, max_model_len, max_num_seqs
        self.enforce_eager, self.enable_prefix_caching = enforce_eager, enable_prefix_caching
        self.enable_sleep_mode, self.sleep_level, self.load_format = enable_sleep_mode, sleep_level, load_format
        self.seed, self.check_every, self.check_atol = seed, check_every, check_atol
        self.check_logprob_atol, self.engine_kwargs = check_logprob_atol, dict(engine_kwargs or {})
        self.llm: Any = None  # the vllm.LLM, built on first use
        self.syncs = 0  # weight pushes so far
        self._synced: tuple[weakref.ref, tuple] | None = None  # (model, fingerprint) of the last push
        self._asleep: set[str] = set()  # engine memory now released by sleep mode: "weights", "kv_cache"

    # -- the engine ------------------------------------------------------------------------------
    def _sleep_ok(self) -> bool:
        if not self.enable_sleep_mode:
            return False
        from vllm.platforms import current_platform

        if not current_platform.is_sleep_mode_available():
            logging.getLogger(__name__).warning("VLLMSampler: sleep mode needs a GPU; ignored on %s",
                                                current_platform.device_type or "this platform")
            self.enable_sleep_mode = False
        return self.enable_sleep_mode

    def _build(self, model: Any) -> None:
        global _ENGINE
        owner = _ENGINE() if _ENGINE is not None else None
        if owner is not None and owner is not self and owner.llm is not None:
            # vLLM's parallel state is process-global: a second engine breaks the first when it goes
            raise RuntimeError("VLLMSampler: one in-process vLLM engine per process; reuse the sampler")
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # in-process: weights pushed without copies
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        from vllm import LLM
        from vllm.platforms import current_platform

        on_cpu = current_platform.is_cpu()
        kwargs: dict[str, Any] = dict(
            model=self.model_dir or _model_dir(model), seed=self.seed,
            dtype=self.dtype or str(next(model.parameters()).dtype).removeprefix("torch."),
            skip_tokenizer_init=True,  # prompts go in as our token ids; completions decoded by our tokenizer
            logprobs_mode="raw_logprobs", max_logprobs=0, load_format=self.load_format,
            enable_prefix_caching=self.enable_prefix_caching, max_model_len=self.max_model_len,
            enforce_eager=on_cpu if self.enforce_eager is None else self.enforce_eager,
            gpu_memory_utilization=self.gpu_memory_utilization, enable_sleep_mode=self._sleep_ok(),
            kv_cache_memory_bytes=self.kv_cache_memory_bytes or ((1 << 30) if on_cpu else None),
        )
        if self.max_num_seqs is not None:
            kwargs["max_num_seqs"] = self.max_num_seqs
        if on_cpu:  # a partly prefilled seeded request rewinds its generator, which CPU generators cannot
            kwargs["enable_chunked_prefill"] = False
        if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
            # one engine replica per trainer rank (untested here: no multi-GPU machine)
            kwargs.update(distributed_executor_backend="external_launcher",
                          data_parallel_size=torch.distributed.get_world_size())
        kwargs.update(self.engine_kwargs)
        for name in _NOISE:  # known, harmless warnings (see _NOISE)
            logging.getLogger(name).addFilter(_drop_noise)
        # vLLM's CPU worker replaces torch.set_num_threads process-wide; the trainer keeps its own
        threads, set_threads = torch.get_num_threads(), torch.set_num_threads
        try:
            self.llm = LLM(**kwargs)
            _ENGINE = weakref.ref(self)
        finally:
            torch.set_num_threads = set_threads
            torch.set_num_threads(threads)

    def close(self) -> None:
        """Shut the engine down and release vLLM's process-global state, so that another sampler can
        build one (the next :meth:`sample` of this one builds a new engine)."""
        global _ENGINE
        if self.llm is None:
            return
        import gc

        from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

        self.llm.llm_engine.engine_core.shutdown()
        self.llm, self._synced, self._asleep, _ENGINE = None, None, set(), None
        gc.collect()
        destroy_model_parallel()
        destroy_distributed_environment()

    def _fingerprint(self, model: Any) -> tuple:
        """Cheap change detection: each parameter's storage and in-place version counter (bumped by
        optimizer steps and ``load_state_dict``; not by writes through ``.data``: call :meth:`invalidate`)."""
        return tuple((local_tensor(p).data_ptr(), local_tensor(p)._version) for p in model.parameters())

    def invalidate(self) -> None:
        """Force a weight push on the next call."""
        self._synced = None

    def sync_weights(self, model: Any, force: bool = False) -> float:
        """Push ``model``'s weights into the engine if they changed since the last push (or ``force``).
        Returns the seconds it took (0.0 when nothing changed)."""
        model = unwrap(model)
        self._wake(["weights"])
        fingerprint = self._fingerprint(model)
        if not force and self._synced is not None and self._synced[0]() is model and self._synced[1] == fingerprint:
            return 0.0
        t0 = time.perf_counter()
        # inference mode: an engine built during validation (Lightning runs it under inference_mode) holds
        # inference tensors, which only accept in-place writes in inference mode
        with _no_autocast(), torch.inference_mode():
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": policy_weights(model),
                                                               "is_checkpoint_format": True})
        self.llm.reset_prefix_cache()  # cached KV was computed with the old weights
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._synced = (weakref.ref(model), fingerprint)
        self.syncs += 1
        if self.check_every and self.syncs % self.check_every == 0:
            check = self.check_weights(model)
            if not check.ok:
                raise RuntimeError(f"VLLMSampler: engine weights differ from the policy's after push {self.syncs}: {check}")
        return time.perf_counter() - t0

    def _wake(self, tags: Sequence[str] = ("weights", "kv_cache")) -> None:
        """Give the engine back the memory sleep mode released (weights first: they are pushed into)."""
        todo = [t for t in tags if t in self._asleep]
        if todo:
            self.llm.wake_up(tags=todo)
            self._asleep.difference_update(todo)
            if "weights" in todo and self.sleep_level == 2:
                self._synced = None  # level 2 dropped the weights: push them again

    def _sleep(self) -> None:
        if self.enable_sleep_mode and not self._asleep:
            self.llm.sleep(level=self.sleep_level)
            self._asleep = {"weights", "kv_cache"}

    # -- the sync check ----------------------------------------------------------------------------
    @torch.no_grad()
    def check_weights(self, model: Any, atol: float | None = None, logprob_atol: float | None = None) -> WeightCheck:
        """Read the engine's weights back and compare them with ``model``'s.

        vLLM fuses ``q/k/v_proj`` into ``qkv_proj`` and ``gate/up_proj`` into ``gate_up_proj`` (its
        ``packed_modules_mapping``) and pads the vocabulary, which this undoes. On CPU the linear
        weights live only in oneDNN's packed layout (their parameters are empty), so a probe sequence's
        token log-probs under the engine and under ``model`` (float32 forward) are compared as well.
        """
        model = unwrap(model)
        atol = self.check_atol if atol is None else atol
        logprob_atol = self.check_logprob_atol if logprob_atol is None else logprob_atol
        self._wake()
        expected = {k: v for k, v in policy_weights(model)}
        engine = self.llm.llm_engine.model_executor.driver_worker.get_model()
        packing = getattr(engine, "packed_modules_mapping", {})
        compared = packed = 0
        worst, unmatched = 0.0, []
        for name, param in engine.named_parameters():
            if param.numel() == 0:
                packed += 1
                continue
            parts = next(([name.replace(f".{fused}.", f".{p}.") for p in subs]
                          for fused, subs in packing.items() if f".{fused}." in name), [name])
            if not all(p in expected for p in parts):
                unmatched.append(name)
                continue
            want = torch.cat([expected[p] for p in parts]).to(param.device, param.dtype)
            got = param[: want.shape[0]] if param.shape[1:] == want.shape[1:] else param  # vocabulary padding
            if got.shape != want.shape:
                unmatched.append(name)
                continue
            worst = max(worst, float((got.float() - want.float()).abs().max()))
            compared += 1
        gap = self._probe_gap(model)
        ok = compared > 0 and not unmatched and worst <= atol and gap <= logprob_atol
        return WeightCheck(compared, packed, worst, gap, unmatched, ok)

    def _probe_gap(self, model: Any) -> float:
        from vllm import SamplingParams as VParams
        from vllm.inputs import TokensPrompt

        vocab = int(self.llm.llm_engine.model_config.get_vocab_size())
        length = min(_PROBE_LEN, self.llm.llm_engine.model_config.max_model_len - 1)
        probe = torch.randint(vocab, (1, length), generator=torch.Generator().manual_seed(0))  # [1, T]
        with _no_autocast():
            out = self.llm.generate([TokensPrompt(prompt_token_ids=probe[0].tolist())],
                                    VParams(max_tokens=1, prompt_logprobs=0, temperature=1.0), use_tqdm=False)[0]
        engine_lp = torch.tensor([next(iter(d.values())).logprob for d in out.prompt_logprobs[1:]])  # [T-1]
        device = next(model.parameters()).device
        with eval_mode(model):  # every submodule's own mode restored, also on an exception
            ids = probe.to(device)
            ours = token_logprobs(model, ids, torch.ones_like(ids), 1)[0, 1:].float().cpu()  # [T-1]
        return float((engine_lp - ours).abs().max())

    # -- sampling ------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        model: torch.nn.Module,
        tokenizer,
        prompts: Sequence[str],
        n: int,
        params: SamplingParams,
        generator: torch.Generator | None = None,
    ) -> Samples:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        from vllm import SamplingParams as VParams
        from vllm.inputs import TokensPrompt

        model = unwrap(model)
        stats: dict[str, float] = {}
        if self.llm is None:
            t0 = time.perf_counter()
            self._build(model)
            stats["perf/engine_init_s"] = time.perf_counter() - t0
        stats["perf/weight_sync_s"] = self.sync_weights(model)  # wakes the weights first
        self._wake()  # and then the KV cache
        encoded = [tokenizer(p)["input_ids"] for p in prompts]
        pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
        seed = None
        if generator is not None:  # one draw per call: reproducible, and independent of batching
            seed = int(torch.randint(2**31 - 1, (1,), generator=generator, device=generator.device))
        requests = [VParams(n=n, temperature=params.temperature, top_p=params.top_p, max_tokens=params.max_new_tokens,
                            logprobs=0, flat_logprobs=True, stop_token_ids=[eos], detokenize=False,
                            seed=None if seed is None else seed + i * n)
                    for i in range(len(encoded))]
        t0 = time.perf_counter()
        with _no_autocast():
            outputs = self.llm.generate([TokensPrompt(prompt_token_ids=e) for e in encoded], requests, use_tqdm=False)
        stats["perf/vllm_generate_s"] = time.perf_counter() - t0
        self._sleep()
        rows = [(e, c) for e, out in zip(encoded, outputs) for c in sorted(out.outputs, key=lambda c: c.index)]
        return _to_samples(rows, tokenizer, pad, eos, stats)


def _to_samples(rows: list[tuple[list[int], Any]], tokenizer, pad: int, eos: int, stats: dict[str, float]) -> Samples:
    """Lay out ``(prompt ids, vLLM CompletionOutput)`` rows as ``[left-padded prompt | right-padded completion]``."""
    prompt_len = max(len(e) for e, _ in rows)
    width = max(len(c.token_ids) for _, c in rows)
    num = len(rows)
    input_ids = torch.full((num, prompt_len + width), pad, dtype=torch.long)  # [N, T]
    attention_mask = torch.zeros((num, prompt_len + width), dtype=torch.long)  # [N, T]
    completion_mask = torch.zeros((num, prompt_len + width))  # [N, T]
    logprobs = torch.zeros((num, prompt_len + width))  # [N, T]
    truncated = torch.zeros(num, dtype=torch.bool)  # [N]
    for i, (ids, c) in enumerate(rows):
        toks = list(c.token_ids)
        lps = list(c.logprobs.logprobs)  # flat: one entry (the sampled token) per position with logprobs=0
        if len(lps) != len(toks) or list(c.logprobs.token_ids) != toks:
            raise RuntimeError("VLLMSampler: vLLM returned log-probs that do not match the sampled tokens")
        end = prompt_len + len(toks)
        input_ids[i, prompt_len - len(ids) : prompt_len] = torch.tensor(ids)
        attention_mask[i, prompt_len - len(ids) : end] = 1
        input_ids[i, prompt_len:end] = torch.tensor(toks, dtype=torch.long)
        completion_mask[i, prompt_len:end] = 1.0
        logprobs[i, prompt_len:end] = torch.tensor(lps)
        truncated[i] = not toks or toks[-1] != eos
    gen = input_ids[:, prompt_len:].masked_fill(~completion_mask[:, prompt_len:].bool(), pad)
    texts = tokenizer.batch_decode(gen.tolist(), skip_special_tokens=True)
    return Samples(input_ids, attention_mask, completion_mask, logprobs, texts, truncated, prompt_len, stats=stats)
