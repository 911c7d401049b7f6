"""The synthetic churn data and its knobs."""

from __future__ import annotations

from datetime import date

import pytest

from trainyard_dev.churn import CATEGORIES, Knobs, generate_day

DAY = date(2026, 4, 1)


def test_same_day_same_rows_other_day_other_rows() -> None:
    assert generate_day(DAY, 500).equals(generate_day(DAY, 500))
    assert not generate_day(DAY, 500).equals(generate_day(date(2026, 4, 2), 500))
    assert not generate_day(DAY, 500).equals(generate_day(DAY, 500, seed=1))


def test_baseline_is_clean_and_plausible() -> None:
    frame = generate_day(DAY, 5000)
    assert frame.notna().all().all()
    assert frame["customer_id"].is_unique
    assert frame["tenure_months"].between(0, 72).all()
    assert 0.2 < frame["churned"].mean() < 0.5
    for column, (values, _) in CATEGORIES.items():
        assert set(frame[column]) <= set(values)


def test_covariate_drift_shifts_only_the_named_columns() -> None:
    base = generate_day(DAY, 5000)
    drifted = generate_day(
        DAY, 5000, Knobs(covariate_drift={"monthly_charges": 1.5, "contract": 0.6})
    )
    assert drifted["monthly_charges"].mean() > base["monthly_charges"].mean() + 20
    assert (drifted["contract"] == "two_year").mean() > 0.6
    assert drifted["support_calls"].mean() == pytest.approx(base["support_calls"].mean(), rel=0.1)


def test_concept_drift_changes_labels_not_features() -> None:
    base = generate_day(DAY, 5000)
    changed = generate_day(DAY, 5000, Knobs(concept_drift=1.0))
    assert changed.drop(columns="churned").equals(base.drop(columns="churned"))
    risky = base["support_calls"] >= 3
    assert base.loc[risky, "churned"].mean() > base.loc[~risky, "churned"].mean()
    assert changed.loc[risky, "churned"].mean() < changed.loc[~risky, "churned"].mean()


def test_delayed_labels_and_corruptions() -> None:
    assert generate_day(DAY, 100, Knobs(labels_missing=True))["churned"].isna().all()
    broken = generate_day(DAY, 2000, Knobs(corruption=("out_of_range", "bad_category", "nulls")))
    assert (broken["tenure_months"] == -5).mean() == pytest.approx(0.2, abs=0.03)
    assert (broken["contract"] == "weekly").any()
    assert broken["monthly_charges"].isna().any()
    assert "support_calls" not in generate_day(DAY, 10, Knobs(corruption=("missing_column",)))


def test_bad_knobs_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown columns"):
        Knobs(covariate_drift={"shoe_size": 1.0})
    with pytest.raises(ValueError, match="concept_drift"):
        Knobs(concept_drift=2.0)
