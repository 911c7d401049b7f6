"""MLflow: alias lookups, finding a finished run again, closing the runs of killed tasks.

Aliases move only through :func:`trainyard.governance.aliases.move` (audited).

The tracking server comes from ``MLFLOW_TRACKING_URI`` (and ``MLFLOW_TRACKING_USERNAME`` /
``MLFLOW_TRACKING_PASSWORD`` when it has auth); MLflow reads them itself. MLflow is imported
inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from trainyard.core.errors import NothingToDoError

if TYPE_CHECKING:
    import pandas as pd

CHAMPION = "champion"
PREVIOUS = "previous"

#: MLflow error codes that mean "no such model or alias" (as opposed to a server problem).
_NOT_FOUND = frozenset({"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"})


class NoChampionError(NothingToDoError):
    """The pipeline has no champion yet: nothing to compare against or to score with."""


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


def dataset_schema(frame: pd.DataFrame) -> Any:
    """The MLflow schema of a snapshot's rows, from its column types alone (pure).

    MLflow infers a dataset's schema by visiting every value of every text column in Python:
    about 25 s per million rows of the churn snapshot, a third of the fit. A snapshot's columns
    are normalised to one type each (text columns hold strings or None), so the types say it all.

    Args:
        frame: Normalised snapshot rows.

    Returns:
        An ``mlflow.types.Schema`` with one column spec per column.
    """
    import pandas as pd
    from mlflow.types import ColSpec, DataType, Schema

    types = pd.api.types

    def kind(values: pd.Series) -> DataType:
        if types.is_bool_dtype(values.dtype):
            return DataType.boolean
        if types.is_integer_dtype(values.dtype):
            return DataType.long
        if types.is_float_dtype(values.dtype):
            return DataType.double
        if types.is_datetime64_any_dtype(values.dtype):
            return DataType.datetime
        return DataType.string

    return Schema(
        [
            ColSpec(kind(frame[column]), str(column), required=not frame[column].hasnans)
            for column in frame.columns
        ]
    )


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


def log_check_files(
    settings: Any, folder: str, summary: dict[str, Any], report_uri: str | None
) -> None:
    """Inside the active MLflow run: a monitor check's summary and its HTML report (copied from
    S3), under ``folder``.

    Args:
        settings: Buckets and endpoint (a :class:`trainyard.core.settings.Settings`).
        folder: The artifact folder (``drift``, ``performance``).
        summary: The check's JSON summary.
        report_uri: The HTML report on S3, if the check made one.
    """
    import tempfile
    from pathlib import Path

    import mlflow

    from trainyard.core import storage

    mlflow.log_dict(summary, f"{folder}/summary.json")
    if report_uri:
        with tempfile.TemporaryDirectory(prefix=f"trainyard-{folder}-") as workdir:
            html = Path(workdir) / "report.html"
            html.write_bytes(storage.get_bytes(settings, report_uri))
            mlflow.log_artifact(str(html), folder)


def close_orphaned_runs(experiment_id: str, tags: dict[str, str]) -> list[str]:
    """Mark RUNNING runs carrying every one of ``tags`` KILLED, and their unfinished models FAILED.

    A task process killed mid-run (SIGKILL, out of memory, a lost worker) never ends its MLflow
    run: it would stay RUNNING forever, and the model it was logging PENDING. The retry of that
    task calls this first, with the tags naming its Airflow run, so the killed attempt's work is
    visibly closed and never mistaken for a live one.

    Args:
        experiment_id: The experiment to search.
        tags: Tags every orphan carries (e.g. the Airflow DAG and run ids).

    Returns:
        The ids of the runs marked KILLED.
    """
    from mlflow import MlflowClient
    from mlflow.entities import LoggedModelStatus

    client = MlflowClient()
    conditions = [f"tags.{key} = '{value}'" for key, value in tags.items()]
    orphans = client.search_runs(
        [experiment_id],
        filter_string=" and ".join([*conditions, "attributes.status = 'RUNNING'"]),
    )
    for orphan in orphans:
        run_id = orphan.info.run_id
        models = client.search_logged_models(
            [experiment_id], filter_string=f"source_run_id = '{run_id}'"
        )
        for model in models:
            if model.status == LoggedModelStatus.PENDING:
                client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
        client.set_tag(run_id, "closed_as_orphan", "the task process ended without closing it")
        client.set_terminated(run_id, status="KILLED")
    return [orphan.info.run_id for orphan in orphans]


def newest_finished_runs(experiment_name: str, condition: str, max_results: int) -> list[Any]:
    """The newest FINISHED runs of an experiment meeting an MLflow filter ``condition``, newest
    first; none when the experiment does not exist yet."""
    from mlflow import MlflowClient

    client = MlflowClient()
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return []
    return client.search_runs(
        [experiment.experiment_id],
        filter_string=f"{condition} and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=max_results,
    )


def log_monitoring_run(
    experiment_name: str,
    run_name: str,
    tags: dict[str, str],
    params: dict[str, Any],
    metrics: dict[str, float],
    artifacts: Callable[[], None],
) -> str:
    """One monitor check as an MLflow run (the drift and the performance monitors' one writer).

    Idempotent: a finished run carrying the same ``airflow_dag_id``, ``airflow_run_id`` and
    ``summary_uri`` tags (a retry of the same check) is returned instead of logging again.

    Args:
        experiment_name: The pipeline's monitoring experiment.
        run_name: The MLflow run's name.
        tags: Must hold ``airflow_dag_id``, ``airflow_run_id`` and ``summary_uri``.
        params: Settings of the check.
        metrics: Its numbers.
        artifacts: Logs the check's files inside the active run.

    Returns:
        The MLflow run id.
    """
    import mlflow

    experiment = mlflow.set_experiment(experiment_name)
    identity = {key: tags[key] for key in ("airflow_dag_id", "airflow_run_id", "summary_uri")}
    existing = find_finished_run(experiment.experiment_id, identity)
    if existing is not None:
        return existing.info.run_id
    with mlflow.start_run(run_name=run_name, tags=tags) as run:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        artifacts()
    return run.info.run_id
