"""Airflow adapters of the training steps: XCom dicts in, one step, XCom dicts out.

Each function turns the XCom references into typed records, calls one step of
:mod:`trainyard.training.steps` inside :func:`~trainyard.airflow.common.airflow_failures` (which
decides what is retried), and returns a small JSON-able reference for XCom. Heavy libraries are
imported inside the steps, never here.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from trainyard.airflow.common import (
    airflow_failures,
    record_links,
    run_context,
    run_day,
    run_time,
    window_end_param,
)
from trainyard.core.settings import Settings
from trainyard.ui.links import LinkKind, mlflow_run_ref, model_version_ref

if TYPE_CHECKING:
    from trainyard.core.spec import PipelineSpec

log = logging.getLogger(__name__)


def ingest(spec: PipelineSpec, context: dict[str, Any]) -> dict[str, Any]:
    """Snapshot the run's window; skip or fail on missing partitions as the spec says."""
    from trainyard.data.sources import resolve_window
    from trainyard.training import steps

    with airflow_failures(spec, "run"):
        window = resolve_window(
            spec,
            run_day(context),
            window_end=window_end_param(context),
            window_days=context["params"].get("window_days"),
            run_time=run_time(context),
        )
        log.info("window %s", window.label())
        snapshot = steps.ingest(spec, Settings.from_env(), window)
    log.info("snapshot %s sha256=%s rows=%d", snapshot.uri, snapshot.sha256, snapshot.rows)
    return snapshot.model_dump(mode="json")


def validate(spec: PipelineSpec, snapshot: dict[str, Any]) -> dict[str, Any]:
    """Validate the snapshot; a failed critical expectation fails the task without retries."""
    from trainyard.data.snapshots import SnapshotRef
    from trainyard.data.validation import ValidationFailed
    from trainyard.training import steps

    with airflow_failures(spec):
        try:
            report = steps.validate(spec, Settings.from_env(), SnapshotRef.model_validate(snapshot))
        except ValidationFailed as failure:
            record_links({LinkKind.DATA_DOCS: failure.report.data_docs_uri})
            raise
    record_links({LinkKind.DATA_DOCS: report.data_docs_uri})
    return report.model_dump(mode="json")


def train(
    spec: PipelineSpec, snapshot: dict[str, Any], report: dict[str, Any], context: dict[str, Any]
) -> dict[str, Any]:
    """Train and log the model to MLflow."""
    from trainyard.data.snapshots import SnapshotRef
    from trainyard.data.validation import ValidationReport
    from trainyard.training import steps

    with airflow_failures(spec):
        result = steps.train(
            spec,
            Settings.from_env(),
            SnapshotRef.model_validate(snapshot),
            ValidationReport.model_validate(report),
            run_context(context),
        )
    log.info("MLflow run %s, model %s", result.mlflow_run_id, result.model_uri)
    record_links({LinkKind.MLFLOW_RUN: mlflow_run_ref(result.experiment_id, result.mlflow_run_id)})
    return result.model_dump(mode="json")


def evaluate(
    spec: PipelineSpec, snapshot: dict[str, Any], trained: dict[str, Any], context: dict[str, Any]
) -> dict:
    """Score challenger and champion on the holdout; decide.

    The ``replace_incompatible_champion`` Param lets the gate replace a champion that cannot be
    scored on this holdout, ``allow_older_window`` one trained on a newer window than this run's
    (each recorded in the new version's lineage).
    """
    from trainyard.data.snapshots import SnapshotRef
    from trainyard.training import steps

    with airflow_failures(spec):
        decision = steps.evaluate(
            spec,
            Settings.from_env(),
            SnapshotRef.model_validate(snapshot),
            steps.TrainingResult.model_validate(trained),
            replace_incompatible_champion=bool(
                context["params"].get("replace_incompatible_champion")
            ),
            allow_older_window=bool(context["params"].get("allow_older_window")),
        )
    log.info("%s", decision.summary())
    return decision.model_dump(mode="json")


def gate(
    spec: PipelineSpec, decision: dict[str, Any], trained: dict[str, Any], context: dict[str, Any]
) -> bool:
    """True lets ``register`` run; False skips it, alerts, and the run ends as rejected by the
    gate."""
    from trainyard.alerts.notifiers import alert_gate_rejection
    from trainyard.training.gate import GateDecision

    verdict = GateDecision.model_validate(decision)
    if not verdict.passed:
        log.warning("REJECTED BY GATE; the champion stays.\n%s", verdict.summary())
        alert_gate_rejection(spec, decision, trained, context)
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
    from trainyard.data.snapshots import SnapshotRef
    from trainyard.data.validation import ValidationReport
    from trainyard.training.gate import GateDecision
    from trainyard.training.registry import register
    from trainyard.training.steps import TrainingResult

    training = TrainingResult.model_validate(trained)
    with airflow_failures(spec):
        registration = register(
            spec,
            Settings.from_env(),
            SnapshotRef.model_validate(snapshot),
            ValidationReport.model_validate(report),
            training,
            GateDecision.model_validate(decision),
            run_context(context),
        )
    log.info("%s v%s is now @%s", registration.model_name, registration.version, registration.alias)
    record_links(
        {
            LinkKind.MODEL_VERSION: model_version_ref(
                registration.model_name, registration.version
            ),
            LinkKind.MLFLOW_RUN: mlflow_run_ref(training.experiment_id, training.mlflow_run_id),
        }
    )
    return registration.model_dump(mode="json")


def report(
    spec: PipelineSpec,
    snapshot: dict[str, Any],
    trained: dict[str, Any],
    decision: dict[str, Any],
    registration: dict[str, Any] | None,
    approval: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Summarise the run: registered, rejected by the gate, or not approved by a person (the
    champion unchanged in both)."""
    from trainyard.core.tracking import champion_version
    from trainyard.data.snapshots import SnapshotRef
    from trainyard.training.gate import GateDecision
    from trainyard.training.outcome import outcome
    from trainyard.training.registry import Registration
    from trainyard.training.steps import TrainingResult

    with airflow_failures(spec):
        champion = champion_version(spec.registered_model_name)
    result = outcome(
        spec,
        SnapshotRef.model_validate(snapshot),
        TrainingResult.model_validate(trained),
        GateDecision.model_validate(decision),
        Registration.model_validate(registration) if registration else None,
        champion.version if champion else None,
        approval,
    )
    log.info("%s", result.describe())
    return result.model_dump(mode="json")
