"""The benchmarks run (lit_alpha side always; TRL side where its environment exists), and the
sampler's speed paths (shared prompt prefill, finished-row compaction, inverse-CDF draws) keep the
sampler's contract."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from lit_alpha.sampling import HFSampler, SamplingParams
from lit_alpha.sampling.hf import _draw
from lit_alpha.scoring import token_logprobs

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import bench_trl  # noqa: E402

TINY = ["--model", "countdown-tiny", "--steps", "2", "--repeats", "1", "--prompts-per-step", "2",
        "--group-size", "2", "--max-new-tokens", "8"]
PROMPTS = ["3 7 9 12 | 59 = ", "1 2 | 3 = ", "4 4 | 16 = "]


def test_bench_trl_lit_side_prints_its_table(capsys, tmp_path):
    rows = bench_trl.main([*TINY, "--sides", "lit", "--json-out", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert "| side | seq/s | tok/s |" in out and "| lit_alpha |" in out
    assert set(rows) == {"fp32", "bf16"}  # both precisions by default
    for prec in ("fp32", "bf16"):
        s = rows[prec]["lit_alpha"]
        assert s["train_gflop_per_s"] > 0 and 0 <= s["logprob_mismatch"] < 0.5
    s = rows["fp32"]["lit_alpha"]
    assert s["seq_per_s"] > 0 and s["tok_per_s"] > 0 and s["peak_rss_mb"] > 0
    assert s["step_s"] >= s["sample_s"] + s["verify_s"] + s["ref_fwd_s"] + s["policy_fwd_s"] - 1e-9
    assert s["ref_fwd_s"] == 0.0 and s["policy_fwd_s"] > 0  # GRPO β=0 skips the base forward, as TRL does
    assert (tmp_path / "r.json").exists()


@pytest.mark.slow
def test_bench_trl_both_sides_when_trl_is_installed(capsys):
    if not bench_trl.trl_available(bench_trl.DEFAULT_TRL_PYTHON):
        pytest.skip(f"no TRL environment at {bench_trl.DEFAULT_TRL_PYTHON} (benchmarks/setup_trl.sh)")
    rows = bench_trl.main(TINY)
    out = capsys.readouterr().out
    assert "| lit_alpha / TRL |" in out
    for prec in ("fp32", "bf16"):  # TRL bf16=True runs too
        assert rows[prec]["trl"]["ref_fwd_s"] == 0.0  # β=0, one iteration: no reference/old forward
        assert rows[prec]["trl"]["seq_per_s"] > 0


def test_draw_follows_the_probabilities_and_skips_zeros():
    probs = torch.tensor([[0.1, 0.2, 0.0, 0.3, 0.4]]).expand(100_000, 5).contiguous()
    tok = _draw(probs, torch.Generator().manual_seed(0))
    freq = torch.bincount(tok, minlength=5).float() / tok.numel()
    assert freq[2] == 0
    torch.testing.assert_close(freq, probs[0], atol=6e-3, rtol=0)  # ~4 standard errors
    again = _draw(probs, torch.Generator().manual_seed(0))
    assert torch.equal(tok, again)


@pytest.fixture(scope="module")
def policy(random_model_dir):
    from lit_alpha.models import load_policy

    return load_policy(str(random_model_dir))


@pytest.mark.parametrize("sampler", [
    HFSampler(share_prompt=False, compact_frac=0),  # the plain loop
    HFSampler(compact_frac=10**6),  # compact as soon as any row finishes
    HFSampler(max_batch=4),  # chunks of whole prompt groups
])
def test_speed_paths_keep_the_contract(policy, sampler):
    model, tok = policy
    out = sampler.sample(model, tok, PROMPTS, 4, SamplingParams(max_new_tokens=12), torch.Generator().manual_seed(3))
    assert out.input_ids.shape[0] == 12 and len(out.completions) == 12
    lp = token_logprobs(model, out.input_ids, out.attention_mask, out.prompt_len)
    torch.testing.assert_close(lp * out.completion_mask, out.logprobs, atol=1e-5, rtol=0)
    eos = tok.eos_token_id
    for r in range(12):
        gen = out.input_ids[r][out.completion_mask[r].bool()].tolist()
        assert (gen[-1] == eos) != bool(out.truncated[r]) and eos not in gen[:-1]
        assert out.entropy[r][out.completion_mask[r] == 0].abs().sum() == 0


def test_shared_prefill_draws_what_the_plain_prefill_draws(policy):
    """Sharing the prompt's prefill changes no sample: same generator, same completions."""
    model, tok = policy
    params = SamplingParams(max_new_tokens=10)
    shared = HFSampler(compact_frac=0).sample(model, tok, PROMPTS, 3, params, torch.Generator().manual_seed(5))
    plain = HFSampler(share_prompt=False, compact_frac=0).sample(model, tok, PROMPTS, 3, params,
                                                                  torch.Generator().manual_seed(5))
    assert shared.completions == plain.completions
    torch.testing.assert_close(shared.logprobs, plain.logprobs, atol=1e-5, rtol=0)


