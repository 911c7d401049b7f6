"""Evidently 0.7: the drift check's settings, running ``DataDriftPreset`` and reading its result.

Everything here works on data in memory and touches no storage; Evidently itself is imported
only inside :func:`run_evidently` (it costs seconds to import).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from trainyard.core.errors import DeterministicError

if TYPE_CHECKING:
    import pandas as pd

    from trainyard.core.spec import PipelineSpec

Verdict = Literal["drift", "no_drift", "insufficient_data"]


class UnreadableReportError(DeterministicError, ValueError):
    """Evidently's report lacks the metrics or tests the verdict is read from, or they disagree."""


#: Evidently test statuses that mean "this column drifted".
_DRIFTED_STATUSES = frozenset({"FAIL", "WARNING"})


class ColumnDrift(BaseModel):
    """Evidently's verdict on one column."""

    model_config = ConfigDict(frozen=True)

    column: str
    method: str
    score: float
    threshold: float
    drifted: bool


class DriftResult(BaseModel):
    """What the Evidently report says, parsed; no I/O involved."""

    model_config = ConfigDict(frozen=True)

    verdict: Literal["drift", "no_drift"]
    share: float
    drifted_count: int
    columns: list[ColumnDrift]

    @property
    def drifted_columns(self) -> list[str]:
        """Names of the drifted columns, in report order."""
        return [c.column for c in self.columns if c.drifted]


def drift_columns(spec: PipelineSpec) -> tuple[list[str], list[str]]:
    """The numeric and the categorical columns the check compares (default: all features)."""
    schema = spec.schema_
    chosen = spec.drift.columns or schema.features
    numeric = [c for c in chosen if c in schema.numeric_features]
    categorical = [c for c in chosen if c in schema.categorical_features]
    return numeric, categorical


def preset_settings(spec: PipelineSpec) -> dict[str, Any]:
    """Keyword arguments of ``DataDriftPreset`` from the spec's drift section.

    Unset options are left out, so Evidently's defaults (which depend on the reference size)
    apply to them.
    """
    drift = spec.drift
    numeric, categorical = drift_columns(spec)
    settings: dict[str, Any] = {"columns": numeric + categorical, "drift_share": drift.drift_share}
    if drift.method:
        settings["method"] = drift.method
    if drift.threshold is not None:
        settings["threshold"] = drift.threshold
    if drift.per_column_method:
        settings["per_column_method"] = dict(drift.per_column_method)
    if drift.per_column_threshold:
        settings["per_column_threshold"] = dict(drift.per_column_threshold)
    return settings


def check_settings(spec: PipelineSpec) -> dict[str, Any]:
    """Everything that determines a check's result besides the two snapshots."""
    numeric, categorical = drift_columns(spec)
    return {
        "preset": preset_settings(spec),
        "numerical_columns": numeric,
        "categorical_columns": categorical,
        "min_rows": spec.drift.min_rows,
        "sample_size": spec.drift.sample_size,
        "sample_seed": spec.drift.sample_seed,
    }


