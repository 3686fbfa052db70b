"""The closing table of fit and evaluate (lit_alpha.metrics.report), by hand."""

from __future__ import annotations

from lit_alpha.metrics.report import end_table, largest_common_k


def test_two_rows_and_their_change():
    text = end_table([("base (step 0)", {"val/pass@1": 0.029, "val/pass@8": 0.2, "val/pass@64": 0.565,
                                         "val/distinct_correct": 1.2}),
                      ("step 200", {"val/pass@1": 0.044, "val/pass@64": 0.425, "val/distinct_correct": 0.9})],
                     title="validation")
    lines = text.splitlines()
    assert lines[0] == "validation"
    assert lines[1].split() == ["pass@1", "pass@64", "distinct", "correct"]  # 64: the largest k both rows have
    assert lines[2].split()[-3:] == ["2.9", "56.5", "1.20"]
    assert lines[3].split()[-3:] == ["4.4", "42.5", "0.90"]
    assert lines[4].split() == ["change", "+1.5", "-14.0", "-0.30"]  # 4.4-2.9, 42.5-56.5, 0.9-1.2


def test_one_row_and_mlflow_names():
    text = end_table([("base", {"pass_at_1": 0.03, "pass_at_256": 0.84, "distinct_correct": 3.0})])
    assert text.splitlines()[1].split() == ["base", "3.0", "84.0", "3.00"]
    assert "change" not in text
    assert largest_common_k([{"eval/val/pass_at_16": 1.0, "pass@4": 1.0}, {"val/pass@16": 1.0}]) == 16
    assert largest_common_k([{"val/pass@1": 1.0}, {}]) is None
