"""Fault injection: verifiers that raise, hang, die or return garbage; samplers that return empty or
truncated completions; all-wrong / all-right groups; NaN losses and gradients. The run goes on,
every fault costs only its sample (0 verdict, counted reason), and too many bad steps in a row stop
the run with one clear message."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import torch
from faulty_verifiers import FaultyVerifier
from mlflow.tracking import MlflowClient

import lit_alpha.objectives as objectives
from lit_alpha.batch import ObjectiveInputs
from lit_alpha.cli.lightning import main
from lit_alpha.verifiers.guarded import GuardedVerifier

REC = {"id": "p0", "numbers": [3, 7, 9, 12], "target": 59}
GOOD = "7*9-12/3"  # = 59
FIT = [
    "fit", "--config", "configs/a05.yaml",
    "--trainer.max_steps", "3", "--trainer.limit_val_batches", "0", "--validate_at_start", "false",
    "--data.prompts_per_step", "4", "--data.n_samples", "4", "--data.max_new_tokens", "8",
    "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
]


def _fit(repo_args: list[str], *extra: str):
    repo = Path(__file__).resolve().parents[1]
    args = [str(repo / a) if a.startswith("configs/") else a for a in repo_args]
    return main([*args, *extra])


def _client() -> MlflowClient:
    """The store under the current directory (absolute: MLflow caches stores by URI string)."""
    return MlflowClient(f"sqlite:///{Path('mlruns/mlflow.db').resolve()}")


def _metrics(run_id: str) -> dict[str, list[tuple[int, float]]]:
    client = _client()
    run = client.get_run(run_id)
    return {k: [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, k), key=lambda m: m.step)]
            for k in run.data.metrics}


# -- the guard, in-process and with worker processes --------------------------------------------
def test_in_process_guard_turns_exceptions_and_garbage_into_counted_zero_verdicts():
    guard = GuardedVerifier(FaultyVerifier())
    out = guard.verify_batch([REC] * 6, [GOOD, "boom", "junk", "nan", "", "3+7"])
    assert [v.reason for v in out] == ["ok", "crash:RuntimeError", "garbage", "garbage", "empty", "wrong"]
    assert [v.score for v in out] == [1.0, 0, 0, 0, 0, 0]
    assert dict(guard.faults) == {"crash": 1, "garbage": 2}


def test_guard_without_the_trainer_wrapper_would_crash():
    """The raw verifier raises (so the guard is what keeps the run alive)."""
    with pytest.raises(RuntimeError):
        FaultyVerifier().verify(REC, "boom")


def test_pooled_guard_survives_a_hang_a_crash_and_a_dying_worker():
    guard = GuardedVerifier(FaultyVerifier(hang_s=120), timeout_s=1.0, workers=2)
    try:
        start = time.monotonic()
        out = guard.verify_batch([REC] * 7, [GOOD, "hang", "boom", "die", "junk", "nan", GOOD])
        assert time.monotonic() - start < 30  # a hung sample costs its timeout, not the hang
        assert [v.reason for v in out] == [
            "ok", "timeout", "crash:RuntimeError", "crash:WorkerDied", "garbage", "garbage", "ok"]
        assert dict(guard.faults) == {"timeout": 1, "crash": 2, "garbage": 2}
        # the pool replaced its dead and hung workers and goes on
        again = guard.verify_batch([REC, REC], [GOOD, "3+7"])
        assert [v.reason for v in again] == ["ok", "wrong"]
        procs = [w.proc for w in guard._workers]
    finally:
        guard.close()
    for proc in procs:
        assert proc.wait(timeout=10) is not None  # no worker outlives close()


# -- empty / truncated completions ------------------------------------------------------------
def test_empty_and_truncated_completions_are_zero_verdicts_and_counted():
    from fault_injection import BlankingSampler

    from lit_alpha.data.rollout import Rollout, RolloutModels
    from lit_alpha.models import load_policy
    from lit_alpha.objectives import AlphaDPG
    from lit_alpha.sampling.base import SamplingParams
    from lit_alpha.tasks import CountdownTask

    policy, tok = load_policy("countdown-tiny")
    task = CountdownTask(num_val=4, num_test=4)
    records = task.problems("val")[:3]
    service = Rollout(task, BlankingSampler(every=2), SamplingParams(max_new_tokens=3))
    service.attach(RolloutModels(policy=policy, tokenizer=tok, base=policy))
    batch = service.score_base(service.sample(policy, records, 4, torch.Generator().manual_seed(0)))
    assert batch.reasons[::2] == ["empty"] * 6 and batch.rewards[::2].eq(0).all()
    assert batch.stats["verifier/empty_frac"] == pytest.approx(0.5)
    assert batch.stats["train/truncated_frac"] > 0
    out = AlphaDPG()(ObjectiveInputs(
        logprobs=batch.old_logprobs.clone().requires_grad_(), old_logprobs=batch.old_logprobs,
        base_logprobs=batch.base_logprobs, mask=batch.completion_mask, rewards=batch.rewards,
        group_ids=batch.group_ids))
    assert torch.isfinite(out.loss)


# -- a whole run with a faulty verifier and a blanking sampler: it goes on, faults are logged ---
@pytest.mark.slow
def test_fit_goes_on_through_verifier_faults_and_logs_them(in_tmp):
    cli = _fit(FIT, "--data.task.class_path", "fault_injection.FaultyTask",
               "--data.task.init_args.rate", "0.4", "--data.task.init_args.hang_s", "120",
               "--data.verify_timeout_s", "1.0", "--data.verify_workers", "2",
               "--data.sampler.class_path", "fault_injection.BlankingSampler",
               "--data.sampler.init_args.every", "5")
    run_id = cli.trainer.logger.run_id
    assert _client().get_run(run_id).info.status == "FINISHED"
    m = _metrics(run_id)
    for reason in ["crash", "garbage", "timeout", "empty"]:
        history = m[f"verifier/{reason}_frac"]
        first = 0 if reason != "empty" else history[0][0]  # faults are logged from step 0, others once seen
        assert [s for s, _ in history] == list(range(first, 3)), reason  # every step (0 when absent)
        assert sum(v for _, v in history) > 0, reason
    total = [v for _, v in m["verifier/faults_total"]]
    assert total == sorted(total) and total[-1] == sum(cli.datamodule.rollout.guard.faults.values()) > 0
    assert all(math.isfinite(v) for _, v in m["train/loss"])


# -- degenerate groups: every objective, no NaN, counted ----------------------------------------
OBJECTIVES = [getattr(objectives, name) for name in objectives.__all__
              if isinstance(getattr(objectives, name), type) and issubclass(getattr(objectives, name), objectives.Objective)
              and getattr(objectives, name) is not objectives.Objective]


@pytest.mark.parametrize("cls", OBJECTIVES, ids=lambda c: c.__name__)
def test_all_wrong_and_all_right_groups_give_finite_loss_and_are_counted(cls):
    torch.manual_seed(0)
    n, g, t = 3, 4, 5  # groups: all wrong, all right, mixed
    logprobs = (-torch.rand(n * g, t) - 0.1).requires_grad_()
    mask = torch.ones(n * g, t)
    rewards = torch.tensor([0.0] * g + [1.0] * g + [1.0, 0.0, 0.0, 1.0])
    inputs = ObjectiveInputs(
        logprobs=logprobs, old_logprobs=logprobs.detach().clone(), base_logprobs=logprobs.detach() - 0.05,
        mask=mask, rewards=rewards, group_ids=torch.arange(n).repeat_interleave(g),
        entropy=torch.rand(n * g, t), old_entropy=torch.rand(n * g, t), step=1, max_steps=10)
    out = (cls(base_samples=2) if cls is objectives.MixtureAlphaDPG else cls())(inputs)  # mixture: 2 + 2 rows
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert torch.isfinite(logprobs.grad).all()
    assert all(torch.isfinite(v).all() for v in out.metrics.values())
    assert out.metrics["zero_success_frac"].item() == pytest.approx(1 / 3)
    assert out.metrics["all_success_frac"].item() == pytest.approx(1 / 3)


# -- NaN / inf: the step is skipped and logged; too many in a row stop the run --------------------
@pytest.mark.slow
def test_nonfinite_loss_and_gradient_steps_are_skipped_and_logged(in_tmp):
    cli = _fit(FIT, "--trainer.max_steps", "4", "--model.objective.class_path", "fault_injection.NaNAt",
               "--model.objective.init_args.loss_steps", "[1]", "--model.objective.init_args.grad_steps", "[2]")
    run_id = cli.trainer.logger.run_id
    assert _client().get_run(run_id).info.status == "FINISHED"
    assert _metrics(run_id)["train/skipped_steps"] == [(0, 0.0), (1, 1.0), (2, 2.0), (3, 2.0)]
    assert cli.trainer.global_step == 4  # skipped steps still count (data stream and schedules stay aligned)
    state = cli.trainer.optimizers[0].state
    assert {int(s["step"]) for s in state.values()} == {2}  # only 2 of the 4 steps updated anything
    params = [p for p in cli.model.policy.parameters()]
    assert all(torch.isfinite(p).all() for p in params)


def test_too_many_bad_steps_in_a_row_stop_with_one_clear_message(in_tmp, capsys):
    with pytest.raises(SystemExit) as exit_:
        _fit(FIT, "--trainer.max_steps", "5", "--model.objective.class_path", "fault_injection.NaNAt",
             "--model.objective.init_args.loss_steps", "[-1]", "--model.max_bad_steps", "2")
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert "error: stopping at step 1: 2 steps in a row had a non-finite loss" in err
    assert "model.max_bad_steps=2" in err and "Traceback" not in err
    client = _client()
    (run,) = client.search_runs([client.get_experiment_by_name("lit_alpha").experiment_id])
    assert run.info.status == "FAILED"