def test_bench_sampler_compares_three_samplers(capsys):
    import bench_sampler

    bench_sampler.main(["--model", "countdown-tiny", "--prompts", "2", "--group-size", "3", "--repeats", "1",
                        "--max-new-tokens", "8", "--precision", "fp32"])
    out = capsys.readouterr().out
    for side in bench_sampler.SIDES:
        assert f"| {side} |" in out
    assert out.count("×**") == 3  # HFSampler's speed-up over each generate loop, and the products' ceiling
    assert "The decode step's linear products alone" in out


def test_bench_sampler_plain_kernels_side(capsys, tmp_path):
    import bench_sampler

    bench_sampler.main(["--model", "countdown-tiny", "--prompts", "2", "--group-size", "3", "--repeats", "1",
                        "--max-new-tokens", "8", "--precision", "fp32", "--no-per-prompt", "--plain-kernels",
                        "--json-out", str(tmp_path / "s.json")])
    out = capsys.readouterr().out
    assert f"| {bench_sampler.PLAIN_SIDE} |" in out
    figures = json.loads((tmp_path / "s.json").read_text())
    assert figures["fp32"][bench_sampler.PLAIN_SIDE]["tok_per_cpu_s"] > 0


@pytest.mark.parametrize("per_prompt", [False, True])
def test_naive_generate_baselines_record_the_policys_logprobs(per_prompt):
    """The baselines do the sampler's job: their recorded log-probs are π_θ's for the drawn tokens."""
    import bench_sampler

    from lit_alpha.models import load_policy

    model, tok = load_policy("countdown-tiny")
    fn = bench_sampler.naive_generate_per_prompt if per_prompt else bench_sampler.naive_generate
    out = fn(model, tok, PROMPTS, 3, 8, 1.0, 1.0, seed=0)
    mask = out["mask"]
    assert mask.shape[0] == len(PROMPTS) * 3 and len(out["texts"]) == mask.shape[0]
    assert (mask.sum(1) >= 1).all()
    # re-score the texts with the trainer's token_logprobs: same per-sequence totals
    enc = [tok(p)["input_ids"] for p in PROMPTS for _ in range(3)]
    got = out["logprobs"].sum(1)
    for i, (ids, text) in enumerate(zip(enc, out["texts"])):
        comp = tok(text, add_special_tokens=False)["input_ids"][: int(mask[i].sum())]
        if len(comp) < int(mask[i].sum()):  # the sample ended with EOS, which decoding drops
            comp = comp + [tok.eos_token_id]
        row = torch.tensor([ids + comp])
        lp = token_logprobs(model, row, torch.ones_like(row), len(ids))
        torch.testing.assert_close(lp.sum(), got[i], atol=1e-4, rtol=1e-4)


