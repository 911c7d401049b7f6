"""Airflow adapters of the drift monitor's steps: XCom dicts in, one step, XCom dicts out.

Like :mod:`trainyard.training.tasks`: each function calls one step inside
:func:`~trainyard.airflow.common.airflow_failures` and returns a small JSON-able reference for
XCom; heavy libraries are imported inside the steps. A run that ends before a verdict (no
champion, a broken batch) records why, so every drift run leaves a decision on S3.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from trainyard.airflow.common import (
    airflow_failures,
    record_links,
    run_context,
    run_day,
    window_end_param,
)
from trainyard.alerts.notifiers import alert_monitor_verdict
from trainyard.core.settings import Settings
from trainyard.ui.links import LinkKind

if TYPE_CHECKING:
    from trainyard.core.spec import PipelineSpec
    from trainyard.drift.policy import Signal

log = logging.getLogger(__name__)

#: Training-run states that block a drift-triggered retrain.
ACTIVE_STATES = ["queued", "running"]


def record_outcome(
    spec: PipelineSpec,
    context: dict[str, Any],
    action: str,
    message: str,
    signal: Signal = "drift",
) -> str:
    """Store the decision of a monitor run that ended before a verdict (no champion, bad data)."""
    from trainyard.drift.ledger import write_decision
    from trainyard.drift.policy import RetrainDecision

    dag_run = context["dag_run"]
    decision = RetrainDecision(
        signal=signal,
        pipeline=spec.name,
        action=action,
        retrain=False,
        message=message,
        decided_at=dag_run.run_after,
        monitor_run_id=dag_run.run_id,
        training_dag_id=spec.training_dag_id,
    )
    return write_decision(Settings.from_env(), decision)


def reference(spec: PipelineSpec, context: dict[str, Any]) -> dict[str, Any]:
    """The champion's training snapshot; without a champion the run ends here, skipped."""
    from trainyard.core.tracking import NoChampionError
    from trainyard.drift.steps import champion_reference

    with airflow_failures(spec, "the drift check"):
        try:
            ref = champion_reference(spec)
        except NoChampionError as error:
            uri = record_outcome(spec, context, "no_champion", str(error))
            log.warning("%s (recorded in %s)", error, uri)
            raise
    log.info(
        "reference: %s v%s trained on %s (%s .. %s)",
        ref.model_name,
        ref.model_version,
        ref.snapshot_uri,
        ref.window_start,
        ref.window_end,
    )
    return ref.model_dump(mode="json")


def current(spec: PipelineSpec, context: dict[str, Any]) -> dict[str, Any]:
    """Snapshot the newest raw partitions of the drift window."""
    from trainyard.data.sources import ingest
    from trainyard.drift.steps import current_window

    settings = Settings.from_env()
    with airflow_failures(spec, "the drift check"):
        window = current_window(
            spec,
            settings,
            run_day(context),
            window_end=window_end_param(context),
            window_days=context["params"].get("window_days"),
        )
        log.info("current window %s .. %s", window.start, window.end)
        snapshot = ingest(spec, settings, window)
    log.info("current snapshot %s sha256=%s rows=%d", snapshot.uri, snapshot.sha256, snapshot.rows)
    return snapshot.model_dump(mode="json")


def validate(spec: PipelineSpec, snapshot: dict[str, Any], context: dict[str, Any]) -> dict:
    """Check the current batch with the pipeline's GX suite before any drift statistics.

    A broken batch is a data-quality failure: the task fails (no retries) listing the failed
    expectations, and there is no drift verdict and no retrain.
    """
    from trainyard.core.errors import DeterministicError
    from trainyard.data.snapshots import SnapshotRef
    from trainyard.data.validation import ValidationFailed, validate

    with airflow_failures(spec):
        try:
            report = validate(spec, Settings.from_env(), SnapshotRef.model_validate(snapshot))
        except ValidationFailed as error:
            record_links({LinkKind.DATA_DOCS: error.report.data_docs_uri})
            message = (
                "DATA-QUALITY FAILURE of the current batch, not a drift verdict: no drift check, "
                f"no retrain.\n{error}"
            )
            record_outcome(spec, context, "data_quality_failure", message)
            raise DeterministicError(message) from error
    record_links({LinkKind.DATA_DOCS: report.data_docs_uri})
    return {
        "success": True,
        "suite": report.suite,
        "result_uri": report.result_uri,
        "data_docs_uri": report.data_docs_uri,
    }


