"""Mode restore: every function that switches a model's train/eval mode, patches its layers or enters an
autocast region leaves the model as it found it — each submodule's own mode, every parameter's
``requires_grad`` and dtype, the autocast and grad state — also when the work inside raises."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from lit_alpha.analysis.evaluate import evaluate_policy
from lit_alpha.data.rollout import Rollout, RolloutModels
from lit_alpha.metrics.target import target_divergences
from lit_alpha.models import eval_mode, load_policy
from lit_alpha.sampling import HFSampler, SamplingParams
from lit_alpha.sampling.kernels import fast_decoding
from lit_alpha.scoring import token_logprobs
from lit_alpha.tasks import CountdownTask
from lit_alpha.training.precision import no_autocast, rollout_context

PARAMS = SamplingParams(max_new_tokens=4)


@pytest.fixture
def model(random_model_dir):
    """The tiny random Llama in a mixed state: training, but its first layer in eval mode and its
    embedding frozen (a function that restores only the top-level mode gets this wrong)."""
    policy, tok = load_policy(str(random_model_dir))
    policy.train()
    policy.model.layers[0].eval()
    policy.model.embed_tokens.weight.requires_grad_(False)
    return policy, tok


@pytest.fixture(scope="module")
def task():
    return CountdownTask(num_val=4, num_test=4)


def state(model: torch.nn.Module) -> tuple:
    """Everything a function could leave changed on ``model`` and in the process."""
    return (
        [(name, m.training) for name, m in model.named_modules()],
        [(name, p.requires_grad, p.dtype) for name, p in model.named_parameters()],
        [name for name, m in model.named_modules() if "forward" in vars(m)],  # patched forwards
        getattr(model.config, "_attn_implementation", None),
        torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"), torch.is_grad_enabled(),
    )


class Boom(RuntimeError):
    pass


def failing(model: torch.nn.Module):
    """A hook that makes the model's second layer raise on its next forward (remove it after)."""
    def hook(*_):
        raise Boom("forward failed")
    return model.model.layers[1].register_forward_pre_hook(hook)


def check(model, call, evaluates: bool = False) -> None:
    """``call()`` leaves ``state(model)`` as it was, returning normally and when the forward raises;
    ``evaluates``: every forward inside it ran with every layer in eval mode (no dropout)."""
    before = state(model)
    seen: list[bool] = []
    spy = model.model.layers[1].register_forward_pre_hook(lambda module, _: seen.append(module.training))
    try:
        call()
    finally:
        spy.remove()
    assert state(model) == before
    assert seen, "the model never ran"
    if evaluates:
        assert not any(seen), "a forward ran in training mode"
    handle = failing(model)
    try:
        with pytest.raises(Boom):
            call()
    finally:
        handle.remove()
    assert state(model) == before


# -- the context manager everything uses --------------------------------------------------------
def test_eval_mode(model) -> None:
    policy, _ = model

    def call():
        with eval_mode(policy):
            assert not any(m.training for m in policy.modules())
            policy(input_ids=torch.tensor([[1, 2, 3]]))
    check(policy, call, evaluates=True)


def test_eval_mode_of_a_view_that_is_not_a_module() -> None:
    class View:  # AdapterDisabled's interface: training, train(mode), eval()
        training = True

        def train(self, mode: bool = True):
            self.training = mode
            return self

        def eval(self):
            return self.train(False)

    view = View()
    with pytest.raises(Boom):
        with eval_mode(view):
            assert view.training is False
            raise Boom()
    assert view.training is True


# -- sampling and scoring -------------------------------------------------------------------
def test_sampler(model) -> None:
    policy, tok = model
    check(policy, lambda: HFSampler().sample(policy, tok, ["1 2 | 3 = ", "4 5 | 9 = "], 2, PARAMS,
                                             torch.Generator().manual_seed(0)), evaluates=True)


