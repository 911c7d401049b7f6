"""Drift checks: the champion's training snapshot (reference) against the newest raw data (current).

The check is Evidently 0.7's ``DataDriftPreset`` configured from the spec's ``drift`` section.
Evidently, pandas and MLflow are imported inside the functions that need them, so the DAG files
that import this module stay cheap to parse.

Every check leaves, under a key derived only from its inputs (reference snapshot, current
snapshot, drift settings, Evidently version), so that re-running it changes nothing::

    s3://<artifacts>/drift/<pipeline>/ref-<sha16>/cur-<sha16>/cfg-<sha12>/summary.json
    s3://<artifacts>/drift/<pipeline>/ref-<sha16>/cur-<sha16>/cfg-<sha12>/report.html

and one MLflow run in the experiment ``<pipeline>-monitoring`` per Airflow (or CLI) run.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import date
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import pandas as pd

    from trainyard.ingest import SnapshotRef, TrainingWindow
    from trainyard.lineage import RunContext
    from trainyard.settings import Settings
    from trainyard.spec import PipelineSpec

log = logging.getLogger(__name__)

Verdict = Literal["drift", "no_drift", "insufficient_data"]
#: Evidently test statuses that mean "this column drifted".
_DRIFTED_STATUSES = frozenset({"FAIL", "WARNING"})


class NoChampionError(LookupError):
    """The pipeline has no champion yet, so there is no reference to compare against."""


class ReferenceUnavailableError(RuntimeError):
    """The champion does not say which snapshot it was trained on (or that snapshot is gone)."""


class NoCurrentDataError(RuntimeError):
    """No raw partition exists on or before the day the check is for."""


class ReferenceRef(BaseModel):
    """The champion and the snapshot it was trained on (from its lineage tags)."""

    model_config = ConfigDict(frozen=True)

    model_name: str
    model_version: str
    snapshot_uri: str
    snapshot_sha256: str
    window_start: date | None = None
    window_end: date | None = None


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


class DataSide(BaseModel):
    """One side of the comparison: which snapshot, how many rows, how many were compared."""

    model_config = ConfigDict(frozen=True)

    snapshot_uri: str
    snapshot_sha256: str
    rows: int
    compared_rows: int
    window_start: date | None = None
    window_end: date | None = None


class DriftSummary(BaseModel):
    """The JSON summary stored beside the HTML report (and what the CLI prints)."""

    model_config = ConfigDict(frozen=True)

    pipeline: str
    verdict: Verdict
    message: str
    drift_share: float | None
    drift_share_threshold: float
    drifted_count: int
    column_count: int
    columns: list[ColumnDrift]
    reference: DataSide
    current: DataSide
    reference_model: str
    min_rows: int
    settings: dict[str, Any]
    settings_sha256: str
    evidently_version: str
    summary_uri: str
    report_uri: str | None

    @property
    def drifted_columns(self) -> list[str]:
        """Names of the drifted columns."""
        return [c.column for c in self.columns if c.drifted]

    def describe(self) -> str:
        """Multi-line, human-readable summary."""
        lines = [f"drift check {self.pipeline}: {self.verdict.replace('_', ' ').upper()}"]
        lines.append(f"  {self.message}")
        lines.append(
            f"  reference: {self.reference_model}, {self.reference.rows} rows "
            f"({self.reference.compared_rows} compared) {self.reference.snapshot_uri}"
        )
        lines.append(
            f"  current  : {self.current.window_start} .. {self.current.window_end}, "
            f"{self.current.rows} rows ({self.current.compared_rows} compared) "
            f"{self.current.snapshot_uri}"
        )
        for column in self.columns:
            mark = "DRIFT" if column.drifted else "ok"
            lines.append(
                f"    {column.column:24} {mark:5} {column.method}: score {column.score:.4g} "
                f"(threshold {column.threshold:g})"
            )
        lines.append(f"  summary: {self.summary_uri}")
        if self.report_uri:
            lines.append(f"  report : {self.report_uri}")
        return "\n".join(lines)

    def reference_for_xcom(self) -> dict[str, Any]:
        """The small part of the summary that travels through XCom (no per-column details)."""
        return {
            "pipeline": self.pipeline,
            "verdict": self.verdict,
            "message": self.message,
            "drift_share": self.drift_share,
            "drift_share_threshold": self.drift_share_threshold,
            "drifted_columns": self.drifted_columns,
            "column_count": self.column_count,
            "summary_uri": self.summary_uri,
            "report_uri": self.report_uri,
            "current_window_start": _iso(self.current.window_start),
            "current_window_end": _iso(self.current.window_end),
            "current_rows": self.current.rows,
            "reference_model": self.reference_model,
        }


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


# ---- reference and current data ------------------------------------------------------------


def champion_reference(spec: PipelineSpec) -> ReferenceRef:
    """The snapshot the current champion was trained on, from its lineage tags.

    Args:
        spec: The pipeline (names the registered model).

    Returns:
        The champion's version and snapshot.

    Raises:
        NoChampionError: No version holds the ``champion`` alias.
        ReferenceUnavailableError: The champion lacks the ``snapshot_uri``/``snapshot_sha256`` tags.
    """
    from trainyard.training import champion_version

    name = spec.registered_model_name
    champion = champion_version(name)
    if champion is None:
        raise NoChampionError(
            f"no champion of model {name!r} yet: there is no reference to compare against, "
            f"so no drift verdict (train {spec.training_dag_id} first)"
        )
    tags = champion.tags or {}
    missing = [tag for tag in ("snapshot_uri", "snapshot_sha256") if not tags.get(tag)]
    if missing:
        raise ReferenceUnavailableError(
            f"champion {name} v{champion.version} has no {' / '.join(missing)} lineage tag, so "
            "the data it was trained on is unknown; retrain it through trainyard to fix this"
        )
    return ReferenceRef(
        model_name=name,
        model_version=str(champion.version),
        snapshot_uri=tags["snapshot_uri"],
        snapshot_sha256=tags["snapshot_sha256"],
        window_start=date.fromisoformat(tags["window_start"]) if tags.get("window_start") else None,
        window_end=date.fromisoformat(tags["window_end"]) if tags.get("window_end") else None,
    )


def load_reference(settings: Settings, reference: ReferenceRef) -> pd.DataFrame:
    """Read the champion's snapshot, checking its bytes still hash to the recorded sha256.

    Raises:
        ReferenceUnavailableError: The snapshot is missing or its bytes changed.
    """
    import io

    import pyarrow.parquet as pq

    from trainyard import storage

    if not storage.exists(settings, reference.snapshot_uri):
        raise ReferenceUnavailableError(
            f"the champion's snapshot {reference.snapshot_uri} does not exist any more"
        )
    body = storage.get_bytes(settings, reference.snapshot_uri)
    actual = hashlib.sha256(body).hexdigest()
    if actual != reference.snapshot_sha256:
        raise ReferenceUnavailableError(
            f"the champion's snapshot {reference.snapshot_uri} has sha256 {actual}, "
            f"but the champion was trained on {reference.snapshot_sha256}"
        )
    return pq.read_table(io.BytesIO(body)).to_pandas()


def partition_dates(settings: Settings, bucket: str, prefix: str) -> list[date]:
    """Dates of the ``<prefix>/date=YYYY-MM-DD/`` partitions that exist, oldest first.

    Lists "folders" only (S3 delimiter listing), not every file.
    """
    from trainyard import storage

    paginator = storage.client(settings).get_paginator("list_objects_v2")
    found: list[date] = []
    root = f"{prefix.strip('/')}/date="
    for page in paginator.paginate(Bucket=bucket, Prefix=root, Delimiter="/"):
        for entry in page.get("CommonPrefixes", []):
            value = entry["Prefix"][len(root) :].rstrip("/")
            try:
                found.append(date.fromisoformat(value))
            except ValueError:
                log.warning("ignoring partition folder with a malformed date: %s", entry["Prefix"])
    return sorted(found)


def newest_window(
    available: list[date], run_day: date, days: int, window_end: date | None = None
) -> TrainingWindow:
    """The current window: ``days`` days ending at ``window_end`` or the newest partition.

    Args:
        available: Partition dates that exist.
        run_day: The day the check is for; partitions after it are ignored.
        days: Window length in days.
        window_end: An explicit last day (then ``available`` is not consulted).

    Returns:
        The inclusive window.

    Raises:
        NoCurrentDataError: No partition on or before ``run_day``.
    """
    from trainyard.ingest import TrainingWindow

    if window_end is None:
        candidates = [day for day in available if day <= run_day]
        if not candidates:
            raise NoCurrentDataError(
                f"no raw partition on or before {run_day}; nothing to check for drift"
            )
        window_end = candidates[-1]
    return TrainingWindow.ending(window_end, days)


def current_window(
    spec: PipelineSpec,
    settings: Settings,
    run_day: date,
    window_end: date | None = None,
    window_days: int | None = None,
) -> TrainingWindow:
    """Which raw partitions are "current" for a drift check of ``spec``.

    Args:
        spec: The pipeline (partitioned source; ``drift.window_days``).
        settings: Buckets and endpoint.
        run_day: The day the check is for.
        window_end: Last day to include (default: the newest partition on or before run_day).
        window_days: Days in the window (default: the spec's ``drift.window_days``).

    Returns:
        The inclusive window.

    Raises:
        ValueError: The spec's source is not partitioned, or ``window_days`` is below 1.
        NoCurrentDataError: No partition exists on or before ``run_day``.
    """
    if spec.source.kind != "partitioned_parquet":
        raise ValueError(f"pipeline {spec.name!r} reads a static dataset; nothing new can drift")
    available = [] if window_end else _partitions_of(spec, settings)
    return newest_window(available, run_day, window_days or spec.drift.window_days, window_end)


def _partitions_of(spec: PipelineSpec, settings: Settings) -> list[date]:
    bucket = spec.source.bucket or settings.raw_bucket
    return partition_dates(settings, bucket, spec.source.prefix)


# ---- the Evidently check ----------------------------------------------------------------------


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
        ValueError: The report lacks the expected metrics or tests, or they disagree.
    """
    metrics = report.get("metrics") or []
    counts = [m for m in metrics if _kind(m.get("config")) == "DriftedColumnsCount"]
    if len(counts) != 1:
        raise ValueError(f"expected one DriftedColumnsCount metric, found {len(counts)}")
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
            raise ValueError(
                f"the report has no drift test for column {column!r}; "
                "run the Report with include_tests=True"
            )
        if statuses[column] == "ERROR":
            raise ValueError(f"Evidently could not test column {column!r} for drift")
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
        raise ValueError(
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


def result_prefix(
    settings: Settings, pipeline: str, reference_sha: str, current_sha: str, config_sha: str
) -> str:
    """Deterministic S3 prefix of one check's outputs."""
    return (
        f"s3://{settings.artifacts_bucket}/drift/{pipeline}/ref-{reference_sha[:16]}/"
        f"cur-{current_sha[:16]}/cfg-{config_sha[:12]}"
    )


def check_drift(
    spec: PipelineSpec,
    settings: Settings,
    reference: ReferenceRef,
    current: SnapshotRef,
    current_frame: pd.DataFrame | None = None,
) -> DriftSummary:
    """Compare the current snapshot with the champion's; store the summary and HTML report on S3.

    A check whose summary already exists (same snapshots, settings and Evidently version) is not
    run again: the stored summary is returned.

    Args:
        spec: The pipeline.
        settings: Buckets and endpoint.
        reference: The champion's snapshot.
        current: The validated current snapshot.
        current_frame: Its rows if already in memory.

    Returns:
        The summary: ``drift``, ``no_drift`` or ``insufficient_data``.
    """
    import tempfile
    from pathlib import Path

    from trainyard import storage
    from trainyard.ingest import load_snapshot

    config = check_settings(spec)
    version = evidently_version()
    config_sha = settings_sha256(config, version)
    prefix = result_prefix(
        settings, spec.name, reference.snapshot_sha256, current.sha256, config_sha
    )
    summary_uri = f"{prefix}/summary.json"
    if storage.exists(settings, summary_uri):
        log.info("this check was done before; reusing %s", summary_uri)
        return DriftSummary.model_validate_json(storage.get_bytes(settings, summary_uri))

    reference_frame = load_reference(settings, reference)
    current_frame = current_frame if current_frame is not None else load_snapshot(settings, current)
    drift = spec.drift
    reference_sample = sample_rows(reference_frame, drift.sample_size, drift.sample_seed)
    current_sample = sample_rows(current_frame, drift.sample_size, drift.sample_seed)
    common = {
        "pipeline": spec.name,
        "drift_share_threshold": drift.drift_share,
        "reference": DataSide(
            snapshot_uri=reference.snapshot_uri,
            snapshot_sha256=reference.snapshot_sha256,
            rows=len(reference_frame),
            compared_rows=len(reference_sample),
            window_start=reference.window_start,
            window_end=reference.window_end,
        ),
        "current": DataSide(
            snapshot_uri=current.uri,
            snapshot_sha256=current.sha256,
            rows=len(current_frame),
            compared_rows=len(current_sample),
            window_start=current.window_start,
            window_end=current.window_end,
        ),
        "reference_model": f"{reference.model_name} v{reference.model_version}",
        "min_rows": drift.min_rows,
        "settings": config,
        "settings_sha256": config_sha,
        "evidently_version": version,
        "summary_uri": summary_uri,
        "column_count": len(config["preset"]["columns"]),
    }
    too_few = insufficient_rows(len(reference_frame), len(current_frame), drift.min_rows)
    if too_few:
        summary = DriftSummary(
            verdict="insufficient_data",
            message=too_few,
            drift_share=None,
            drifted_count=0,
            columns=[],
            report_uri=None,
            **common,
        )
    else:
        result, snapshot = run_evidently(spec, reference_sample, current_sample)
        report_uri = f"{prefix}/report.html"
        with tempfile.TemporaryDirectory(prefix="trainyard-drift-") as workdir:
            html = Path(workdir) / "report.html"
            snapshot.save_html(str(html))
            storage.put_bytes(settings, report_uri, html.read_bytes(), "text/html; charset=utf-8")
        summary = DriftSummary(
            verdict=result.verdict,
            message=verdict_message(result, drift.drift_share),
            drift_share=result.share,
            drifted_count=result.drifted_count,
            columns=result.columns,
            report_uri=report_uri,
            **common,
        )
    # Written last: its presence marks the check as complete.
    storage.put_bytes(
        settings, summary_uri, summary.model_dump_json(indent=1).encode(), "application/json"
    )
    return summary


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


# ---- MLflow -----------------------------------------------------------------------------------


def monitoring_experiment(spec: PipelineSpec) -> str:
    """MLflow experiment holding the pipeline's drift checks."""
    return f"{spec.name}-monitoring"


def log_check(
    spec: PipelineSpec, settings: Settings, summary: DriftSummary, context: RunContext
) -> str:
    """Log a check's metrics, summary and HTML report to the monitoring experiment.

    Idempotent: a finished MLflow run of the same Airflow run (or CLI run) is reused.

    Args:
        spec: The pipeline.
        settings: Buckets and endpoint (to copy the HTML report from S3).
        summary: The check's summary.
        context: The Airflow/CLI run doing the check.

    Returns:
        The MLflow run id.
    """
    import tempfile
    from pathlib import Path

    import mlflow
    from mlflow import MlflowClient

    from trainyard import storage

    experiment = mlflow.set_experiment(monitoring_experiment(spec))
    existing = MlflowClient().search_runs(
        [experiment.experiment_id],
        filter_string=(
            f"tags.airflow_run_id = '{context.run_id}' and "
            f"tags.airflow_dag_id = '{context.dag_id}' and "
            f"tags.summary_uri = '{summary.summary_uri}' and attributes.status = 'FINISHED'"
        ),
        max_results=1,
    )
    if existing:
        return existing[0].info.run_id
    tags = {
        "pipeline": spec.name,
        "airflow_dag_id": context.dag_id,
        "airflow_run_id": context.run_id,
        "git_commit": context.git_commit,
        "verdict": summary.verdict,
        "reference_model": summary.reference_model,
        "reference_snapshot_sha256": summary.reference.snapshot_sha256,
        "current_snapshot_sha256": summary.current.snapshot_sha256,
        "current_window": f"{summary.current.window_start}..{summary.current.window_end}",
        "drifted_columns": ",".join(summary.drifted_columns),
        "summary_uri": summary.summary_uri,
        "report_uri": summary.report_uri or "",
        "evidently_version": summary.evidently_version,
    }
    with mlflow.start_run(run_name=f"{context.dag_id}/{context.run_id}", tags=tags) as run:
        mlflow.log_params(
            {
                "drift_share_threshold": summary.drift_share_threshold,
                "min_rows": summary.min_rows,
                "sample_size": spec.drift.sample_size,
                "columns": ",".join(summary.settings["preset"]["columns"]),
            }
        )
        metrics = {
            "drifted_columns": float(summary.drifted_count),
            "column_count": float(summary.column_count),
            "rows_current": float(summary.current.rows),
            "rows_reference": float(summary.reference.rows),
            "dataset_drift": float(summary.verdict == "drift"),
        }
        if summary.drift_share is not None:
            metrics["drift_share"] = summary.drift_share
        metrics.update({f"score.{c.column}": c.score for c in summary.columns})
        mlflow.log_metrics(metrics)
        mlflow.log_dict(summary.model_dump(mode="json"), "drift/summary.json")
        if summary.report_uri:
            with tempfile.TemporaryDirectory(prefix="trainyard-drift-") as workdir:
                html = Path(workdir) / "report.html"
                html.write_bytes(storage.get_bytes(settings, summary.report_uri))
                mlflow.log_artifact(str(html), "drift")
    return run.info.run_id


def mlflow_run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """Browser URL of an MLflow run (artifacts tab)."""
    base = tracking_uri.rstrip("/")
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}/artifacts"


# ---- the whole check in one process (the CLI) ------------------------------------------------


def run_check(
    spec: PipelineSpec,
    settings: Settings,
    run_day: date,
    context: RunContext,
    window_end: date | None = None,
    window_days: int | None = None,
) -> tuple[DriftSummary, str]:
    """Reference, current window, validation, Evidently, S3 and MLflow, without Airflow.

    Args:
        spec: The pipeline.
        settings: Buckets and endpoint.
        run_day: The day the check is for.
        context: Who runs it (for the MLflow run's tags).
        window_end: Last current day (default: newest partition on or before ``run_day``).
        window_days: Days of current data (default: the spec's ``drift.window_days``).

    Returns:
        The summary and the MLflow run id.

    Raises:
        NoChampionError: Nothing to compare against yet.
        trainyard.pipeline.ValidationFailed: The current batch failed data validation.
    """
    from trainyard.ingest import ingest
    from trainyard.pipeline import check_validation
    from trainyard.validation import validate_snapshot

    reference = champion_reference(spec)
    window = current_window(spec, settings, run_day, window_end, window_days)
    snapshot = ingest(spec, settings, window)
    check_validation(validate_snapshot(spec, settings, snapshot))
    summary = check_drift(spec, settings, reference, snapshot)
    return summary, log_check(spec, settings, summary, context)
