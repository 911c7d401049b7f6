"""Links from a task instance to the evidence it produced (MLflow run, model version, reports).

A task records *references* to what it produced under one XCom key, :data:`LINKS_XCOM_KEY`, as
soon as the thing exists, so a task that fails afterwards (a validation failure) still links to
its Data Docs. The Airflow plugin (plugins/trainyard_ui.py) turns a reference into a URL when
the UI asks: an MLflow page on the MLflow UI, an S3 object presigned for a short time (so a
logged-in Airflow user needs no S3 credentials), or a page of the Airflow UI itself (an
approval's Required Action). A task that recorded nothing gets no link.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum
from urllib.parse import quote

#: The XCom key under which a task records its link references (a ``{kind: reference}`` dict).
LINKS_XCOM_KEY = "trainyard_links"

#: How long a presigned link to an S3 report stays valid.
PRESIGN_SECONDS = 15 * 60


class LinkKind(StrEnum):
    """One kind of evidence; the value is the button's label in the Airflow UI."""

    MLFLOW_RUN = "MLflow run"
    MODEL_VERSION = "Model version"
    DATA_DOCS = "Data Docs"
    DRIFT_REPORT = "Drift report"
    SCORING_REPORT = "Scoring report"
    PERFORMANCE_REPORT = "Performance report"
    REQUIRED_ACTION = "Required action"


def mlflow_run_ref(experiment_id: str, run_id: str) -> str:
    """Reference to an MLflow run (a path of the MLflow UI)."""
    return f"experiments/{experiment_id}/runs/{run_id}"


def model_version_ref(model_name: str, version: str) -> str:
    """Reference to a registered model version (a path of the MLflow UI)."""
    return f"models/{quote(model_name, safe='')}/versions/{version}"


def task_required_action_ref(dag_id: str, run_id: str, task_id: str) -> str:
    """Reference to a task's Required Action (an approval) in the Airflow UI."""
    task = f"/dags/{quote(dag_id)}/runs/{quote(run_id, safe='')}/tasks/{quote(task_id)}"
    return f"{task}/required_actions"


def link_url(
    reference: str | None,
    *,
    mlflow_ui_url: str,
    presign: Callable[[str], str],
    airflow_url: str = "",
) -> str | None:
    """The URL a reference opens.

    Args:
        reference: An ``s3://`` URI, an Airflow UI path (starting with ``/``, from
            :func:`task_required_action_ref`), or an MLflow UI path from :func:`mlflow_run_ref` /
            :func:`model_version_ref`; empty or None for "nothing produced".
        mlflow_ui_url: Where people reach the MLflow UI.
        presign: Turns an ``s3://`` URI into a short-lived HTTP URL.
        airflow_url: Where people reach the Airflow UI ("" for a link on the same site).

    Returns:
        The URL, or None when there is nothing to link to.
    """
    if not reference:
        return None
    if reference.startswith("s3://"):
        return presign(reference)
    if reference.startswith("/"):
        return f"{airflow_url.rstrip('/')}{reference}"
    return f"{mlflow_ui_url.rstrip('/')}/#/{reference}"


def references_of(value: object) -> dict[str, str]:
    """The ``{kind: reference}`` dict a task recorded, ignoring anything that is not one."""
    if not isinstance(value, Mapping):
        return {}
    kinds = {kind.value for kind in LinkKind}
    return {
        str(kind): str(ref) for kind, ref in value.items() if kind in kinds and isinstance(ref, str)
    }
