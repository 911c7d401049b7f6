"""The one way trainyard moves a registered model's aliases: planned, recorded, then applied.

Aliases: ``champion`` (the serving model), ``previous`` (the champion it replaced) and
``challenger`` (a passing version waiting for approval). :func:`move` is the only function that
sets or deletes them; every call writes an audit event (:mod:`trainyard.governance.audit`).

The event is written *before* the aliases move (a write-ahead record): a task that dies between
the two is retried, finds its event by id, and applies the same effects, so the registry and the
trail agree. :func:`plan` is the pure part.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from trainyard.core.tracking import CHAMPION, PREVIOUS
from trainyard.governance.audit import Action, AuditEvent, Cause, new_event

if TYPE_CHECKING:
    from trainyard.core.settings import Settings

CHALLENGER = "challenger"

log = logging.getLogger(__name__)

#: Actions that make their version the champion (the old champion becomes ``previous``).
_CROWNING: frozenset[str] = frozenset({"promote", "approve", "rollback"})


def plan(
    action: Action, aliases: dict[str, str], version: str, *, crown: bool = False
) -> tuple[dict[str, str], list[str]]:
    """The alias changes an action makes, from the aliases the model has now.

    - ``promote`` / ``approve`` / ``rollback`` (and ``timeout`` with ``crown``): ``champion`` →
      ``version``, the replaced champion → ``previous``; nothing when it already is champion.
      A ``challenger`` alias on ``version`` is removed.
    - ``submit``: ``challenger`` → ``version`` (nothing when it is champion already).
    - ``reject`` (and ``timeout`` without ``crown``): ``challenger`` removed if it is on
      ``version``; ``champion`` unchanged.

    Args:
        action: What happens.
        aliases: Alias → version, as the registry has them now.
        version: The version the action is about.
        crown: For ``timeout``: whether the spec's choice makes it champion.

    Returns:
        Aliases to set (``champion`` first) and aliases to delete.
    """
    to_set: dict[str, str] = {}
    to_remove: list[str] = []
    if action in _CROWNING or (action == "timeout" and crown):
        current = aliases.get(CHAMPION)
        if current != version:
            to_set[CHAMPION] = version
            if current is not None:
                to_set[PREVIOUS] = current
    elif action == "submit":
        if version not in (aliases.get(CHALLENGER), aliases.get(CHAMPION)):
            to_set[CHALLENGER] = version
    elif action not in ("reject", "timeout"):
        raise ValueError(f"action {action!r} does not move aliases by plan")
    if action != "submit" and aliases.get(CHALLENGER) == version:
        to_remove.append(CHALLENGER)
    return to_set, to_remove


def current_aliases(model_name: str) -> dict[str, str]:
    """Alias → version of a registered model (empty when it does not exist yet)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        model = MlflowClient().get_registered_model(model_name)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return {}
        raise
    return {alias: str(version) for alias, version in (model.aliases or {}).items()}


def unfinished(event: AuditEvent, aliases: dict[str, str]) -> bool:
    """Whether ``event`` moved ``champion`` but the rest of its effects are not in place (the move
    was interrupted after its first step, which is always ``champion``)."""
    champion = event.aliases_set.get(CHAMPION)
    if champion is None or aliases.get(CHAMPION) != champion:
        return False
    missing = any(aliases.get(alias) != version for alias, version in event.aliases_set.items())
    return missing or any(alias in aliases for alias in event.aliases_removed)


