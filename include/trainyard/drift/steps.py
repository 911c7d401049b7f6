"""The drift check's steps: the champion's training snapshot (reference) against the newest raw
data (current), compared by Evidently (:mod:`trainyard.drift.evidently`).

Every check leaves, under a key derived only from its inputs (reference snapshot, current
snapshot, drift settings, Evidently version), so that re-running it changes nothing::

    s3://<artifacts>/drift/<pipeline>/ref-<sha16>/cur-<sha16>/cfg-<sha12>/summary.json
    s3://<artifacts>/drift/<pipeline>/ref-<sha16>/cur-<sha16>/cfg-<sha12>/report.html

and one MLflow run in the experiment ``<pipeline>-monitoring`` per Airflow (or CLI) run.
:func:`compare` is pure; :func:`check_drift` and :func:`log_check` add the storage around it.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from trainyard.core.errors import DeterministicError
from trainyard.core.tracking import NoChampionError
from trainyard.drift.evidently import ColumnDrift, Verdict

if TYPE_CHECKING:
    import pandas as pd

    from trainyard.core.lineage import RunContext
    from trainyard.core.settings import Settings
    from trainyard.core.spec import PipelineSpec
    from trainyard.data.snapshots import SnapshotRef, TrainingWindow

log = logging.getLogger(__name__)


class ReferenceUnavailableError(DeterministicError):
    """The champion does not say which snapshot it was trained on (or that snapshot is gone)."""


class ComparedColumnMissingError(DeterministicError):
    """A snapshot lacks a column the drift check compares (the spec's features changed)."""


class NoCurrentDataError(DeterministicError):
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
    from trainyard.core.tracking import champion_version

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
        trainyard.data.snapshots.WindowError: ``days`` is below 1 or ``window_end`` is after
            ``run_day``.
    """
    from trainyard.data.snapshots import TrainingWindow

    if window_end is None:
        candidates = [day for day in available if day <= run_day]
        if not candidates:
            raise NoCurrentDataError(
                f"no raw partition on or before {run_day}; nothing to check for drift"
            )
        window_end = candidates[-1]
    return TrainingWindow.ending(window_end, days, run_day)


def current_window(
    spec: PipelineSpec,
    settings: Settings,
    run_day: date,
    window_end: date | None = None,
    window_days: int | None = None,
) -> TrainingWindow:
    """Which raw data is "current" for a drift check of ``spec``.

    Partitioned files: the window ends with the newest partition on or before the run day. A
    windowed SQL query cannot be listed without running it, so its window ends on the run day;
    the query then gets the window through its bound parameters, as in training.

    Args:
        spec: The pipeline (partitioned files or a windowed query; ``drift.window_days``).
        settings: Buckets and endpoint.
        run_day: The day the check is for.
        window_end: Last day to include (default: the newest partition on or before run_day;
            the run day for a query).
        window_days: Days in the window (default: the spec's ``drift.window_days``).

    Returns:
        The inclusive window.

    Raises:
        NoCurrentDataError: The spec's source is static (nothing new arrives), or no partition
            exists on or before ``run_day``.
        trainyard.data.snapshots.WindowError: ``window_days`` is below 1, or ``window_end`` is
            after ``run_day``.
    """
    from trainyard.data.sources import partition_dates, raw_bucket

    source = spec.source
    if not source.windowed:
        raise NoCurrentDataError(
            f"pipeline {spec.name!r} reads a static dataset; nothing new can drift"
        )
    days = spec.drift.window_days if window_days is None else window_days
    if source.kind == "sql":
        return newest_window([], run_day, days, window_end or run_day)
    available = (
        []
        if window_end
        else partition_dates(settings, raw_bucket(spec, settings), source.prefix, source.layout)
    )
    return newest_window(available, run_day, days, window_end)


def _compared_columns(
    settings: Settings, uri: str, sha256: str, columns: list[str], side: str
) -> pd.DataFrame:
    """Only the columns the check compares, of a snapshot checked byte for byte.

    The other columns (id, target, features left out of ``drift.columns``) are never read: the
    sample is drawn from row positions, so it picks the same rows either way.

    Args:
        settings: Endpoint and credentials.
        uri: The snapshot.
        sha256: Its recorded hash.
        columns: The compared columns.
        side: "the current snapshot" or which champion's snapshot, for the error.

    Raises:
        SnapshotUnavailableError: The snapshot is gone or its bytes changed.
        ComparedColumnMissingError: It lacks a compared column.
    """
    from trainyard.data.snapshots import open_snapshot

    with open_snapshot(settings, uri, sha256) as snapshot:
        missing = [column for column in columns if column not in snapshot.columns]
        if missing:
            raise ComparedColumnMissingError(
                f"{side} has no column {', '.join(map(repr, missing))} that the drift check "
                f"compares (the spec's features changed since it was written): {uri}"
            )
        return snapshot.read(columns)


def _load_reference(
    settings: Settings, reference: ReferenceRef, columns: list[str]
) -> pd.DataFrame:
    """The compared columns of the champion's snapshot, byte for byte the one it was trained on.

    Raises:
        ReferenceUnavailableError: The snapshot is gone or its bytes changed.
        ComparedColumnMissingError: It lacks a compared column.
    """
    from trainyard.data.snapshots import SnapshotUnavailableError

    try:
        return _compared_columns(
            settings,
            reference.snapshot_uri,
            reference.snapshot_sha256,
            columns,
            f"the snapshot champion {reference.model_name} v{reference.model_version} was "
            "trained on",
        )
    except SnapshotUnavailableError as error:
        raise ReferenceUnavailableError(
            f"the data champion {reference.model_name} v{reference.model_version} was trained "
            f"on is unavailable: {error}"
        ) from None


def compare(
    spec: PipelineSpec,
    reference: ReferenceRef,
    current: SnapshotRef,
    reference_frame: pd.DataFrame,
    current_frame: pd.DataFrame,
    summary_uri: str,
    report_uri: str,
) -> tuple[DriftSummary, Any | None]:
    """Run the check on data in memory: sample, count rows, run Evidently, summarise (no I/O).

    Args:
        spec: The pipeline's drift settings.
        reference: The champion and its snapshot.
        current: The current snapshot.
        reference_frame: The reference rows.
        current_frame: The current rows.
        summary_uri: Where the summary will be stored (recorded in it).
        report_uri: Where the HTML report will be stored (recorded when there is one).

    Returns:
        The summary, and Evidently's snapshot to render as HTML (None for insufficient data).
    """
    from trainyard.drift import evidently

    drift = spec.drift
    config = evidently.check_settings(spec)
    version = evidently.evidently_version()
    reference_sample = evidently.sample_rows(reference_frame, drift.sample_size, drift.sample_seed)
    current_sample = evidently.sample_rows(current_frame, drift.sample_size, drift.sample_seed)
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
        "settings_sha256": evidently.settings_sha256(config, version),
        "evidently_version": version,
        "summary_uri": summary_uri,
        "column_count": len(config["preset"]["columns"]),
    }
    too_few = evidently.insufficient_rows(len(reference_frame), len(current_frame), drift.min_rows)
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
        return summary, None
    result, snapshot = evidently.run_evidently(spec, reference_sample, current_sample)
    summary = DriftSummary(
        verdict=result.verdict,
        message=evidently.verdict_message(result, drift.drift_share),
        drift_share=result.share,
        drifted_count=result.drifted_count,
        columns=result.columns,
        report_uri=report_uri,
        **common,
    )
    return summary, snapshot


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

    from trainyard.core import storage
    from trainyard.drift import evidently
    from trainyard.drift.ledger import result_prefix

    config_sha = evidently.settings_sha256(
        evidently.check_settings(spec), evidently.evidently_version()
    )
    prefix = result_prefix(
        settings, spec.name, reference.snapshot_sha256, current.sha256, config_sha
    )
    summary_uri = f"{prefix}/summary.json"
    if storage.exists(settings, summary_uri):
        log.info("this check was done before; reusing %s", summary_uri)
        return DriftSummary.model_validate_json(storage.get_bytes(settings, summary_uri))

    numeric, categorical = evidently.drift_columns(spec)
    columns = numeric + categorical
    if current_frame is None:
        current_frame = _compared_columns(
            settings, current.uri, current.sha256, columns, "the current snapshot"
        )
    summary, report = compare(
        spec,
        reference,
        current,
        _load_reference(settings, reference, columns),
        current_frame,
        summary_uri,
        f"{prefix}/report.html",
    )
    if report is not None and summary.report_uri:
        with tempfile.TemporaryDirectory(prefix="trainyard-drift-") as workdir:
            html = Path(workdir) / "report.html"
            report.save_html(str(html))
            storage.put_bytes(
                settings, summary.report_uri, html.read_bytes(), "text/html; charset=utf-8"
            )
    # Written last: its presence marks the check as complete.
    storage.put_bytes(
        settings, summary_uri, summary.model_dump_json(indent=1).encode(), "application/json"
    )
    return summary


# ---- MLflow -----------------------------------------------------------------------------------


def monitoring_tags(spec: PipelineSpec, summary: DriftSummary, context: RunContext) -> dict:
    """Tags of a drift check's MLflow run (pure)."""
    return {
        "pipeline": spec.name,
        **context.identity(),
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


def monitoring_metrics(summary: DriftSummary) -> dict[str, float]:
    """Metrics of a drift check's MLflow run: counts, share, each column's score (pure)."""
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
    return metrics


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
    from trainyard.core.tracking import log_check_files, log_monitoring_run

    return log_monitoring_run(
        spec.monitoring_experiment,
        f"{context.dag_id}/{context.run_id}",
        monitoring_tags(spec, summary, context),
        {
            "drift_share_threshold": summary.drift_share_threshold,
            "min_rows": summary.min_rows,
            "sample_size": spec.drift.sample_size,
            "columns": ",".join(summary.settings["preset"]["columns"]),
        },
        monitoring_metrics(summary),
        lambda: log_check_files(
            settings, "drift", summary.model_dump(mode="json"), summary.report_uri
        ),
    )


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

    The same steps as the drift DAG's tasks.

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
        trainyard.data.validation.ValidationFailed: The current batch failed data validation.
    """
    from trainyard.data.sources import ingest
    from trainyard.data.validation import validate

    reference = champion_reference(spec)
    window = current_window(spec, settings, run_day, window_end, window_days)
    snapshot = ingest(spec, settings, window)
    validate(spec, settings, snapshot)
    summary = check_drift(spec, settings, reference, snapshot)
    return summary, log_check(spec, settings, summary, context)