def test_one_command_runs_all_three_parts(capsys):
    import bench

    out = bench.main(["--model", "countdown-tiny", "--steps", "2", "--repeats", "1", "--prompts-per-step", "2",
                      "--group-size", "2", "--max-new-tokens", "8", "--sampler-prompts", "2",
                      "--sampler-repeats", "1", "--scaling-steps", "2", "--sides", "lit"])
    printed = capsys.readouterr().out
    assert "## 0." in printed and "## 1." in printed and "## 2." in printed and "## 3." in printed
    assert "## Headline" in printed and "of the bf16 peak" in printed
    assert out["peak_gflops"]["fp32"]["peak"] > 0 and out["peak_gflops"]["bf16"]["peak"] > 0
    for prec in ("fp32", "bf16"):  # the precision axis: every part at both by default
        assert out["trl"][prec]["lit_alpha"]["seq_per_s"] > 0
        assert set(out["sampler"][prec]) == set(bench.bench_sampler.SIDES)
        assert out["headline"]["ratios"][prec]["sampler_batched"] > 0
        floor = out["decode_floor"][prec]  # 2 prompts x 2 samples: 4 rows per decode step
        assert floor["generate_s"] > 0 and floor["floor_tok_per_s"] == pytest.approx(4 / floor["hfsampler_s"])
        assert out["headline"]["ratios"][prec]["sampler_ceiling_cpu"] > 0
    settings = [(r["group_size"], r["max_new_tokens"]) for r in out["scaling"]]
    assert settings[:3] == [(4, 8), (8, 8), (16, 8)] and (8, 16) in settings  # group sizes, then budgets
    assert all(r["step_s"] > 0 and r["peak_rss_mb"] > 0 for r in out["scaling"])


def test_bench_verifier_prints_before_and_after(capsys):
    import bench_verifier

    bench_verifier.main(["--n", "400", "--rounds", "1"])
    out = capsys.readouterr().out
    assert "model-like" in out and "random+hostile" in out and out.count("verdicts/s") == 4


def test_headline_ratios_and_ceilings_by_hand():
    """The headline's ratios from hand-made figures: lit_alpha 4 s/step of which 2.5 s sampling, TRL 8 s;
    the sampler at 300 tokens/CPU s against generate's 100, its products' ceiling 500."""
    import bench

    def side(step_s, sample_s, seq_per_s):
        return {"step_s": step_s, "sample_s": sample_s, "seq_per_s": seq_per_s, "tok_per_s": 10 * seq_per_s,
                "seq_per_cpu_s": seq_per_s, "train_gflop_per_cpu_s": 50.0, "train_gflop_per_s": 50.0,
                "logprob_mismatch": 1e-6}

    sides = bench.bench_sampler.SIDES
    out = {"peak_gflops": {"fp32": {"peak": 100.0}, "bf16": {"peak": 500.0}},
           "trl": {"fp32": {"lit_alpha": side(4.0, 2.5, 4.0), "trl": side(8.0, 5.0, 2.0)}},
           "sampler": {"fp32": {sides[1]: {"tok_per_s": 100.0, "tok_per_cpu_s": 100.0},
                                sides[2]: {"tok_per_s": 300.0, "tok_per_cpu_s": 300.0}}},
           "decode_floor": {"fp32": {"generate_s": 0.1, "hfsampler_s": 0.064, "floor_tok_per_s": 500.0}}}
    r = bench.headline(out, ["fp32"])["ratios"]["fp32"]
    assert r["train_seq"] == pytest.approx(2.0) and r["train_seq_free_sampling"] == pytest.approx(8.0 / 1.5)
    assert r["frac_fp32_peak"] == pytest.approx(0.5) and r["frac_bf16_peak"] == pytest.approx(0.1)
    assert r["sampler_batched"] == pytest.approx(3.0)
    assert r["sampler_ceiling_cpu"] == pytest.approx(5.0) and r["sampler_frac_of_ceiling"] == pytest.approx(0.6)


def test_summary_leaves_out_the_warmup_steps():
    """Steps of 10, 6, 2, 4 s: with 2 warm-up steps the mean step is 3 s; a run no longer than its
    warm-up reports its last step; a warm-up as long as the run is refused."""
    from common import BenchConfig, StepRecord, WorkerResult

    steps = [StepRecord(step_s=t, sequences=4, completion_tokens=8.0) for t in (10.0, 6.0, 2.0, 4.0)]
    cfg = json.loads(BenchConfig(steps=4, warmup_steps=2).to_json())
    res = WorkerResult(side="lit", config=cfg, steps=steps)
    assert res.summary()["step_s"] == pytest.approx(3.0) and res.summary()["first_step_s"] == 10.0
    assert res.summary()["seq_per_s"] == pytest.approx(8 / 6)
    assert WorkerResult(side="lit", config={**cfg, "warmup_steps": 9}, steps=steps).summary()["step_s"] == 4.0
    with pytest.raises(ValueError, match="warmup_steps"):
        BenchConfig(steps=2, warmup_steps=2)
