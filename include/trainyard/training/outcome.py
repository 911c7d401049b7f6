"""How a training run ended: the record people (logs, the demo) and the REST API (XCom) read."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from trainyard.core.spec import PipelineSpec
    from trainyard.data.snapshots import SnapshotRef
    from trainyard.training.gate import GateDecision
    from trainyard.training.registry import Registration
    from trainyard.training.steps import TrainingResult


class Outcome(BaseModel):
    """How a training run ended, for people (logs, demo printout) and the REST API (XCom)."""

    model_config = ConfigDict(frozen=True)

    pipeline: str
    #: ``not_approved``: it passed the gate, but a reviewer (or the approval timeout) said no.
    status: Literal["registered", "rejected_by_gate", "refused_older_window", "not_approved"]
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
    #: How the approval went (``promotion.mode: approval``), else "".
    approval: str = ""

    def describe(self) -> str:
        """Multi-line summary."""
        lines = [f"pipeline {self.pipeline}: {self.status.replace('_', ' ').upper()}"]
        if self.status == "registered":
            what = "new version" if self.new_version else "existing version (same fingerprint)"
            lines.append(f"  model {self.model_name} v{self.version} @{self.alias} ({what})")
        else:
            lines.append(f"  champion unchanged: v{self.champion_version or '-'}")
        if self.approval:
            lines.append(f"  approval: {self.approval}")
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
    champion_version: str | None,
    approval: dict[str, Any] | None = None,
) -> Outcome:
    """Assemble the outcome of a run that got as far as the gate (pure).

    Args:
        spec: The pipeline.
        snapshot: What it trained on.
        training: The MLflow run.
        decision: The gate's verdict.
        registration: The registration, None when the gate rejected the model.
        champion_version: The version holding ``champion`` now.
        approval: The approval's verdict (``crown``, ``describe``) in approval mode.

    Returns:
        The outcome record.
    """
    return Outcome(
        pipeline=spec.name,
        status=(
            "refused_older_window"
            if registration is None and decision.refused_older_window
            else "rejected_by_gate"
            if registration is None
            else "not_approved"
            if approval is not None and not approval["crown"]
            else "registered"
        ),
        model_name=spec.registered_model_name,
        version=registration.version if registration else None,
        alias=registration.alias if registration else None,
        new_version=bool(registration and registration.created),
        champion_version=champion_version,
        metrics=decision.challenger,
        gate=decision.summary(),
        snapshot_uri=snapshot.uri,
        snapshot_sha256=snapshot.sha256,
        mlflow_run_id=training.mlflow_run_id,
        lineage=registration.lineage if registration else {},
        approval=approval["describe"] if approval else "",
    )
