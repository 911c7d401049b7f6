"""Airflow adapters of the scoring steps: XCom dicts in, one step, XCom dicts out.

Like the training and drift adapters: each calls one step of :mod:`trainyard.scoring.steps`
inside :func:`~trainyard.airflow.common.airflow_failures`. A run that ends without scoring (no
champion, a broken batch) records why in ``scoring/<pipeline>/runs/<run id>.json``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from trainyard.airflow.common import airflow_failures, record_links, run_day, window_end_param
from trainyard.core.settings import Settings
from trainyard.ui.links import LinkKind

if TYPE_CHECKING:
    from trainyard.core.spec import PipelineSpec

log = logging.getLogger(__name__)


def _record_outcome(
    spec: PipelineSpec, context: dict[str, Any], status: str, message: str, version: str | None
) -> str:
    from trainyard.scoring.steps import ScoringRecord, write_record

    record = ScoringRecord(
        pipeline=spec.name,
        run_id=context["dag_run"].run_id,
        status=status,
        message=message,
        model_name=spec.registered_model_name,
        model_version=version,
    )
    uri = write_record(Settings.from_env(), record)
    record_links({LinkKind.SCORING_REPORT: uri})
    return uri


def champion(spec: PipelineSpec, context: dict[str, Any]) -> dict[str, Any]:
    """Resolve the champion once; without one the run is skipped, and says so."""
    from trainyard.core.tracking import NoChampionError
    from trainyard.scoring.steps import resolve_champion

    with airflow_failures(spec, "scoring"):
        try:
            ref = resolve_champion(spec)
        except NoChampionError as error:
            uri = _record_outcome(spec, context, "no_champion", str(error), None)
            log.warning("%s (recorded in %s)", error, uri)
            raise
    log.info("scoring with %s v%s (%s)", ref.model_name, ref.version, ref.model_uri)
    return ref.model_dump(mode="json")


def _data_quality_failure(
    spec: PipelineSpec, context: dict[str, Any], champion: dict[str, Any], error: Exception
) -> Exception:
    from trainyard.core.errors import DeterministicError

    message = f"DATA-QUALITY FAILURE of the batch to score: nothing written.\n{error}"
    _record_outcome(spec, context, "data_quality_failure", message, champion["version"])
    return DeterministicError(message)


def batch(spec: PipelineSpec, champion: dict[str, Any], context: dict[str, Any]) -> list[dict]:
    """Snapshot each day to score; a partition that cannot be read fails as bad data."""
    from trainyard.data.sources import RawDataError
    from trainyard.scoring import steps

    settings = Settings.from_env()
    with airflow_failures(spec, "scoring"):
        days = steps.scoring_days(
            spec,
            run_day(context),
            window_end=window_end_param(context),
            days=context["params"].get("window_days"),
        )
        log.info("scoring %s", ", ".join(d.isoformat() for d in days))
        try:
            snapshots = [steps.batch(spec, settings, day) for day in days]
        except RawDataError as error:
            raise _data_quality_failure(spec, context, champion, error) from error
    for snapshot in snapshots:
        log.info("%s: %d rows, snapshot %s", snapshot.window_end, snapshot.rows, snapshot.uri)
    return [snapshot.model_dump(mode="json") for snapshot in snapshots]


def validate(
    spec: PipelineSpec, champion: dict[str, Any], snapshots: list[dict], context: dict[str, Any]
) -> list[dict]:
    """The suite minus the target's expectations, on every day, before anything is written."""
    from trainyard.data.snapshots import SnapshotRef
    from trainyard.data.validation import ValidationFailed
    from trainyard.scoring import steps

    settings = Settings.from_env()
    reports = []
    with airflow_failures(spec):
        for snapshot in snapshots:
            try:
                report = steps.validate(spec, settings, SnapshotRef.model_validate(snapshot))
            except ValidationFailed as error:
                raise _data_quality_failure(spec, context, champion, error) from error
            reports.append({"result_uri": report.result_uri, "suite": report.suite})
    return reports


def score(
    spec: PipelineSpec, champion: dict[str, Any], snapshots: list[dict], context: dict[str, Any]
) -> dict[str, Any]:
    """Score with the version resolved at the start; write the predictions and manifests."""
    from trainyard.data.snapshots import SnapshotRef
    from trainyard.scoring import steps

    dag_run = context["dag_run"]
    settings = Settings.from_env()
    with airflow_failures(spec):
        record = steps.score(
            spec,
            settings,
            steps.ChampionRef.model_validate(champion),
            [SnapshotRef.model_validate(s) for s in snapshots],
            dag_run.run_id,
            # Stable across retries of the task.
            dag_run.run_after,
        )
    log.info("%s", record.describe())
    record_links({LinkKind.SCORING_REPORT: steps.record_uri(settings, spec.name, record.run_id)})
    return record.model_dump(mode="json")
