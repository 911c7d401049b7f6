"""The whole training pipeline in one process (the CLI's ``run``), and its outcome record.

The Airflow DAG runs the same steps as separate tasks; both end with :func:`outcome`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from trainyard.gate import GateDecision
    from trainyard.ingest import SnapshotRef, TrainingWindow
    from trainyard.lineage import RunContext
    from trainyard.registry import Registration
    from trainyard.settings import Settings
    from trainyard.spec import PipelineSpec
    from trainyard.training import TrainingResult
    from trainyard.validation import ValidationReport

log = logging.getLogger(__name__)


class ValidationFailed(RuntimeError):
    """The snapshot failed a critical expectation; the message lists each one."""


class Outcome(BaseModel):
    """How a training run ended, for people (logs, demo printout) and the REST API (XCom)."""

    model_config = ConfigDict(frozen=True)

    pipeline: str
    status: Literal["registered", "rejected_by_gate"]
    model_name: str
    version: str | None
    alias: str | None
    new_version: bool
    champion_version: str | None
    metrics: dict[str, float]
    gate: str
    snapshot_uri: str
    snapshot_sha256: str
    mlflow_run_id: str
    lineage: dict[str, str]

    def describe(self) -> str:
        """Multi-line summary."""
        lines = [f"pipeline {self.pipeline}: {self.status.replace('_', ' ').upper()}"]
        if self.status == "registered":
            what = "new version" if self.new_version else "existing version (same fingerprint)"
            lines.append(f"  model {self.model_name} v{self.version} @{self.alias} ({what})")
        else:
            lines.append(f"  champion unchanged: v{self.champion_version or '-'}")
        lines.append("  metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in self.metrics.items()))
        lines += ["  " + line for line in self.gate.splitlines()]
        lines.append(f"  snapshot: {self.snapshot_uri}")
        lines.append(f"  mlflow run: {self.mlflow_run_id}")
        for key, value in sorted(self.lineage.items()):
            lines.append(f"    {key}: {value}")
        return "\n".join(lines)


def outcome(
    spec: PipelineSpec,
    snapshot: SnapshotRef,
    training: TrainingResult,
    decision: GateDecision,
    registration: Registration | None,
) -> Outcome:
    """Assemble the outcome of a run that got as far as the gate."""
    from trainyard.training import champion_version

    champion = champion_version(spec.registered_model_name)
    return Outcome(
        pipeline=spec.name,
        status="registered" if registration else "rejected_by_gate",
        model_name=spec.registered_model_name,
        version=registration.version if registration else None,
        alias=registration.alias if registration else None,
        new_version=bool(registration and registration.created),
        champion_version=champion.version if champion else None,
        metrics=decision.challenger,
        gate=decision.summary(),
        snapshot_uri=snapshot.uri,
        snapshot_sha256=snapshot.sha256,
        mlflow_run_id=training.mlflow_run_id,
        lineage=registration.lineage if registration else {},
    )


def check_validation(report: ValidationReport) -> ValidationReport:
    """Pass a successful report through; raise with every failed expectation otherwise.

    Warnings are logged and do not stop the run.

    Raises:
        ValidationFailed: A critical expectation failed.
    """
    for warning in report.warnings:
        log.warning("expectation failed with severity %s: %s", warning.severity, warning.describe())
    if not report.success:
        raise ValidationFailed(report.failure_message())
    return report


def run_pipeline(
    spec: PipelineSpec, settings: Settings, window: TrainingWindow, context: RunContext
) -> Outcome:
    """Ingest, validate, train, evaluate, gate and (on a pass) register, in one process.

    Raises:
        ValidationFailed: The snapshot failed validation; nothing was trained.
    """
    from trainyard import ingest, registry, training, validation

    snapshot = ingest.ingest(spec, settings, window)
    log.info("snapshot %s (%d rows)", snapshot.uri, snapshot.rows)
    report = check_validation(validation.validate_snapshot(spec, settings, snapshot))
    trained = training.train(spec, settings, snapshot, report, context)
    decision = training.evaluate(spec, settings, snapshot, trained)
    log.info("%s", decision.summary())
    registration = None
    if decision.passed:
        tags = registry.lineage_tags(spec, snapshot, report, trained, decision, context)
        registration = registry.register(spec, trained, decision, tags)
    return outcome(spec, snapshot, trained, decision, registration)
