"""The MLflow store: several processes starting at once on a fresh sqlite store (as ``sweep --jobs``)."""

from __future__ import annotations

import subprocess
import sys

import torch
from mlflow.tracking import MlflowClient

START = """
import sys
from lit_alpha.training.tracking import MLflowLogger
logger = MLflowLogger(experiment_name="race", run_name=sys.argv[1])
logger.log_metrics({"x": 1.0}, step=0)
logger.finalize("success")
"""


def test_parallel_first_use_of_a_fresh_store(in_tmp):
    """Four loggers on a store that does not exist yet: without the lock, MLflow's schema migration
    or experiment creation races and some of them die."""
    procs = [subprocess.Popen([sys.executable, "-c", START, f"r{i}"], stderr=subprocess.PIPE, text=True)
             for i in range(4)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    client = MlflowClient(f"sqlite:///{in_tmp}/mlruns/mlflow.db")
    exp = client.get_experiment_by_name("race")
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["r0", "r1", "r2", "r3"]
    assert all(r.data.metrics["x"] == 1.0 for r in runs)


NAMES = ["plain", "it's", 'say "hi"', "back\\slash", "both ' and \"", "pct%_u", "a05-s0"]


def test_runs_named_finds_names_with_quotes_and_backslashes(in_tmp):
    """One "runs of this name" query for resume, sweep, evaluate and frontier: MLflow's filter takes a
    literal verbatim between its quotes, so a name with a quote, a backslash or both must still match
    exactly (and ``a05`` must not match ``a05-s0``)."""
    from lit_alpha.analysis.sweep import Store
    from lit_alpha.training.checkpoint import find_resume
    from lit_alpha.training.tracking import run_name_filter, runs_named, store_client

    uri = f"sqlite:///{in_tmp}/mlruns/mlflow.db"
    assert store_client(uri, create=False) is None  # reading never creates a store
    assert Store(uri, "q").runs("it's") == [] and find_resume(uri, "q", "it's", in_tmp / "mlruns") is None
    client = store_client(uri)
    exp = client.create_experiment("q")
    ids = {name: [client.create_run(exp, run_name=name).info.run_id for _ in range(2)] for name in NAMES}
    client.create_run(exp, run_name="a05")
    assert run_name_filter("both ' and \"") is None and run_name_filter("it's") == 'attributes.run_name = "it\'s"'
    for name in NAMES:
        runs = runs_named(client, exp, name)
        assert [r.info.run_name for r in runs] == [name, name]
        assert {r.info.run_id for r in runs} == set(ids[name])
        assert runs[0].info.start_time >= runs[1].info.start_time  # newest first
        assert Store(uri, "q").started(name) and not Store(uri, "q").finished(name)
        ckpt = in_tmp / "mlruns" / exp / ids[name][1] / "checkpoints" / "last.ckpt"
        ckpt.parent.mkdir(parents=True)
        torch.save({"global_step": 3}, ckpt)  # a readable checkpoint (an empty file is skipped as unreadable)
        resume = find_resume(uri, "q", name, in_tmp / "mlruns")
        assert resume is not None and resume.run_id == ids[name][1] and resume.run_name == name
    assert len(runs_named(client, exp, None)) == 2 * len(NAMES) + 1
    assert runs_named(client, exp, "it") == [] and [r.info.run_name for r in runs_named(client, exp, "a05")] == ["a05"]
