"""MLflow: the champion lookup, alias moves and finding a finished run again.

The tracking server comes from ``MLFLOW_TRACKING_URI`` (and ``MLFLOW_TRACKING_USERNAME`` /
``MLFLOW_TRACKING_PASSWORD`` when it has auth); MLflow reads them itself. MLflow is imported
inside the functions.
"""

from __future__ import annotations

from typing import Any

CHAMPION = "champion"
PREVIOUS = "previous"

#: MLflow error codes that mean "no such model or alias" (as opposed to a server problem).
_NOT_FOUND = frozenset({"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"})


#: Version tag a promotion writes before moving any alias: the champion the version replaces
#: ("" for none). Lets a rerun finish a promotion that was interrupted between the two moves.
REPLACES_TAG = "promotion.replaces"


def alias_version(model_name: str, alias: str) -> Any | None:
    """The model version holding ``alias``, or None (also when no model exists)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return MlflowClient().get_model_version_by_alias(model_name, alias)
    except MlflowException as error:
        if error.error_code in _NOT_FOUND:
            return None
        raise


def champion_version(model_name: str) -> Any | None:
    """The model version holding the ``champion`` alias, or None (also when no model exists)."""
    return alias_version(model_name, CHAMPION)


def promote(model_name: str, version: str) -> str | None:
    """Make ``version`` the champion; the champion it replaces becomes ``previous``.

    Safe to interrupt at any point, and a rerun finishes the job: the intent (which champion
    ``version`` replaces) is written to the version first, then ``champion`` moves, then
    ``previous``. So ``champion`` and ``previous`` never name the same version, and a crash
    between the two moves leaves the new champion serving with ``previous`` not yet moved, which
    the rerun (finding ``version`` already champion) completes from the recorded intent.

    Returns:
        The version that was champion before, or None (there was none, or ``version`` already was
        the champion and nothing was left to finish).
    """
    from mlflow import MlflowClient

    client = MlflowClient()
    current = champion_version(model_name)
    if current is not None and current.version == version:
        replaced = current.tags.get(REPLACES_TAG)
        previous = alias_version(model_name, PREVIOUS)
        if not replaced or (previous is not None and previous.version == replaced):
            return None
        client.set_registered_model_alias(model_name, PREVIOUS, replaced)
        return replaced
    replaced = current.version if current is not None else ""
    client.set_model_version_tag(model_name, version, REPLACES_TAG, replaced)
    previous = alias_version(model_name, PREVIOUS)
    if previous is not None and previous.version == version:
        # Re-promoting the previous champion: take `previous` off it first, so that `champion`
        # and `previous` are never on one version.
        client.delete_registered_model_alias(model_name, PREVIOUS)
    client.set_registered_model_alias(model_name, CHAMPION, version)
    if replaced:
        client.set_registered_model_alias(model_name, PREVIOUS, replaced)
    return replaced or None


def find_finished_run(experiment_id: str, tags: dict[str, str]) -> Any | None:
    """The newest FINISHED run of an experiment carrying every one of ``tags``, or None.

    Lets a retried step reuse the run its earlier attempt completed instead of redoing it.
    """
    from mlflow import MlflowClient

    conditions = [f"tags.{key} = '{value}'" for key, value in tags.items()]
    runs = MlflowClient().search_runs(
        [experiment_id],
        filter_string=" and ".join([*conditions, "attributes.status = 'FINISHED'"]),
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None
