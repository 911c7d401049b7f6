"""Adapters between Airflow task context and the package's steps.

Each function takes the spec and the Airflow context, calls one step, and returns a small
JSON-able reference for XCom. Heavy libraries are imported inside the steps, never here.
Deterministic failures (bad data, missing partitions, a bad estimator path) raise
AirflowFailException so they are not retried; anything else (S3, MLflow) is retried with backoff.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from trainyard.settings import Settings

if TYPE_CHECKING:
    from trainyard.ingest import MissingPartitionsError
    from trainyard.lineage import RunContext
    from trainyard.spec import PipelineSpec

log = logging.getLogger(__name__)


def run_day(context: dict[str, Any]) -> date:
    """The day a run is for: the scheduled tick, or when a manual/triggered run was created."""
    dag_run = context["dag_run"]
    moment = dag_run.logical_date or dag_run.run_after
    return moment.date()


def trigger_reason(context: dict[str, Any]) -> str:
    """Why this run exists: the ``reason`` param/conf if given, else the run type."""
    reason = (context["params"].get("reason") or "").strip()
    if reason:
        return reason
    run_type = str(getattr(context["dag_run"].run_type, "value", context["dag_run"].run_type))
    return {"scheduled": "schedule", "manual": "manual"}.get(run_type, run_type)


def run_context(context: dict[str, Any]) -> RunContext:
    """Lineage identity of the current Airflow run."""
    from trainyard.lineage import RunContext, git_commit

    dag_run = context["dag_run"]
    return RunContext(
        dag_id=dag_run.dag_id,
        run_id=dag_run.run_id,
        trigger_reason=trigger_reason(context),
        git_commit=git_commit(),
        drift_report_uri=(context["params"].get("drift_report_uri") or "").strip() or None,
    )


def missing_partitions_failure(
    spec: PipelineSpec, error: MissingPartitionsError, what: str
) -> AirflowSkipException | AirflowFailException:
    """What to raise for missing partitions: skip ``what`` if the spec says so, else fail.

    Either way there is no retry: the partitions will not appear by retrying at once.
    """
    if getattr(spec.source, "on_missing_partitions", "fail") == "skip":
        return AirflowSkipException(f"skipping {what}: {error}")
    return AirflowFailException(str(error))


def ingest(spec: PipelineSpec, context: dict[str, Any]) -> dict[str, Any]:
    """Snapshot the run's window; skip or fail on missing partitions as the spec says."""
    from trainyard.ingest import MissingPartitionsError, ingest, resolve_window

    params = context["params"]
    window_end = params.get("window_end")
    window = resolve_window(
        spec,
        run_day(context),
        window_end=date.fromisoformat(window_end) if window_end else None,
        window_days=params.get("window_days"),
    )
    log.info("window %s .. %s (%d days)", window.start, window.end, len(window.days()))
    try:
        snapshot = ingest(spec, Settings.from_env(), window)
    except MissingPartitionsError as error:
        raise missing_partitions_failure(spec, error, "run") from error
    except ValueError as error:
        raise AirflowFailException(str(error)) from error
    log.info("snapshot %s sha256=%s rows=%d", snapshot.uri, snapshot.sha256, snapshot.rows)
    return snapshot.model_dump(mode="json")


def validate(spec: PipelineSpec, snapshot: dict[str, Any]) -> dict[str, Any]:
    """Validate the snapshot; a failed critical expectation fails the task without retries."""
    from trainyard.ingest import SnapshotRef
    from trainyard.pipeline import ValidationFailed, check_validation
    from trainyard.validation import validate_snapshot

    report = validate_snapshot(spec, Settings.from_env(), SnapshotRef.model_validate(snapshot))
    log.info("validation result: %s", report.result_uri)
    log.info("data docs: %s", report.data_docs_uri)
    try:
        check_validation(report)
    except ValidationFailed as error:
        raise AirflowFailException(str(error)) from error
    return report.model_dump(mode="json")


def train(
    spec: PipelineSpec, snapshot: dict[str, Any], report: dict[str, Any], context: dict[str, Any]
) -> dict[str, Any]:
    """Train and log the model to MLflow."""
    from trainyard.ingest import SnapshotRef
    from trainyard.modeling import EstimatorImportError
    from trainyard.training import UntrustedModelTypesError, train
    from trainyard.validation import ValidationReport

    try:
        result = train(
            spec,
            Settings.from_env(),
            SnapshotRef.model_validate(snapshot),
            ValidationReport.model_validate(report),
            run_context(context),
        )
    except (EstimatorImportError, UntrustedModelTypesError) as error:
        raise AirflowFailException(str(error)) from error
    log.info("MLflow run %s, model %s", result.mlflow_run_id, result.model_uri)
    return result.model_dump(mode="json")


def evaluate(spec: PipelineSpec, snapshot: dict[str, Any], trained: dict[str, Any]) -> dict:
    """Score challenger and champion on the holdout; decide."""
    from trainyard.ingest import SnapshotRef
    from trainyard.training import TrainingResult, evaluate

    decision = evaluate(
        spec,
        Settings.from_env(),
        SnapshotRef.model_validate(snapshot),
        TrainingResult.model_validate(trained),
    )
    log.info("%s", decision.summary())
    return decision.model_dump(mode="json")


def gate(decision: dict[str, Any]) -> bool:
    """True lets ``register`` run; False skips it and the run ends as rejected by the gate."""
    from trainyard.gate import GateDecision

    verdict = GateDecision.model_validate(decision)
    if not verdict.passed:
        log.warning("REJECTED BY GATE; the champion stays.\n%s", verdict.summary())
    return verdict.passed


def register(
    spec: PipelineSpec,
    snapshot: dict[str, Any],
    report: dict[str, Any],
    trained: dict[str, Any],
    decision: dict[str, Any],
    context: dict[str, Any],
) -> dict[str, Any]:
    """Register the passing model with its lineage and move the aliases."""
    from trainyard.gate import GateDecision
    from trainyard.ingest import SnapshotRef
    from trainyard.registry import lineage_tags, register
    from trainyard.training import TrainingResult
    from trainyard.validation import ValidationReport

    training = TrainingResult.model_validate(trained)
    verdict = GateDecision.model_validate(decision)
    tags = lineage_tags(
        spec,
        SnapshotRef.model_validate(snapshot),
        ValidationReport.model_validate(report),
        training,
        verdict,
        run_context(context),
    )
    registration = register(spec, training, verdict, tags)
    log.info("%s v%s is now @%s", registration.model_name, registration.version, registration.alias)
    return registration.model_dump(mode="json")


def report(
    spec: PipelineSpec,
    snapshot: dict[str, Any],
    trained: dict[str, Any],
    decision: dict[str, Any],
    registration: dict[str, Any] | None,
) -> dict[str, Any]:
    """Summarise the run: registered, or rejected by the gate with the champion unchanged."""
    from trainyard.gate import GateDecision
    from trainyard.ingest import SnapshotRef
    from trainyard.pipeline import outcome
    from trainyard.registry import Registration
    from trainyard.training import TrainingResult

    result = outcome(
        spec,
        SnapshotRef.model_validate(snapshot),
        TrainingResult.model_validate(trained),
        GateDecision.model_validate(decision),
        Registration.model_validate(registration) if registration else None,
    )
    log.info("%s", result.describe())
    return result.model_dump(mode="json")
