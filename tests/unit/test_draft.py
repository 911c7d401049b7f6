"""``trainyard init``'s guesses and drafts, on frames in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.support import loans_frame
from trainyard.core.spec import parse_spec
from trainyard.data.draft import DraftError, Located, guess, spec_document, suite_document
from trainyard.training.preflight import preflight


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = 200
    return pd.DataFrame(
        {
            "order_id": np.arange(rows),
            "created_at": pd.date_range("2026-01-01", periods=rows, freq="h").astype(str),
            "updated_at": pd.date_range("2026-02-01", periods=rows, freq="h"),
            "amount": rng.normal(100, 10, rows),
            "country": rng.choice(["fr", "de", "it"], rows),
            "email": [f"user{i}@example.com" for i in range(rows)],
            "note": [f"free text {i % 120}" for i in range(rows)],
            "source": "web",
            "coupon": None,
            "label": rng.integers(0, 3, rows),
        }
    )


def test_roles_are_guessed_with_a_reason_for_each() -> None:
    found = guess(_frame(), "label")
    assert (found.task, found.id_column, found.timestamp_column) == (
        "classification",
        "order_id",
        "created_at",
    )
    assert found.numeric == ["amount"] and found.categorical == ["country"]
    assert found.left_out == {
        "updated_at": "another timestamp (the first, 'created_at', is declared)",
        "email": "high cardinality: 200 distinct values in 200 rows",
        "note": "high cardinality: 120 distinct values in 200 rows",
        "source": "constant ('web') in the sample",
        "coupon": "empty in the sample",
    }
    assert "target 'label': classification, because it holds 3 whole-number values" in found.reasons


def test_a_continuous_target_is_regression_and_a_missing_one_is_refused() -> None:
    frame = _frame().assign(label=np.linspace(0, 1, 200))
    assert guess(frame, "label").task == "regression"
    with pytest.raises(DraftError, match="--target 'price' is not a column"):
        guess(frame, "price")


def test_the_drafts_load_pass_preflight_and_describe_the_sample() -> None:
    frame = loans_frame(300)
    frame["application_id"] = frame["application_id"].astype(int)  # as pandas reads "00017"
    found = guess(frame, "decision")
    located = Located("raw", "loans/applications.csv", "csv", None, ["loans/applications.csv"])
    document = spec_document("loans", located, found, frame)
    spec = parse_spec(document, Path("loans.yaml"))
    preflight(spec, Path("loans.yaml"))
    assert spec.metrics == ("roc_auc", "accuracy", "balanced_accuracy")  # text labels: no f1
    assert spec.drift.schedule is None and spec.schedule is None
    suite = suite_document(frame, found)["expectations"]
    assert {
        "type": "expect_column_values_to_be_in_set",
        "kwargs": {"column": "decision", "value_set": ["approved", "declined"], "mostly": 0.95},
        "severity": "warning",
    } in suite
    ranges = [e for e in suite if e["type"] == "expect_column_values_to_be_between"]
    ages = next(e for e in ranges if e["kwargs"]["column"] == "age")
    assert ages["kwargs"]["min_value"] <= 18 and ages["kwargs"]["max_value"] >= 79
