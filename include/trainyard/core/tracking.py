"""MLflow: alias lookups and finding a finished run again.

Aliases move only through :func:`trainyard.governance.aliases.move` (audited).

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


def mlflow_run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """Browser URL of an MLflow run (artifacts tab)."""
    base = tracking_uri.rstrip("/")
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}/artifacts"


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
