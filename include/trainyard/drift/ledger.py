"""Where the monitors keep things on S3: check outputs, decisions, the retrain ledger.

s3://<artifacts>/drift/<pipeline>/ref-<sha16>/cur-<sha16>/cfg-<sha12>/  (one per check)
s3://<artifacts>/drift/<pipeline>/runs/<drift run id>/decision.json
s3://<artifacts>/performance/<pipeline>/runs/<performance run id>/decision.json
s3://<artifacts>/drift/<pipeline>/retrains/<training run id>.json   (one per retrain, kept)
s3://<artifacts>/drift/<pipeline>/retrains/latest.json              (the newest of them)

The retrain ledger is one per pipeline for both monitors (drift and performance): it holds the
cooldown they share.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from trainyard.drift.policy import RetrainDecision, RetrainRecord, Signal

if TYPE_CHECKING:
    from trainyard.core.settings import Settings


def _drift_root(settings: Settings, pipeline: str) -> str:
    return f"s3://{settings.artifacts_bucket}/drift/{pipeline}"


def result_prefix(
    settings: Settings, pipeline: str, reference_sha: str, current_sha: str, config_sha: str
) -> str:
    """Deterministic S3 prefix of one check's outputs (summary.json, report.html)."""
    return (
        f"{_drift_root(settings, pipeline)}/ref-{reference_sha[:16]}/"
        f"cur-{current_sha[:16]}/cfg-{config_sha[:12]}"
    )


def ledger_uri(settings: Settings, pipeline: str) -> str:
    """Where the last drift-triggered retrain of a pipeline is recorded."""
    return f"{_drift_root(settings, pipeline)}/retrains/latest.json"


def decision_uri(
    settings: Settings, pipeline: str, monitor_run_id: str, signal: Signal = "drift"
) -> str:
    """Where one monitor run's decision is recorded (drift or performance monitor)."""
    root = "drift" if signal == "drift" else "performance"
    return f"s3://{settings.artifacts_bucket}/{root}/{pipeline}/runs/{monitor_run_id}/decision.json"


def last_retrain(settings: Settings, pipeline: str) -> RetrainRecord | None:
    """The last monitor-triggered retrain (drift or decay), or None if there was none."""
    from trainyard.core import storage

    uri = ledger_uri(settings, pipeline)
    if not storage.exists(settings, uri):
        return None
    return RetrainRecord.model_validate_json(storage.get_bytes(settings, uri))


def record_retrain(settings: Settings, pipeline: str, record: RetrainRecord) -> str:
    """Record a triggered retrain: an immutable entry and the ``latest.json`` pointer.

    A record older than the current ``latest.json`` does not replace it.

    Returns:
        The URI of ``latest.json``.
    """
    from trainyard.core import storage

    body = record.model_dump_json(indent=1).encode()
    root = _drift_root(settings, pipeline)
    entry = f"{root}/retrains/{record.training_run_id}.json"
    storage.put_bytes(settings, entry, body, "application/json")
    current = last_retrain(settings, pipeline)
    uri = ledger_uri(settings, pipeline)
    if current is None or current.requested_at <= record.requested_at:
        storage.put_bytes(settings, uri, body, "application/json")
    return uri


def write_decision(settings: Settings, decision: RetrainDecision) -> str:
    """Store a monitor run's decision under its run id.

    Returns:
        Its URI.
    """
    from trainyard.core import storage

    uri = decision_uri(settings, decision.pipeline, decision.monitor_run_id, decision.signal)
    body = json.dumps(decision.model_dump(mode="json"), indent=1).encode()
    storage.put_bytes(settings, uri, body, "application/json")
    return uri
