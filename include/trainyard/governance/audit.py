"""The audit trail: every alias move of a registered model is an event, kept append-only on S3.

s3://<artifacts>/audit/<model>/<UTC time>-<event id>.json   (one object per event, never rewritten)

An event says who moved which alias, when, why, from which version to which, and from which
Airflow DAG run; its *effects* (aliases set, aliases removed) are explicit, so replaying the
events in order rebuilds the registry's aliases (:func:`replay`). Each event is also mirrored as a
tag on the model versions it names, so the MLflow UI shows a version's history.

Pure parts (the event, its key, replay, the timeline) are separate from the S3 and MLflow I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from trainyard.core.lineage import RunContext
    from trainyard.core.settings import Settings

#: What happened. ``promote``: a passing run moved ``champion`` (auto mode); ``submit``: a passing
#: run became ``challenger`` and waits for approval; ``approve`` / ``reject``: a person answered;
#: ``timeout``: nobody answered in time and the spec's choice applied; ``rollback``: a person moved
#: ``champion`` back; ``restore``: aliases rebuilt from this trail.
Action = Literal["promote", "submit", "approve", "reject", "timeout", "rollback", "restore"]


class Cause(BaseModel):
    """Who and what made an alias move: the person or automation, the reason, the Airflow run."""

    model_config = ConfigDict(frozen=True)

    #: The Airflow user of a manual run or an approval; ``schedule``; ``drift monitor ...``;
    #: ``cli:<login>``.
    actor: str
    reason: str
    dag_id: str
    run_id: str
    #: Links and numbers worth keeping with the event (report URI, MLflow run, metrics).
    details: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def of_run(cls, context: RunContext, **details: str) -> Cause:
        """The cause of a move made by a training run (or a CLI command): its actor and reason."""
        return cls(
            actor=context.actor,
            reason=context.trigger_reason,
            dag_id=context.dag_id,
            run_id=context.run_id,
            details={
                key: value
                for key, value in {"drift_report_uri": context.drift_report_uri, **details}.items()
                if value
            },
        )


class AuditEvent(BaseModel):
    """One alias move (or a decision not to move) of one registered model."""

    model_config = ConfigDict(frozen=True)

    event_id: str
    model_name: str
    action: Action
    at: datetime
    #: The champion before the event, and the version the event is about.
    from_version: str | None
    to_version: str | None
    cause: Cause
    #: Aliases this event pointed at a version, and aliases it deleted.
    aliases_set: dict[str, str] = Field(default_factory=dict)
    aliases_removed: tuple[str, ...] = ()

    def key(self) -> str:
        """The S3 key below ``audit/``: time-ordered, unique per event."""
        return f"{self.model_name}/{self.at.strftime('%Y%m%dT%H%M%S%fZ')}-{self.event_id}.json"

    def describe(self) -> str:
        """One line for the timeline and the version tags."""
        moves = ", ".join(f"@{alias}→v{version}" for alias, version in self.aliases_set.items())
        removed = ", ".join(f"@{alias} removed" for alias in self.aliases_removed)
        effects = "; ".join(part for part in (moves, removed) if part) or "no alias moved"
        source = f"v{self.from_version}" if self.from_version else "none"
        target = f"v{self.to_version}" if self.to_version else "none"
        return (
            f"{self.at.strftime('%Y-%m-%d %H:%M:%S')} UTC  {self.action:<8} champion {source} → "
            f"{target}  by {self.cause.actor}: {self.cause.reason or '-'}  [{effects}]  "
            f"({self.cause.dag_id} / {self.cause.run_id})"
        )


def event_id(model_name: str, action: Action, cause: Cause, to_version: str | None) -> str:
    """Identity of an event: the same move by the same Airflow run is one event, however often
    the task is retried."""
    text = f"{model_name}:{action}:{cause.dag_id}:{cause.run_id}:{to_version}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def new_event(
    model_name: str,
    action: Action,
    cause: Cause,
    *,
    from_version: str | None,
    to_version: str | None,
    aliases_set: dict[str, str],
    aliases_removed: Iterable[str] = (),
    at: datetime | None = None,
) -> AuditEvent:
    """An event with its identity and time filled in."""
    return AuditEvent(
        event_id=event_id(model_name, action, cause, to_version),
        model_name=model_name,
        action=action,
        at=at or datetime.now(UTC),
        from_version=from_version,
        to_version=to_version,
        cause=cause,
        aliases_set=aliases_set,
        aliases_removed=tuple(aliases_removed),
    )


def replay(events: Iterable[AuditEvent]) -> dict[str, str]:
    """The aliases the events leave, applying each event's effects in order.

    Args:
        events: One model's events, oldest first.

    Returns:
        Alias → version.
    """
    aliases: dict[str, str] = {}
    for event in events:
        aliases.update(event.aliases_set)
        for alias in event.aliases_removed:
            aliases.pop(alias, None)
    return aliases


def timeline(model_name: str, events: list[AuditEvent]) -> str:
    """The history of a model's aliases, one line per event, oldest first."""
    if not events:
        return f"{model_name}: no alias events recorded"
    lines = [f"{model_name}: {len(events)} alias event(s)"]
    lines += [f"  {event.describe()}" for event in events]
    current = replay(events)
    lines.append(
        "  aliases now: "
        + (", ".join(f"@{alias}=v{version}" for alias, version in sorted(current.items())) or "-")
    )
    return "\n".join(lines)