def apply_effects(
    model_name: str, to_set: dict[str, str], to_remove: Iterable[str], aliases: dict[str, str]
) -> None:
    """Set and delete aliases in the registry, from ``aliases`` (what it has now).

    ``champion`` moves first (it is what serving reads); ``champion`` and ``previous`` never name
    one version, so when the new champion holds ``previous`` (a rollback to it), ``previous`` goes
    first. What is already in place is not touched, so applying the same effects twice is safe.
    """
    from mlflow import MlflowClient

    client = MlflowClient()
    champion = to_set.get(CHAMPION)
    if champion is not None and aliases.get(PREVIOUS) == champion != to_set.get(PREVIOUS):
        client.delete_registered_model_alias(model_name, PREVIOUS)
        aliases = {alias: v for alias, v in aliases.items() if alias != PREVIOUS}
    for alias in sorted(to_set, key=lambda name: name != CHAMPION):
        if aliases.get(alias) != to_set[alias]:
            client.set_registered_model_alias(model_name, alias, to_set[alias])
    for alias in to_remove:
        if alias in aliases:
            client.delete_registered_model_alias(model_name, alias)


def move(
    settings: Settings,
    model_name: str,
    action: Action,
    version: str,
    cause: Cause,
    *,
    crown: bool = False,
) -> AuditEvent | None:
    """Move a model's aliases for an action and record it in the audit trail.

    Idempotent per Airflow run: a retry of the same run finds the event it wrote and re-applies
    its effects instead of writing a second one. A move another run left half done (``champion``
    moved, ``previous`` not) is finished first, from that run's event.

    Args:
        settings: Where the audit trail lives.
        model_name: The registered model.
        action: What happens (see :func:`plan`).
        version: The version it is about.
        cause: Who, why, which Airflow run.
        crown: For ``timeout``: whether the spec's choice makes the version champion.

    Returns:
        The recorded event, or None when nothing changed and nothing needed recording (e.g. a
        version promoted that already was champion).
    """
    from trainyard.governance import audit

    identity = audit.event_id(model_name, action, cause, version)
    recorded = audit.find_event(settings, model_name, identity)
    aliases = current_aliases(model_name)
    if recorded is not None:
        log.info("event %s already recorded; re-applying its effects", identity)
        apply_effects(model_name, recorded.aliases_set, recorded.aliases_removed, aliases)
        audit.mirror_on_versions(recorded)
        return recorded
    last = audit.last_event(settings, model_name)
    if last is not None and unfinished(last, aliases):
        log.warning("finishing an interrupted move: %s", last.describe())
        apply_effects(model_name, last.aliases_set, last.aliases_removed, aliases)
        audit.mirror_on_versions(last)
        aliases = current_aliases(model_name)
    to_set, to_remove = plan(action, aliases, version, crown=crown)
    decides_only = action in ("reject", "timeout")
    if not to_set and not to_remove and not decides_only:
        log.info("%s v%s: no alias to move for %s", model_name, version, action)
        return None
    event = new_event(
        model_name,
        action,
        cause,
        from_version=aliases.get(CHAMPION),
        to_version=version,
        aliases_set=to_set,
        aliases_removed=to_remove,
    )
    uri = audit.append(settings, event)
    apply_effects(model_name, to_set, to_remove, aliases)
    audit.mirror_on_versions(event)
    log.info("audit %s: %s", uri, event.describe())
    return event


def restore(settings: Settings, model_name: str, cause: Cause) -> dict[str, Any]:
    """Rebuild a model's aliases from its audit trail alone, and record that it was done.

    Returns:
        What changed: ``{"set": {...}, "removed": [...]}`` (both empty when the registry already
        agreed with the trail).
    """
    from trainyard.governance import audit

    events = audit.read_events(settings, model_name)
    wanted = audit.replay(events)
    have = current_aliases(model_name)
    to_set = {alias: version for alias, version in wanted.items() if have.get(alias) != version}
    # Only trainyard's own aliases: others (a team's "staging", say) are not in the trail.
    to_remove = [a for a in (CHAMPION, PREVIOUS, CHALLENGER) if a in have and a not in wanted]
    if to_set or to_remove:
        event = new_event(
            model_name,
            "restore",
            cause,
            from_version=have.get(CHAMPION),
            to_version=wanted.get(CHAMPION),
            aliases_set=to_set,
            aliases_removed=to_remove,
        )
        audit.append(settings, event)
        apply_effects(model_name, to_set, to_remove, have)
    return {"set": to_set, "removed": to_remove}