def test_sampler_under_bf16_autocast_with_its_kernels(model) -> None:
    """Under CPU bf16 autocast the sampler patches linear layers and the attention (fast_decoding)."""
    policy, tok = model

    def call():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            HFSampler().sample(policy, tok, ["1 2 | 3 = "], 2, PARAMS, torch.Generator().manual_seed(0))
    check(policy, call, evaluates=True)


def test_fast_decoding_restores_the_layers(model) -> None:
    policy, _ = model

    def call():
        with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad(), fast_decoding(policy):
            policy(input_ids=torch.tensor([[1, 2, 3]]))
    check(policy, call)


def test_token_logprobs(model) -> None:
    policy, _ = model
    ids = torch.tensor([[1, 5, 6, 7, 8]])
    check(policy, lambda: token_logprobs(policy, ids, torch.ones_like(ids), 2))


def test_rollout_batches_in_a_precision_context(model, task) -> None:
    policy, tok = model
    service = Rollout(task, HFSampler(), PARAMS, prompts_per_step=1, n_samples=2, val_samples=2)
    service.attach(RolloutModels(policy=policy, tokenizer=tok, base=policy, needs_base=True, base_samples=1),
                   precision=lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    records = task.problems("val")[:1]
    check(policy, lambda: service.train_batch(records, 0))
    check(policy, lambda: service.eval_batch(records, 0))
    check(policy, lambda: service.base_step(0))


# -- metrics and evaluation ---------------------------------------------------------------------
def test_target_divergences(model, task) -> None:
    policy, tok = model
    records = task.problems("val")[:1]
    rows = [{"problem_id": records[0]["id"], "c": 2, "n": 4, "correct_samples": {"5 6 7": 1, "8 9": 1}}]
    check(policy, lambda: target_divergences(policy, policy, tok, task, records, rows, alpha=0.5), evaluates=True)


def test_evaluate_policy(model, task) -> None:
    policy, tok = model
    service = Rollout(task, HFSampler(), PARAMS).attach(RolloutModels(policy=policy, tokenizer=tok))
    check(policy, lambda: evaluate_policy(service, task.problems("test")[:2], 2, "test"), evaluates=True)


def test_pretrain_evaluation(model, task) -> None:
    from lit_alpha.tasks.countdown.pretrain import evaluate_model

    policy, tok = model
    check(policy, lambda: evaluate_model(policy, tok, task, task.problems("val")[:2], n=2, batch_prompts=2,
                                         seed=0, max_new_tokens=3, ks=(1,)), evaluates=True)


# -- precision contexts ----------------------------------------------------------------------------
@pytest.mark.parametrize("precision", ["bf16-mixed", "32-true"])
def test_rollout_context(model, precision) -> None:
    from lightning.pytorch.plugins.precision import MixedPrecision, Precision

    policy, _ = model
    plugin = MixedPrecision("bf16-mixed", "cpu") if precision == "bf16-mixed" else Precision()
    trainer = SimpleNamespace(precision_plugin=plugin)

    def call():
        with rollout_context(trainer, torch.device("cpu")), torch.no_grad():
            assert torch.is_autocast_enabled("cpu") == (precision == "bf16-mixed")
            policy(input_ids=torch.tensor([[1, 2, 3]]))
    check(policy, call)


def test_no_autocast(model) -> None:
    policy, _ = model

    def call():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            with no_autocast("cpu"):
                assert not torch.is_autocast_enabled("cpu")
                policy(input_ids=torch.tensor([[1, 2, 3]]))
            assert torch.is_autocast_enabled("cpu")
    check(policy, call)


def test_adapter_disabled_view(random_model_dir) -> None:
    pytest.importorskip("peft")
    from lit_alpha.models import AdapterDisabled, LoraSpec, apply_lora

    policy, _ = load_policy(str(random_model_dir))
    policy = apply_lora(policy, LoraSpec(r=2, alpha=4, dropout=0.1, target_modules=["q_proj"]))
    policy.train()
    view = AdapterDisabled(policy)
    check(policy.base_model.model, lambda: view(input_ids=torch.tensor([[1, 2, 3]])), evaluates=True)
