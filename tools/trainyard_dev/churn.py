"""Deterministic synthetic churn data, one raw partition per day (the demo's data source).

The same date and knobs always give the same rows. Knobs reproduce what production data does:

- covariate drift: shift chosen feature distributions (numeric in standard deviations,
  categorical by moving probability mass to the rarest category);
- concept drift: the label depends on the features differently;
- delayed labels: the target is still missing;
- corruption: a broken batch (out-of-range values, unknown categories, nulls, a missing column).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import pandas as pd

    from trainyard.core.settings import Settings
    from trainyard.core.spec import PipelineSpec

Corruption = Literal["out_of_range", "bad_category", "nulls", "missing_column"]

NUMERIC_FEATURES = (
    "tenure_months",
    "monthly_charges",
    "total_charges",
    "support_calls",
    "data_usage_gb",
    "days_since_last_login",
)
CATEGORIES: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "contract": (("month_to_month", "one_year", "two_year"), (0.55, 0.25, 0.20)),
    "payment_method": (
        ("electronic_check", "mailed_check", "bank_transfer", "credit_card"),
        (0.35, 0.2, 0.25, 0.2),
    ),
    "internet_service": (("dsl", "fiber_optic", "none"), (0.4, 0.45, 0.15)),
    "region": (("north", "south", "east", "west"), (0.25, 0.25, 0.25, 0.25)),
}
TARGET = "churned"


@dataclass(frozen=True)
class Knobs:
    """How a day's data departs from the stable baseline.

    Attributes:
        covariate_drift: Feature -> strength. Numeric features shift by that many standard
            deviations; categorical features move that share of mass to their rarest category.
        concept_drift: 0 (none) to 1 (the label follows a different rule entirely).
        labels_missing: The target is null (labels not yet arrived).
        corruption: Kinds of damage to apply to the batch.
    """

    covariate_drift: dict[str, float] = field(default_factory=dict)
    concept_drift: float = 0.0
    labels_missing: bool = False
    corruption: tuple[Corruption, ...] = ()

    def __post_init__(self) -> None:
        known = set(NUMERIC_FEATURES) | set(CATEGORIES)
        unknown = sorted(set(self.covariate_drift) - known)
        if unknown:
            raise ValueError(
                f"covariate_drift names unknown columns {unknown}; known: {sorted(known)}"
            )
        if not 0.0 <= self.concept_drift <= 1.0:
            raise ValueError(f"concept_drift must be within [0, 1], got {self.concept_drift}")


def _seed(day: date, seed: int) -> int:
    digest = hashlib.sha256(f"churn:{seed}:{day.isoformat()}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def generate_day(day: date, rows: int, knobs: Knobs | None = None, seed: int = 0) -> pd.DataFrame:
    """Generate one day's customers.

    Args:
        day: The partition date; it seeds the generator.
        rows: Number of rows.
        knobs: Departures from the baseline (default: none).
        seed: Base seed, to get a different but still reproducible world.

    Returns:
        A frame with customer_id, event_date, the features and ``churned``.
    """
    import numpy as np
    import pandas as pd

    knobs = knobs or Knobs()
    rng = np.random.default_rng(_seed(day, seed))
    shift = knobs.covariate_drift

    tenure = np.clip(rng.gamma(1.6, 16.0, rows) + 12 * shift.get("tenure_months", 0), 0, 72)
    tenure = np.round(tenure).astype("int64")
    monthly = np.clip(rng.normal(65 + 25 * shift.get("monthly_charges", 0), 25, rows), 18, 130)
    total = np.round(tenure * monthly * rng.uniform(0.9, 1.1, rows), 2)
    total = total * (1 + shift.get("total_charges", 0))
    calls = rng.poisson(1.5 + 1.5 * shift.get("support_calls", 0), rows).astype("int64")
    usage = rng.gamma(2.0, 40.0 * (1 + shift.get("data_usage_gb", 0)), rows)
    login = rng.exponential(10.0 * (1 + shift.get("days_since_last_login", 0)), rows)

    frame = pd.DataFrame(
        {
            "customer_id": [f"C{day:%Y%m%d}-{i:06d}" for i in range(rows)],
            "event_date": pd.Timestamp(day),
            "tenure_months": tenure,
            "monthly_charges": np.round(monthly, 2),
            "total_charges": total,
            "support_calls": calls,
            "data_usage_gb": np.round(usage, 3),
            "days_since_last_login": np.round(login, 2),
        }
    )
    for column, (values, weights) in CATEGORIES.items():
        probabilities = np.array(weights)
        moved = min(max(shift.get(column, 0.0), 0.0), 1.0)
        if moved:
            rarest = int(np.argmin(probabilities))
            probabilities = probabilities * (1 - moved)
            probabilities[rarest] += moved
        frame[column] = rng.choice(np.array(values, dtype=object), size=rows, p=probabilities)

    stable = (
        -1.6
        + 1.3 * (frame["contract"] == "month_to_month")
        - 0.9 * (frame["contract"] == "two_year")
        + 0.45 * frame["support_calls"]
        - 0.045 * frame["tenure_months"]
        + 0.02 * (frame["monthly_charges"] - 65)
        + 0.6 * (frame["internet_service"] == "fiber_optic")
        + 0.5 * (frame["payment_method"] == "electronic_check")
        + 0.03 * frame["days_since_last_login"]
    )
    changed = (
        -0.8
        + 0.05 * frame["tenure_months"]
        - 0.03 * (frame["monthly_charges"] - 65)
        - 0.5 * frame["support_calls"]
        + 1.0 * (frame["region"] == "south")
    )
    logit = (1 - knobs.concept_drift) * stable + knobs.concept_drift * changed
    churn = rng.uniform(size=rows) < 1 / (1 + np.exp(-logit.to_numpy(dtype=float)))
    frame[TARGET] = pd.array(churn.astype("int64"), dtype="Int64")
    if knobs.labels_missing:
        frame[TARGET] = pd.array([None] * rows, dtype="Int64")
    return _corrupt(frame, knobs.corruption, rng)


def _corrupt(frame: pd.DataFrame, kinds: tuple[Corruption, ...], rng) -> pd.DataFrame:
    if not kinds:
        return frame
    frame = frame.copy()
    damaged = rng.uniform(size=len(frame)) < 0.2
    for kind in kinds:
        if kind == "out_of_range":
            frame.loc[damaged, "tenure_months"] = -5
        elif kind == "bad_category":
            frame.loc[damaged, "contract"] = "weekly"
        elif kind == "nulls":
            frame["monthly_charges"] = frame["monthly_charges"].mask(damaged)
        elif kind == "missing_column":
            frame = frame.drop(columns=["support_calls"])
        else:
            raise ValueError(f"unknown corruption {kind!r}")
    return frame


def partition_uri(bucket: str, prefix: str, day: date) -> str:
    """Where one day's raw partition file lives."""
    return f"s3://{bucket}/{prefix.strip('/')}/date={day:%Y-%m-%d}/part-0000.parquet"


