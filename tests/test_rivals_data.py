"""Data paths the rival objectives need, on a tiny random Llama (no embedded model required):
the sampler's per-token entropies, the chunked training-forward entropy, and the offline RFT cache."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from lit_alpha.data import RolloutDataModule
from lit_alpha.data.offline import OfflineRFT
from lit_alpha.data.rollout import _TRAIN, Rollout, RolloutModels
from lit_alpha.data.sources import PromptStream
from lit_alpha.models import load_policy
from lit_alpha.sampling import HFSampler, SamplingParams
from lit_alpha.scoring import token_logprobs
from lit_alpha.tasks import CountdownTask


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 2-layer random Llama with the char tokenizer built from scratch by lit_alpha.tasks.countdown.pretrain."""
    from lit_alpha.tasks.countdown.pretrain import build_model, build_tokenizer

    tok = build_tokenizer()
    model = build_model(tok, hidden=32, layers=2, heads=2, max_positions=128, seed=0)
    out = tmp_path_factory.mktemp("tiny_rivals")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return load_policy(str(out))


def test_sampler_entropy_matches_training_forward(tiny) -> None:
    model, tok = tiny
    prompts = ["3 7 9 12 | 59 = ", "1 2 | 3 = "]
    out = HFSampler().sample(model, tok, prompts, 3, SamplingParams(max_new_tokens=10), torch.Generator().manual_seed(0))
    assert out.entropy is not None and out.entropy.shape == out.logprobs.shape
    lp, ent = token_logprobs(model, out.input_ids, out.attention_mask, out.prompt_len, with_entropy=True,
                             entropy_chunk_tokens=7)
    assert_close(ent * out.completion_mask, out.entropy, atol=1e-5, rtol=0)
    assert (out.entropy[out.completion_mask == 0] == 0).all()
    # the log-probs are those of the plain call, and the entropies those of the full logits
    assert_close(lp, token_logprobs(model, out.input_ids, out.attention_mask, out.prompt_len))
    with torch.no_grad():
        logits = model(input_ids=out.input_ids, attention_mask=out.attention_mask,
                       position_ids=(out.attention_mask.cumsum(-1) - 1).clamp_min(0)).logits
    direct = -(logits.softmax(-1) * logits.log_softmax(-1)).sum(-1)[:, out.prompt_len - 1 : -1]  # [N, L]
    assert_close(ent[:, out.prompt_len :], direct * out.completion_mask[:, out.prompt_len :], atol=1e-5, rtol=0)
    assert not ent.requires_grad


# ---------------------------------------------------------------- offline RFT cache
def small_dm(offline: OfflineRFT, n_samples: int = 2) -> RolloutDataModule:
    task = CountdownTask(num_val=4, num_test=4)
    return RolloutDataModule(task=task, prompts_per_step=3, n_samples=n_samples, max_new_tokens=12, offline=offline)


def attached(dm: RolloutDataModule, base, tok) -> Rollout:
    """The datamodule's rollout with ``base`` handed over as policy and π_base."""
    return dm.rollout.attach(RolloutModels(policy=base, tokenizer=tok, base=base))


class CountingSampler(HFSampler):
    calls = 0

    def sample(self, *args, **kwargs):
        CountingSampler.calls += 1
        return super().sample(*args, **kwargs)


