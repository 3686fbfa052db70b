"""scripts/golden.py's compare: what counts as the same recording (the record mode is the harness
itself: running it means fitting every shipped config, see docs/testing.md)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

SPEC = importlib.util.spec_from_file_location("golden", Path(__file__).parents[1] / "scripts" / "golden.py")
golden = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(golden)


def doc(**metrics) -> dict:
    return {"commit": "x", "skipped": {}, "configs": {"grpo": {"metrics": metrics}}}


def test_identical_and_within_tolerance_agree() -> None:
    a = doc(**{"train/loss": {"0": 0.5, "1": 0.25}, "val/pass_at_1": {"0": math.nan}})
    b = doc(**{"train/loss": {"0": 0.5 + 4e-7, "1": 0.25}, "val/pass_at_1": {"0": math.nan}})
    assert golden.differences(a, a, 1e-6) == [] and golden.differences(a, b, 1e-6) == []
    big = doc(**{"train/loss": {"0": 1e6, "1": 0.25}, "val/pass_at_1": {"0": math.nan}})
    near = doc(**{"train/loss": {"0": 1e6 + 0.5, "1": 0.25}, "val/pass_at_1": {"0": math.nan}})
    assert golden.differences(big, near, 1e-6) == []  # relative for large values


def test_every_kind_of_difference_is_named() -> None:
    a = doc(**{"train/loss": {"0": 0.5, "1": 0.25}, "train/kl": {"0": 0.0}, "val/x": {"0": 1.0}})
    b = doc(**{"train/loss": {"0": 0.5, "1": 0.2500021}, "train/new": {"0": 0.0}, "val/x": {"0": math.nan}})
    diffs = golden.differences(a, b, 1e-6)
    assert any(d.startswith("grpo train/loss step 1: 0.25 vs 0.2500021") for d in diffs)
    assert "grpo train/kl: only in before" in diffs and "grpo train/new: only in after" in diffs
    assert any(d.startswith("grpo val/x step 0") for d in diffs)  # a value turned NaN
    steps = doc(**{"train/loss": {"0": 0.5}})
    assert golden.differences(doc(**{"train/loss": {"0": 0.5, "1": 0.25}}), steps, 1e-6) == [
        "grpo train/loss: steps ['0', '1'] vs ['0']"]
    failed = {"commit": "y", "skipped": {}, "configs": {"grpo": {"error": "rc=1", "tail": ""}}}
    assert golden.differences(a, failed, 1e-6) == ["grpo: failed (after)"]
    assert golden.differences(a, {"configs": {}}, 1e-6) == ["grpo: only in before"]


def test_compare_exit_code_and_report(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a = doc(**{"train/loss": {"0": 0.5}})
    b = doc(**{"train/loss": {"0": 0.6}})
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    assert golden.main(["compare", str(tmp_path / "a.json"), str(tmp_path / "a.json")]) == 0
    assert "AGREE: 1 configs, 1 logged values, 0 differences" in capsys.readouterr().out
    assert golden.main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 1
    assert "grpo train/loss step 0: 0.5 vs 0.6" in capsys.readouterr().out


def test_timings_and_memory_are_left_out() -> None:
    for key in ["perf/sample_s", "perf/verify_s", "perf/base_logprob_s", "perf/peak_rss_mb", "perf/weight_sync_s"]:
        assert golden.VOLATILE.match(key), key
    for key in ["perf/logprob_mismatch", "perf/completion_tokens", "train/loss", "val/pass_at_1"]:
        assert not golden.VOLATILE.match(key), key