def check(
    spec: PipelineSpec, reference: dict[str, Any], snapshot: dict[str, Any], context: dict
) -> dict[str, Any]:
    """Run Evidently; store the summary and HTML report on S3; log the check to MLflow."""
    from trainyard.data.snapshots import SnapshotRef
    from trainyard.drift.steps import ReferenceRef, check_drift, log_check

    settings = Settings.from_env()
    with airflow_failures(spec):
        summary = check_drift(
            spec,
            settings,
            ReferenceRef.model_validate(reference),
            SnapshotRef.model_validate(snapshot),
        )
        mlflow_run_id = log_check(spec, settings, summary, run_context(context))
    log.info("%s", summary.describe())
    log.info("drift summary: %s", summary.summary_uri)
    log.info("drift report : %s", summary.report_uri or "(none: insufficient data)")
    record_links({LinkKind.DRIFT_REPORT: summary.report_uri})
    log.info("MLflow run   : %s (experiment %s)", mlflow_run_id, spec.monitoring_experiment)
    return {**summary.reference_for_xcom(), "mlflow_run_id": mlflow_run_id}


def decide(
    spec: PipelineSpec,
    summary: dict[str, Any],
    context: dict[str, Any],
    signal: Signal = "drift",
    conf: dict[str, Any] | None = None,
) -> dict:
    """Apply storm protection: cooldown, no retrain while training is queued or running.

    Both monitors decide here, on the one retrain ledger of the pipeline.

    Args:
        spec: The pipeline (its training DAG and cooldown).
        summary: The verdict's XCom summary.
        context: The Airflow context.
        signal: Which monitor: ``drift`` or ``decay`` (the performance monitor).
        conf: The training run's conf (default: the drift summary's).
    """
    from trainyard.drift import ledger, policy

    settings = Settings.from_env()
    dag_run = context["dag_run"]
    # Asked of Airflow through the Task SDK (tasks cannot query the metadata DB directly).
    active = context["ti"].get_dr_count(dag_id=spec.training_dag_id, states=ACTIVE_STATES)
    with airflow_failures(spec):
        decision = policy.decide(
            summary,
            now=dag_run.run_after,
            cooldown_hours=spec.drift.cooldown_hours,
            last_retrain=ledger.last_retrain(settings, spec.name),
            active_training_runs=active,
            monitor_run_id=dag_run.run_id,
            training_dag_id=spec.training_dag_id,
            force=bool(context["params"].get("force")),
            signal=signal,
            conf=conf,
        )
        uri = ledger.write_decision(settings, decision)
        _tag_mlflow_run(summary.get("mlflow_run_id"), decision.action, decision.message)
    if decision.action.startswith("suppressed"):
        log.warning("%s", decision.message)
    else:
        log.info("%s", decision.message)
    log.info("decision recorded in %s", uri)
    recorded = decision.model_dump(mode="json")
    alert_monitor_verdict(recorded, summary, context)
    return recorded


def _tag_mlflow_run(run_id: str | None, action: str, message: str) -> None:
    if not run_id:
        return
    from mlflow import MlflowClient

    client = MlflowClient()
    client.set_tag(run_id, "retrain_decision", action)
    client.set_tag(run_id, "retrain_message", message[:4000])


def retrain_requested(decision: dict[str, Any]) -> bool:
    """True lets the trigger run; False skips it (the run still succeeds)."""
    return bool(decision.get("retrain"))


def record(spec: PipelineSpec, decision: dict[str, Any], context: dict[str, Any]) -> dict:
    """After the trigger: record the retrain, which starts the cooldown (of both monitors)."""
    from trainyard.drift.ledger import record_retrain
    from trainyard.drift.policy import RetrainDecision, record_from

    entry = record_from(RetrainDecision.model_validate(decision), context["dag_run"].dag_id)
    with airflow_failures(spec):
        uri = record_retrain(Settings.from_env(), spec.name, entry)
    log.info(
        "retrain %s of %s recorded in %s; cooldown %sh from %s",
        entry.training_run_id,
        entry.training_dag_id,
        uri,
        spec.drift.cooldown_hours,
        entry.requested_at.isoformat(),
    )
    return {"ledger_uri": uri, **entry.model_dump(mode="json")}