def land_days(
    settings: Settings,
    start: date,
    end: date,
    rows_per_day: int,
    knobs: Knobs | None = None,
    prefix: str = "churn",
    seed: int = 0,
) -> list[str]:
    """Generate and write one partition per day from ``start`` to ``end`` inclusive.

    Writing the same day with the same knobs again rewrites identical bytes.

    Returns:
        The URIs written.
    """
    from trainyard.core import storage

    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    storage.ensure_buckets(settings, [settings.raw_bucket])
    written = []
    day = start
    while day <= end:
        uri = partition_uri(settings.raw_bucket, prefix, day)
        frame = generate_day(day, rows_per_day, knobs, seed)
        storage.put_bytes(settings, uri, storage.parquet_bytes(frame))
        written.append(uri)
        day += timedelta(days=1)
    return written


def register_model(spec: PipelineSpec, days: list[date], rows_per_day: int = 400) -> str:
    """Fit the spec's pipeline on generated churn days and register a version as training does.

    For tests and benchmarks that need registered versions in seconds, without Airflow, GX or
    the gate (the model is logged with a signature, an input example and skops).

    Args:
        spec: A churn-like pipeline; its registered model name is used.
        days: The generated days to fit on (different days give a different model).
        rows_per_day: Rows generated per day.

    Returns:
        The new version.
    """
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from trainyard.training.preflight import trusted_types
    from trainyard.training.steps import fit

    frame = pd.concat([generate_day(day, rows_per_day) for day in days], ignore_index=True)
    fitted = fit(spec, frame)
    example = fitted.data.x_train.head(5)
    mlflow.set_experiment(f"{spec.name}-generated")
    with mlflow.start_run(run_name=f"generated {days[0]}..{days[-1]}"):
        info = mlflow.sklearn.log_model(
            fitted.model,
            name="model",
            signature=infer_signature(example, fitted.model.predict(example)),
            input_example=example,
            pip_requirements=["scikit-learn", "pandas"],
            skops_trusted_types=trusted_types(spec, fitted.model),
            registered_model_name=spec.registered_model_name,
        )
    return str(info.registered_model_version)
