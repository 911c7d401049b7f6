"""The per-piece raw-data check (check_frame) and the target-fits-the-task rule, on frames."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import REPO
from trainyard.core.spec import load_spec, parse_spec
from trainyard.data.sources import RawDataError, check_frame, column_kind
from trainyard.training import modeling
from trainyard_dev.churn import generate_day

CHURN = load_spec(REPO / "include" / "pipelines" / "churn.yaml")
WHERE = "partition 2026-03-01 file s3://raw/churn/date=2026-03-01/part-0000.parquet"


def _regression():
    data = yaml.safe_load((REPO / "include" / "pipelines" / "churn.yaml").read_text())
    data["model"] = {"task": "regression", "estimator": "sklearn.linear_model.Ridge"}
    data.update(metrics=["r2"], gate={"champion_metric": "r2"})
    data["performance"]["metric"] = "r2"
    return parse_spec(data, Path("churn.yaml"))


@pytest.fixture(scope="module")
def day() -> pd.DataFrame:
    return generate_day(date(2026, 3, 1), 50)


def test_a_good_partition_passes_unchanged(day: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(check_frame(CHURN, day, WHERE), day)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda f: f.rename(columns={"monthly_charges": "monthly_charge"}),
            f"{WHERE}: lacks declared column(s) ['monthly_charges']; it has ['customer_id', ",
        ),
        (
            lambda f: f.drop(columns=["customer_id"]),
            f"{WHERE}: lacks declared column(s) ['customer_id']",
        ),
        (
            lambda f: f.assign(tenure_months=["n/a"] + list(f.tenure_months.astype(str))[1:]),
            f"{WHERE}: numeric feature column 'tenure_months' must hold numbers; found 'n/a' "
            "(1 such value(s))",
        ),
        (
            lambda f: f.assign(event_date=["yesterday"] * len(f)),
            f"{WHERE}: timestamp column 'event_date' must hold dates; found 'yesterday' "
            "(50 such value(s))",
        ),
        (
            lambda f: f.assign(contract=["monthly", 3] * (len(f) // 2)),
            f"{WHERE}: categorical feature 'contract' mixes kinds of values, e.g. ['monthly', 3]",
        ),
        (
            lambda f: f.assign(churned=np.linspace(0, 1, len(f))),
            f"{WHERE}: target 'churned' holds continuous values (e.g. 0.02040816326530612), but "
            "model.task is classification",
        ),
    ],
    ids=["renamed", "no-id", "text-in-number", "bad-date", "mixed-category", "continuous"],
)
def test_a_bad_partition_is_named_with_the_column_and_a_value(
    day: pd.DataFrame, mutate, expected: str
) -> None:
    with pytest.raises(RawDataError) as error:
        check_frame(CHURN, mutate(day.copy()), WHERE)
    assert str(error.value).startswith(expected)


def test_numbers_and_dates_given_as_text_are_parsed(day: pd.DataFrame) -> None:
    texty = day.assign(
        tenure_months=day.tenure_months.astype(str), event_date=day.event_date.astype(str)
    )
    checked = check_frame(CHURN, texty, WHERE)
    assert column_kind(checked["tenure_months"]) == "number"
    assert column_kind(checked["event_date"]) == "date"
    assert checked["tenure_months"].tolist() == day["tenure_months"].tolist()


def test_regression_target_must_be_numbers(day: pd.DataFrame) -> None:
    spec = _regression()
    with pytest.raises(RawDataError, match="target column 'churned' must hold numbers"):
        check_frame(spec, day.assign(churned=["yes", "no"] * 25), WHERE)
    assert modeling.target_problem(spec, pd.Series(["yes", "1.5"])) == (
        "target 'churned' holds non-numeric values (e.g. 'yes'), but model.task is regression"
    )
    assert modeling.target_problem(spec, pd.Series([1.5, None, 2.0])) is None


def test_classification_targets_may_be_text_booleans_or_whole_numbers() -> None:
    for values in (["yes", "no"], [True, False], [0.0, 1.0, None], [1, 2, 3]):
        assert modeling.target_problem(CHURN, pd.Series(values)) is None


def test_split_refuses_a_single_class_before_fitting(day: pd.DataFrame) -> None:
    with pytest.raises(modeling.TrainingDataError) as error:
        modeling.split(CHURN, day.assign(churned=1))
    assert str(error.value) == (
        "target 'churned' holds a single class [1] in 50 labelled rows; a classifier needs at "
        "least two"
    )


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        ([1, 2], "number"),
        ([1.5, None], "number"),
        ([True, False], "boolean"),
        (["a", None], "text"),
        ([None, None], "empty"),
        ([pd.Timestamp("2026-01-01")], "date"),
        (["a", 1], "mixed"),
    ],
)
def test_column_kind(values: list, kind: str) -> None:
    assert column_kind(pd.Series(values)) == kind
