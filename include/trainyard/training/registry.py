"""Registration in the MLflow model registry, with lineage tags and alias moves.

Aliases, not stages: ``champion`` is the serving model, ``previous`` the one it replaced.
:func:`register` moves them only for a model that passed the gate, and only through
:func:`trainyard.governance.aliases.move`, which records the move in the audit trail.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from trainyard.core.lineage import training_fingerprint
from trainyard.core.tracking import CHAMPION

if TYPE_CHECKING:
    from trainyard.core.lineage import RunContext
    from trainyard.core.settings import Settings
    from trainyard.core.spec import PipelineSpec
    from trainyard.data.snapshots import SnapshotRef
    from trainyard.data.validation import ValidationReport
    from trainyard.training.gate import GateDecision
    from trainyard.training.steps import TrainingResult

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
    return {
        **snapshot.tags(),
        **validation.tags(),
        **context.tags(),
        "spec_sha256": spec_sha,
        "mlflow_run_id": training.mlflow_run_id,
        **({"training_sample": training.training_sample} if training.training_sample else {}),
        "fingerprint": training_fingerprint(snapshot.sha256, spec_sha, context.code_sha256),
        **decision.tags(),
        **{f"metric.{name}": f"{value:.6f}" for name, value in decision.challenger.items()},
    }


def register(
    spec: PipelineSpec,
    settings: Settings,
    snapshot: SnapshotRef,
    validation: ValidationReport,
    training: TrainingResult,
    decision: GateDecision,
    context: RunContext,
) -> Registration:
    """Register the model that passed the gate, with its lineage and model card; make it
    champion (or, with ``promotion.mode: approval``, challenger until a person approves it).

    Idempotent: a version already registered from the same MLflow run, or holding the same
    training fingerprint (same snapshot, spec and code, hence the same model), is reused instead
    of creating a duplicate. Race-free: when concurrent runs both found no such version and both
    registered one, the lowest version of the fingerprint wins and the others are deleted before
    any alias moves. The old champion gets the ``previous`` alias; the move is an audit event
    (actor and reason from ``context``; see :func:`trainyard.governance.aliases.move`, which a
    retry or a rerun uses to finish an interrupted move). A version without a description gets
    its model card (:mod:`trainyard.governance.model_card`).

    Returns:
        The version, now holding ``champion`` (or ``challenger``).

    Raises:
        ValueError: The decision is a rejection.
    """
    import mlflow
    from mlflow import MlflowClient

    from trainyard.governance import aliases, model_card
    from trainyard.governance.audit import Cause

    if not decision.passed:
        raise ValueError("the gate rejected this model; refusing to register it")
    lineage = lineage_tags(spec, snapshot, validation, training, decision, context)
    name = spec.registered_model_name
    client = MlflowClient()
    existing = _existing_version(client, name, training.mlflow_run_id, lineage["fingerprint"])
    if existing is None:
        registered = mlflow.register_model(training.model_uri, name, tags=lineage)
        log.info("registered %s version %s", name, registered.version)
        version = _settle_race(client, name, lineage["fingerprint"], registered)
        created = version is registered
    else:
        version, created = existing, False
        log.info(
            "%s version %s already holds this model (same run or same fingerprint); "
            "not registering a duplicate",
            name,
            version.version,
        )
    cause = Cause.of_run(
        context,
        mlflow_run_id=training.mlflow_run_id,
        gate=lineage.get("gate_decision", ""),
        **{key: value for key, value in lineage.items() if key.startswith("metric.")},
    )
    # In approval mode a passing version waits as challenger; a person makes it champion.
    action = "submit" if spec.promotion.mode == "approval" else "promote"
    event = aliases.move(settings, name, action, str(version.version), cause)
    now = aliases.current_aliases(name)
    alias = aliases.CHALLENGER if now.get(aliases.CHALLENGER) == str(version.version) else CHAMPION
    previous = event.from_version if event is not None and action == "promote" else None
    client.set_tag(training.mlflow_run_id, "registered_version", str(version.version))
    current = client.get_model_version(name, version.version)
    if not current.description:
        # A version gets its card once; a retry or a rerun reusing the version keeps it.
        card = model_card.render_card(
            model_card.CardFacts(
                spec=spec,
                version=str(current.version),
                alias=alias,
                snapshot=snapshot,
                validation=validation,
                training=training,
                decision=decision,
                lineage=current.tags,
                drift=model_card.drift_status_before(
                    spec, client.get_run(training.mlflow_run_id).info.start_time
                ),
            )
        )
        log.info("model card %s", model_card.publish(settings, name, current, card))
    return Registration(
        model_name=name,
        version=str(version.version),
        alias=alias,
        created=created,
        previous_version=previous,
        lineage=dict(current.tags),
    )


def _existing_version(client: Any, name: str, run_id: str, fingerprint: str) -> Any | None:
    # A model not registered yet has no versions (an empty answer, not an error); any error here
    # propagates, since "no existing version" would register a duplicate.
    versions = client.search_model_versions(f"name = '{name}'")
    for version in sorted(versions, key=lambda v: int(v.version)):
        if version.run_id == run_id or version.tags.get("fingerprint") == fingerprint:
            return version
    return None


def _settle_race(client: Any, name: str, fingerprint: str, ours: Any) -> Any:
    """The one version of a fingerprint: the lowest wins; ours is deleted if it lost.

    Every racer registers, then looks: all see the same lowest version (version numbers are
    assigned in order), so all keep that one, and each loser deletes only its own version.
    """
    same = [
        version
        for version in client.search_model_versions(f"name = '{name}'")
        if version.tags.get("fingerprint") == fingerprint
    ]
    winner = min(same, key=lambda version: int(version.version), default=ours)
    if int(winner.version) >= int(ours.version):
        return ours
    log.warning(
        "%s version %s has the same fingerprint as version %s, registered concurrently; "
        "keeping version %s and deleting %s",
        name,
        ours.version,
        winner.version,
        winner.version,
        ours.version,
    )
    client.delete_model_version(name, ours.version)
    return winner
