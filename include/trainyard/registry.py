"""Registration in the MLflow model registry, with lineage tags and alias moves.

Aliases, not stages: ``champion`` is the serving model, ``previous`` the one it replaced.
Only :func:`register` moves them, and only for a model that passed the gate.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from trainyard.lineage import training_fingerprint
from trainyard.training import CHAMPION, PREVIOUS, champion_version

if TYPE_CHECKING:
    from trainyard.gate import GateDecision
    from trainyard.ingest import SnapshotRef
    from trainyard.lineage import RunContext
    from trainyard.spec import PipelineSpec
    from trainyard.training import TrainingResult
    from trainyard.validation import ValidationReport

log = logging.getLogger(__name__)


class Registration(BaseModel):
    """Outcome of the register step."""

    model_config = ConfigDict(frozen=True)

    model_name: str
    version: str
    alias: str
    created: bool
    previous_version: str | None
    lineage: dict[str, str]


def lineage_tags(
    spec: PipelineSpec,
    snapshot: SnapshotRef,
    validation: ValidationReport,
    training: TrainingResult,
    decision: GateDecision,
    context: RunContext,
) -> dict[str, str]:
    """Every tag a registered version carries to trace it back to data, checks and code."""
    spec_sha = spec.sha256()
    tags = {
        "snapshot_uri": snapshot.uri,
        "snapshot_sha256": snapshot.sha256,
        "window_start": snapshot.window_start.isoformat(),
        "window_end": snapshot.window_end.isoformat(),
        "validation_result_uri": validation.result_uri,
        "validation_success": str(validation.success).lower(),
        "validation_suite": f"{validation.suite}@{validation.suite_sha256[:16]}",
        "data_docs_uri": validation.data_docs_uri or "",
        "airflow_dag_id": context.dag_id,
        "airflow_run_id": context.run_id,
        "trigger_reason": context.trigger_reason,
        "drift_report_uri": context.drift_report_uri or "",
        "git_commit": context.git_commit,
        "spec_sha256": spec_sha,
        "mlflow_run_id": training.mlflow_run_id,
        "fingerprint": training_fingerprint(snapshot.sha256, spec_sha, context.git_commit),
        "gate_decision": "passed" if decision.passed else "rejected",
    }
    tags.update({f"metric.{name}": f"{value:.6f}" for name, value in decision.challenger.items()})
    return tags


def register(
    spec: PipelineSpec, training: TrainingResult, decision: GateDecision, lineage: dict[str, str]
) -> Registration:
    """Register the model that passed the gate and make it champion.

    Idempotent: a version already registered from the same MLflow run, or holding the same
    training fingerprint (same snapshot, spec and code, hence the same model), is reused instead
    of creating a duplicate. The old champion gets the ``previous`` alias.

    Args:
        spec: The pipeline (names the registered model).
        training: The run and model to register.
        decision: Must be a pass.
        lineage: Tags from :func:`lineage_tags`.

    Returns:
        The version now holding ``champion``.

    Raises:
        ValueError: The decision is a rejection.
    """
    import mlflow
    from mlflow import MlflowClient

    if not decision.passed:
        raise ValueError("the gate rejected this model; refusing to register it")
    name = spec.registered_model_name
    client = MlflowClient()
    existing = _existing_version(client, name, training.mlflow_run_id, lineage["fingerprint"])
    created = existing is None
    if existing is None:
        version = mlflow.register_model(training.model_uri, name, tags=lineage)
        log.info("registered %s version %s", name, version.version)
    else:
        version = existing
        log.info(
            "%s version %s already holds this model (same run or same fingerprint); "
            "not registering a duplicate",
            name,
            version.version,
        )
    current = champion_version(name)
    previous = None
    if current is None or current.version != version.version:
        if current is not None:
            client.set_registered_model_alias(name, PREVIOUS, current.version)
            previous = current.version
        client.set_registered_model_alias(name, CHAMPION, version.version)
    client.set_tag(training.mlflow_run_id, "registered_version", str(version.version))
    return Registration(
        model_name=name,
        version=str(version.version),
        alias=CHAMPION,
        created=created,
        previous_version=previous,
        lineage=dict(client.get_model_version(name, version.version).tags),
    )


def _existing_version(client, name: str, run_id: str, fingerprint: str):
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return None
    for version in sorted(versions, key=lambda v: int(v.version)):
        if version.run_id == run_id or version.tags.get("fingerprint") == fingerprint:
            return version
    return None