# ---- I/O ----------------------------------------------------------------------------------------


def _prefix(model_name: str) -> str:
    return f"audit/{model_name}/"


def read_events(settings: Settings, model_name: str) -> list[AuditEvent]:
    """A model's events from S3, oldest first (empty when none were recorded)."""
    from trainyard.core import storage

    keys = storage.list_keys(settings, settings.artifacts_bucket, _prefix(model_name))
    return [
        AuditEvent.model_validate_json(
            storage.get_bytes(settings, f"s3://{settings.artifacts_bucket}/{key}")
        )
        for key in keys
        if key.endswith(".json")
    ]


def find_event(settings: Settings, model_name: str, identity: str) -> AuditEvent | None:
    """The recorded event with this id, or None."""
    from trainyard.core import storage

    keys = storage.list_keys(settings, settings.artifacts_bucket, _prefix(model_name))
    for key in keys:
        if key.endswith(f"-{identity}.json"):
            uri = f"s3://{settings.artifacts_bucket}/{key}"
            return AuditEvent.model_validate_json(storage.get_bytes(settings, uri))
    return None


def last_event(settings: Settings, model_name: str) -> AuditEvent | None:
    """A model's newest recorded event, or None."""
    from trainyard.core import storage

    keys = storage.list_keys(settings, settings.artifacts_bucket, _prefix(model_name))
    keys = [key for key in keys if key.endswith(".json")]
    if not keys:
        return None
    uri = f"s3://{settings.artifacts_bucket}/{keys[-1]}"
    return AuditEvent.model_validate_json(storage.get_bytes(settings, uri))


def append(settings: Settings, event: AuditEvent) -> str:
    """Store an event as a new object; an event with the same id already stored is kept as is.

    Returns:
        The URI of the stored event.
    """
    from trainyard.core import storage

    existing = find_event(settings, event.model_name, event.event_id)
    stored = existing or event
    uri = f"s3://{settings.artifacts_bucket}/audit/{stored.key()}"
    if existing is None:
        body = event.model_dump_json(indent=1).encode()
        storage.put_bytes(settings, uri, body, "application/json")
    return uri


def mirror_on_versions(event: AuditEvent) -> None:
    """Tag the versions an event names with its one-line description (shown in the MLflow UI)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    key = f"audit.{event.at.strftime('%Y%m%dT%H%M%SZ')}.{event.action}"
    for version in {event.from_version, event.to_version} - {None}:
        client.set_model_version_tag(event.model_name, version, key, event.describe())
