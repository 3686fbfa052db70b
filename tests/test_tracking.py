"""The MLflow store: several processes starting at once on a fresh sqlite store (as ``sweep --jobs``)."""

from __future__ import annotations

import subprocess
import sys

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