def test_offline_cache_built_reused_and_invalidated(tiny, tmp_path) -> None:
    base, tok = tiny
    path = tmp_path / "cache.pt"
    offline = OfflineRFT(cache_path=str(path))
    dm = small_dm(offline)
    dm.rollout.sampler = CountingSampler()
    CountingSampler.calls = 0
    assert not path.exists()
    offline.build_cache(attached(dm, base, tok), steps=2)
    assert path.exists() and CountingSampler.calls == 2  # built, not reused: it sampled both steps
    built = path.stat()
    assert list(tmp_path.iterdir()) == [path]  # the temporary file was renamed, nothing left over
    batch = offline.batch_at(1)
    # step 1's prompts are those an online run draws at step 1, n samples each, verified
    stream = iter(PromptStream(dm.task, 3, dm.seed))
    next(stream)
    records = next(stream)["records"]
    assert batch.problem_ids == [str(r["id"]) for r in records for _ in range(2)]
    assert batch.group_ids.tolist() == [0, 0, 1, 1, 2, 2]
    verdicts = dm.task.verifier.verify_batch([r for r in records for _ in range(2)], batch.completions)
    assert batch.rewards.tolist() == [v.score for v in verdicts]
    assert_close(batch.base_logprobs, batch.old_logprobs)  # π_old = π_base: the base sampled them
    assert batch.old_entropy is not None and "train/offline_accept_frac" in batch.stats
    # ... and they are exactly the samples an online run with the base as policy draws at step 1
    gen = torch.Generator().manual_seed(int(np.random.default_rng([dm.seed, _TRAIN, 1]).integers(2**62)))
    online = Rollout(dm.task, HFSampler(), dm.params).attach(RolloutModels(base, tok)).sample(base, records, 2, gen)
    assert online.completions == batch.completions
    assert_close(online.old_logprobs, batch.old_logprobs)

    # same settings: reused without sampling
    again = OfflineRFT(cache_path=str(path))
    dm2 = small_dm(again)
    dm2.rollout.sampler = CountingSampler()
    again.build_cache(attached(dm2, base, tok), steps=2)
    assert CountingSampler.calls == 2 and (path.stat().st_ino, path.stat().st_mtime_ns) == (built.st_ino, built.st_mtime_ns)
    assert again.batch_at(1).completions == batch.completions
    # other settings (group size, number of steps): resampled and overwritten
    other = OfflineRFT(cache_path=str(path))
    dm3 = small_dm(other, n_samples=3)
    dm3.rollout.sampler = CountingSampler()
    other.build_cache(attached(dm3, base, tok), steps=1)
    assert CountingSampler.calls == 3 and path.stat().st_ino != built.st_ino  # resampled and rewritten
    assert other.batch_at(0).rewards.numel() == 9
    with pytest.raises(IndexError):
        other.batch_at(1)
    # a corrupt file is rebuilt, not trusted
    path.write_bytes(b"not a torch file")
    fresh = OfflineRFT(cache_path=str(path))
    fresh.build_cache(attached(small_dm(fresh), base, tok), steps=1)
    assert torch.load(path, weights_only=True)["settings"]["steps"] == 1  # rewritten, not reused
    assert fresh.batch_at(0).rewards.numel() == 6


def test_offline_default_path_depends_on_settings(tiny, tmp_path, monkeypatch) -> None:
    base, tok = tiny
    monkeypatch.chdir(tmp_path)
    a, b = OfflineRFT(), OfflineRFT()
    a.build_cache(attached(small_dm(a), base, tok), steps=1)
    b.build_cache(attached(small_dm(b, n_samples=3), base, tok), steps=1)
    assert a.cache_file != b.cache_file
    assert a.cache_file.parent == b.cache_file.parent == tmp_path.joinpath("mlruns", "offline_rft").relative_to(tmp_path)
    with pytest.raises(ValueError, match="max_steps"):
        OfflineRFT().build_cache(attached(small_dm(OfflineRFT()), base, tok), steps=0)


# ---------------------------------------------------------------- the module fills the new inputs
def test_training_step_passes_entropy_only_when_asked(tiny, tmp_path) -> None:
    from lit_alpha.module import AlphaModule
    from lit_alpha.objectives import GRPO, GRPOEntropyRatioClip

    base_model, tok = tiny
    model_dir = tmp_path / "m"
    base_model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    seen = []

    class Recording(GRPOEntropyRatioClip):
        def __call__(self, inputs):
            seen.append(inputs)
            return super().__call__(inputs)

    class RecordingGRPO(GRPO):
        def __call__(self, inputs):
            seen.append(inputs)
            return super().__call__(inputs)

    task = CountdownTask(num_val=4, num_test=4)
    for objective in (Recording(), RecordingGRPO()):
        module = AlphaModule(model=str(model_dir), objective=objective)
        service = Rollout(task, HFSampler(), SamplingParams(max_new_tokens=8)).attach(module.rollout_models())
        batch = service.score_base(service.sample(module.policy, [task.problems("val")[0]], 3,
                                                  torch.Generator().manual_seed(0)))
        with warnings.catch_warnings():  # self.log without a trainer only warns
            warnings.simplefilter("ignore")
            loss = module.training_step(batch, 0)
        assert torch.isfinite(loss)
    erc, plain = seen
    assert erc.entropy is not None and plain.entropy is None
    assert_close(erc.entropy * erc.mask, erc.old_entropy * erc.mask, atol=1e-5, rtol=0)  # on-policy: ratio 1
    assert plain.old_entropy is not None and (erc.step, erc.max_steps) == (0, 0)
