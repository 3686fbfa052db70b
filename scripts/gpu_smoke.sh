#!/usr/bin/env bash
# GPU smoke test of the vLLM sampler: a short α-DPG fit (configs/gpu/vllm_a05.yaml) with vLLM colocated in the
# training process and bf16-mixed training, on the embedded countdown-tiny and on a ~0.5B model you give
# by path; prints sampling throughput, weight-sync time and peak GPU memory per model.
#
#   scripts/gpu_smoke.sh /path/to/Qwen2.5-0.5B-Instruct [STEPS]     # STEPS: optimizer steps (default 10)
#
# Needs one CUDA GPU and a Python with lit_alpha and a CUDA build of vLLM installed (PYTHON, default
# python; nothing is downloaded: the model is a local directory). Runs in a temporary directory (its
# MLflow store is kept and printed). Exits non-zero, loudly, without a GPU or when a run fails.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python}"
MODEL="${1:?usage: scripts/gpu_smoke.sh MODEL_DIR [STEPS]}"
STEPS="${2:-10}"
[ -d "$MODEL" ] || { echo "error: $MODEL is not a model directory" >&2; exit 2; }
MODEL="$(cd "$MODEL" && pwd)"

"$PY" - <<'PY' || exit 1
import sys
import torch
if not torch.cuda.is_available():
    sys.exit("error: gpu_smoke.sh needs a CUDA GPU: torch.cuda.is_available() is False "
             f"(torch {torch.__version__}); run scripts/test_vllm.sh for the CPU tests")
try:
    import vllm
except ImportError as err:
    sys.exit(f"error: gpu_smoke.sh needs vLLM (a CUDA build) in this Python: {err}")
print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}; vllm {vllm.__version__}")
PY

WORK="$(mktemp -d -t lit_alpha_gpu_smoke.XXXXXX)"
cd "$WORK"
echo "work dir (MLflow store): $WORK"

# name, model, max_model_len ("null": the model's own maximum)
run() {
  "$PY" - "$REPO" "$1" "$2" "$3" "$STEPS" <<'PY'
import statistics
import sys
import threading
import time

import torch
from mlflow.tracking import MlflowClient

repo, name, model, max_len, steps = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
from lit_alpha.cli.lightning import main

peak = {"used": 0}  # device-wide memory in use (trainer + vLLM weights, KV cache, CUDA context), polled
done = threading.Event()

def poll() -> None:
    while not done.is_set():
        free, total = torch.cuda.mem_get_info()
        peak["used"] = max(peak["used"], total - free)
        time.sleep(0.2)

threading.Thread(target=poll, daemon=True).start()
prompts, n = 32, 8
args = [
    "fit", "--config", f"{repo}/configs/gpu/vllm_a05.yaml", "--model.model", model,
    "--trainer.accelerator", "gpu", "--trainer.devices", "1", "--trainer.precision", "bf16-mixed",
    "--data.sampler.init_args.dtype", "bfloat16", "--data.sampler.init_args.kv_cache_memory_bytes", "null",
    "--data.sampler.init_args.gpu_memory_utilization", "0.3", "--data.sampler.init_args.max_model_len", max_len,
    "--data.sampler.init_args.check_every", "5", "--data.sampler.init_args.check_logprob_atol", "1.0",
    "--data.prompts_per_step", str(prompts), "--data.n_samples", str(n),
    "--trainer.max_steps", str(steps), "--trainer.val_check_interval", str(steps),
    "--data.task.init_args.num_val", "32", "--data.val_samples", "8", "--data.eval_prompts_per_batch", "32",
    "--trainer.callbacks", "[]", "--trainer.enable_checkpointing", "false", "--trainer.enable_progress_bar", "false",
    "--trainer.logger.init_args.run_name", f"gpu_smoke_{name}",
]
t0 = time.perf_counter()
main(args)
wall = time.perf_counter() - t0
done.set()

client = MlflowClient("sqlite:///mlruns/mlflow.db")
exp = client.get_experiment_by_name("lit_alpha")
run = next(r for r in client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])
           if r.info.run_name == f"gpu_smoke_{name}")
if run.info.status != "FINISHED":
    sys.exit(f"error: run {run.info.run_id} ended {run.info.status}")

def history(metric: str) -> list[float]:
    return [m.value for m in sorted(client.get_metric_history(run.info.run_id, metric), key=lambda m: m.step)]

sample_s, tokens, sync_s = history("perf/sample_s"), history("perf/completion_tokens"), history("perf/weight_sync_s")
if len(sample_s) < 2 or len(sync_s) < 2:
    sys.exit(f"error: run {run.info.run_id} logged too few steps ({len(sample_s)})")
steady = slice(1, None)  # step 0 includes vLLM's warm-up
mean = statistics.mean
mismatch = history("perf/logprob_mismatch")
print(f"== {name}: {model}")
print(f"  steps {len(sample_s)}, wall {wall:.0f}s (engine start and validation included), run {run.info.run_id}")
print(f"  sampling: {prompts * n / mean(sample_s[steady]):.1f} samples/s, "
      f"{mean(tokens[steady]) / mean(sample_s[steady]):.0f} completion tokens/s "
      f"({prompts}x{n} per step, {mean(sample_s[steady]):.2f}s per rollout)")
print(f"  weight sync: {mean(sync_s[steady]):.3f}s mean, {max(sync_s[steady]):.3f}s max per step")
if mismatch:
    print(f"  |sampler - trainer| log-prob per token (bf16 engine vs bf16-mixed forward): {mean(mismatch):.4f}")
print(f"  peak GPU memory: {peak['used'] / 2**30:.2f} GiB in use on the device (polled), "
      f"{torch.cuda.max_memory_reserved() / 2**30:.2f} GiB reserved by torch in this process")
print(f"  train/loss finite: {all(v == v for v in history('train/loss'))}; "
      f"val/pass_at_8 {run.data.metrics.get('val/pass_at_8', float('nan')):.3f}")
PY
}

run tiny countdown-tiny null
run model "$MODEL" 512
echo "gpu_smoke.sh: OK (MLflow store: $WORK/mlruns)"
