"""Rollback: put an earlier version of a model back as ``champion``, on a person's word.

The pure check (:func:`choose_target`) refuses what cannot be meant: the current champion, a
version the model does not have, a version of another model, no reason. :func:`rollback` then
loads the target model before anything moves (a missing or broken artifact refuses the
rollback) and moves the aliases through :func:`trainyard.governance.aliases.move`, which records
the event. The replaced champion becomes ``previous``, so a second rollback undoes the first.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from trainyard.core.errors import DeterministicError
from trainyard.core.tracking import CHAMPION, PREVIOUS

if TYPE_CHECKING:
    from trainyard.core.settings import Settings
    from trainyard.governance.audit import AuditEvent, Cause

log = logging.getLogger(__name__)

_TARGET = re.compile(r"^(?:models:/)?(?:(?P<model>[^/@]+)/)?v?(?P<version>\d+)$")


class RollbackRefused(DeterministicError):
    """The rollback cannot be done as asked; the message says why. Nothing moved."""


def choose_target(
    model_name: str,
    requested: str | None,
    aliases: dict[str, str],
    versions: set[str],
    reason: str,
) -> str:
    """The version to roll back to, or a refusal.

    Args:
        model_name: The registered model being rolled back.
        requested: ``N``, ``vN``, ``<model>/N`` or ``models:/<model>/N``; empty or None: the
            version behind ``previous``.
        aliases: The model's aliases now.
        versions: The model's versions.
        reason: Why (required).

    Returns:
        The target version.

    Raises:
        RollbackRefused: No reason; an unparsable target; a version of another model; no such
            version; no ``previous`` to default to; the target already is champion.
    """
    if not reason.strip():
        raise RollbackRefused(f"rollback of {model_name}: a reason is required")
    requested = (requested or "").strip()
    if requested:
        match = _TARGET.match(requested)
        if match is None:
            raise RollbackRefused(
                f"rollback of {model_name}: target {requested!r} is not a version "
                f"(N, vN or {model_name}/N)"
            )
        if match["model"] is not None and match["model"] != model_name:
            raise RollbackRefused(
                f"rollback of {model_name}: {requested!r} is a version of model "
                f"{match['model']!r}, not of {model_name!r}"
            )
        target = match["version"]
    elif PREVIOUS in aliases:
        target = aliases[PREVIOUS]
    else:
        raise RollbackRefused(
            f"rollback of {model_name}: no version holds @{PREVIOUS}; "
            "name one with --to / to_version"
        )
    if target not in versions:
        known = ", ".join(f"v{v}" for v in sorted(versions, key=int)) or "none"
        raise RollbackRefused(
            f"rollback of {model_name}: it has no version {target} (versions: {known})"
        )
    if aliases.get(CHAMPION) == target:
        raise RollbackRefused(f"rollback of {model_name}: v{target} already is the champion")
    return target


def _versions(model_name: str) -> set[str]:
    from mlflow import MlflowClient

    return {str(v.version) for v in MlflowClient().search_model_versions(f"name = '{model_name}'")}


def _check_loads(model_name: str, version: str) -> None:
    """Load the target model; refuse the rollback when its artifact is missing or broken."""
    import mlflow

    from trainyard.core.services import is_transient

    try:
        mlflow.sklearn.load_model(f"models:/{model_name}/{version}")
    except Exception as error:
        if is_transient(error):
            raise
        first = f"{type(error).__name__}: {error}".strip().splitlines()[0]
        raise RollbackRefused(
            f"rollback of {model_name}: v{version} cannot be loaded, so it cannot serve: {first}"
        ) from error


def rollback(
    settings: Settings, model_name: str, requested: str | None, cause: Cause
) -> AuditEvent:
    """Make an earlier version champion again, after checking it loads; record who and why.

    Args:
        settings: Where the audit trail lives.
        model_name: The registered model.
        requested: The target (see :func:`choose_target`); None: the version behind ``previous``.
        cause: Who asked, why (``cause.reason`` is required), from which run.

    Returns:
        The recorded ``rollback`` event.

    Raises:
        RollbackRefused: See :func:`choose_target`; or the target does not load.
    """
    from trainyard.governance.aliases import current_aliases, move
    from trainyard.governance.audit import read_events

    done = [
        event
        for event in read_events(settings, model_name)
        if event.action == "rollback"
        and (event.cause.dag_id, event.cause.run_id) == (cause.dag_id, cause.run_id)
    ]
    if done and done[-1].to_version:  # a retry of this run: finish what it recorded
        return move(settings, model_name, "rollback", done[-1].to_version, cause) or done[-1]
    aliases = current_aliases(model_name)
    target = choose_target(model_name, requested, aliases, _versions(model_name), cause.reason)
    _check_loads(model_name, target)
    event = move(settings, model_name, "rollback", target, cause)
    if event is None:  # the champion moved to the target meanwhile
        raise RollbackRefused(f"rollback of {model_name}: v{target} already is the champion")
    log.info("rolled back: %s", event.describe())
    return event