def settings_sha256(settings: dict[str, Any], evidently_version: str) -> str:
    """Hash of the check settings and the Evidently version (part of the report's key)."""
    canonical = json.dumps({"settings": settings, "evidently": evidently_version}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def sample_rows(frame: pd.DataFrame, cap: int | None, seed: int) -> pd.DataFrame:
    """At most ``cap`` rows, drawn without replacement with a fixed seed (all rows if fewer).

    Args:
        frame: The data.
        cap: Maximum row count; None keeps every row.
        seed: Random seed, so the same data gives the same sample.

    Returns:
        The frame itself or a sample of it.
    """
    if cap is None or len(frame) <= cap:
        return frame
    return frame.sample(n=cap, random_state=seed)


def insufficient_rows(reference_rows: int, current_rows: int, min_rows: int) -> str | None:
    """Why there are too few rows for a verdict, or None when both sides have enough."""
    short = [
        f"{side} has {rows} rows"
        for side, rows in (("current", current_rows), ("reference", reference_rows))
        if rows < min_rows
    ]
    if not short:
        return None
    return (
        f"insufficient data: {' and '.join(short)}, fewer than min_rows={min_rows}; "
        "no verdict and no retrain"
    )


def parse_snapshot(report: dict[str, Any], drift_share: float) -> DriftResult:
    """Read the per-column and dataset drift out of an Evidently 0.7 ``snapshot.dict()``.

    The report must come from ``Report([DataDriftPreset(...)], include_tests=True)``: a column's
    ``drifted`` flag is Evidently's own per-column test outcome (FAIL means drift), so the
    direction of each method (p-value: drift below the threshold; distance: drift at or above
    it) is Evidently's, not re-implemented here. The dataset drifts when the share of drifted
    columns is at least ``drift_share`` (Evidently has no dataset-level boolean).

    Args:
        report: ``snapshot.dict()``.
        drift_share: The spec's dataset-level threshold.

    Returns:
        The parsed result.

    Raises:
        UnreadableReportError: The report lacks the expected metrics or tests, or they disagree.
    """
    metrics = report.get("metrics") or []
    counts = [m for m in metrics if _kind(m.get("config")) == "DriftedColumnsCount"]
    if len(counts) != 1:
        raise UnreadableReportError(f"expected one DriftedColumnsCount metric, found {len(counts)}")
    count_value = counts[0]["value"]
    statuses: dict[str, str] = {}
    for test in report.get("tests") or []:
        params = (test.get("metric_config") or {}).get("params") or {}
        if _kind(params) == "ValueDrift":
            statuses[params["column"]] = _status(test.get("status"))
    columns = []
    for metric in metrics:
        config = metric.get("config") or {}
        if _kind(config) != "ValueDrift":
            continue
        column = config["column"]
        if column not in statuses:
            raise UnreadableReportError(
                f"the report has no drift test for column {column!r}; "
                "run the Report with include_tests=True"
            )
        if statuses[column] == "ERROR":
            raise UnreadableReportError(f"Evidently could not test column {column!r} for drift")
        columns.append(
            ColumnDrift(
                column=column,
                method=str(config.get("method")),
                score=float(metric["value"]),
                threshold=float(config["threshold"]),
                drifted=statuses[column] in _DRIFTED_STATUSES,
            )
        )
    drifted = sum(c.drifted for c in columns)
    if int(count_value["count"]) != drifted:
        raise UnreadableReportError(
            f"Evidently counts {count_value['count']} drifted columns but its per-column tests "
            f"flag {drifted}"
        )
    share = float(count_value["share"])
    return DriftResult(
        verdict="drift" if share >= drift_share else "no_drift",
        share=share,
        drifted_count=drifted,
        columns=columns,
    )


def _status(value: Any) -> str:
    """``FAIL`` from ``"FAIL"``, ``TestStatus.FAIL`` or its ``str()`` (``"TestStatus.FAIL"``)."""
    return str(getattr(value, "value", value) or "").rsplit(".", 1)[-1].upper()


def _kind(config: dict[str, Any] | None) -> str:
    return str((config or {}).get("type", "")).rsplit(":", 1)[-1]


def evidently_version() -> str:
    """The installed Evidently version (part of every report's key)."""
    from importlib.metadata import version

    return version("evidently")


def run_evidently(
    spec: PipelineSpec, reference: pd.DataFrame, current: pd.DataFrame
) -> tuple[DriftResult, Any]:
    """Run ``DataDriftPreset`` on the spec's columns (Evidently is imported here).

    Args:
        spec: The pipeline (columns, thresholds, methods).
        reference: Reference rows (already sampled if wanted).
        current: Current rows (already sampled if wanted).

    Returns:
        The parsed result and the Evidently snapshot (for ``save_html``).
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    numeric, categorical = drift_columns(spec)
    columns = numeric + categorical
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    report = Report([DataDriftPreset(**preset_settings(spec))], include_tests=True)
    snapshot = report.run(
        current_data=Dataset.from_pandas(current[columns], data_definition=definition),
        reference_data=Dataset.from_pandas(reference[columns], data_definition=definition),
    )
    return parse_snapshot(snapshot.dict(), spec.drift.drift_share), snapshot


def verdict_message(result: DriftResult, drift_share: float) -> str:
    """One line: which columns drifted and how that compares with ``drift_share``."""
    total = len(result.columns)
    drifted = ", ".join(result.drifted_columns) or "none"
    relation = ">=" if result.verdict == "drift" else "<"
    return (
        f"{result.drifted_count} of {total} columns drifted ({drifted}); share "
        f"{result.share:.2f} {relation} drift_share {drift_share:g}: "
        + ("DATASET DRIFT" if result.verdict == "drift" else "no dataset drift")
    )
