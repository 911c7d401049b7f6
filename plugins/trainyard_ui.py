"""trainyard in the Airflow UI: links from each task to its evidence, and a Models page.

- Extra links (``global_operator_extra_links``): a task that recorded references under
  :data:`trainyard.ui.links.LINKS_XCOM_KEY` gets a button per reference: *MLflow run*,
  *Model version*, *Data Docs*, *Drift report*. S3 reports are presigned for 15 minutes when the
  UI asks, so a logged-in user needs no S3 credentials; a task that recorded nothing shows none.
- The Models page (``fastapi_apps`` under ``/trainyard``, shown in the UI's navigation through
  ``external_views``): requires Airflow's own login (the ``_token`` cookie or a Bearer token;
  anonymous requests get 401) and the right to trigger a DAG for *Retrain now*.

Loaded by the API server (page, links) and by the other Airflow components; only light modules
are imported at the top.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Annotated, Any, ClassVar
from urllib.parse import urlencode

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink
from fastapi import Depends, FastAPI, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse

from trainyard.ui.links import LINKS_XCOM_KEY, PRESIGN_SECONDS, LinkKind, link_url, references_of
from trainyard.ui.models_page import URL_PREFIX

if TYPE_CHECKING:
    from airflow.models.taskinstancekey import TaskInstanceKey
    from sqlalchemy.orm import Session

    from trainyard.core.spec import PipelineSpec
    from trainyard.ui.models_page import PipelineRow, RunSummary

log = logging.getLogger(__name__)


def _presign(uri: str) -> str:
    """A short-lived URL of an S3 object, signed for the address browsers use."""
    from dataclasses import replace

    from trainyard.core import storage
    from trainyard.core.settings import Settings

    settings = Settings.from_env()
    public = replace(settings, s3_endpoint_url=settings.s3_public_url or settings.s3_endpoint_url)
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return storage.client(public).generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=PRESIGN_SECONDS
    )


def _xcom(session: Session, dag_id: str, run_id: str, task_id: str, key: str) -> Any:
    from airflow.models.xcom import XComModel

    row = session.execute(
        XComModel.get_many(key=key, run_id=run_id, dag_ids=dag_id, task_ids=task_id)
        .with_only_columns(XComModel.value)
        .limit(1)
    ).first()
    if row is None:
        return None
    try:
        return json.loads(row.value)
    except (TypeError, ValueError):
        return row.value


class _EvidenceLink(BaseOperatorLink):
    """A button on every task; it has a URL only where the task recorded this kind of evidence."""

    kind: ClassVar[LinkKind]

    @property
    def name(self) -> str:
        return self.kind.value

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        from airflow.utils.session import create_session

        from trainyard.core.settings import Settings

        with create_session() as session:
            recorded = _xcom(session, ti_key.dag_id, ti_key.run_id, ti_key.task_id, LINKS_XCOM_KEY)
        url = link_url(
            references_of(recorded).get(self.kind.value),
            mlflow_ui_url=Settings.from_env().mlflow_ui_url,
            presign=_presign,
        )
        return url or ""


class MlflowRunLink(_EvidenceLink):
    kind = LinkKind.MLFLOW_RUN


class ModelVersionLink(_EvidenceLink):
    kind = LinkKind.MODEL_VERSION


class DataDocsLink(_EvidenceLink):
    kind = LinkKind.DATA_DOCS


class DriftReportLink(_EvidenceLink):
    kind = LinkKind.DRIFT_REPORT


# ---- the Models page ---------------------------------------------------------------------------


def _latest_run(session: Session, dag_id: str, result_task: str) -> RunSummary | None:
    from airflow.models import DagRun, TaskInstance
    from sqlalchemy import select

    from trainyard.ui.models_page import RunSummary, drift_outcome, training_outcome

    run = session.scalars(
        select(DagRun).where(DagRun.dag_id == dag_id).order_by(DagRun.run_after.desc()).limit(1)
    ).first()
    if run is None:
        return None
    failed = session.scalars(
        select(TaskInstance.task_id).where(
            TaskInstance.dag_id == dag_id,
            TaskInstance.run_id == run.run_id,
            TaskInstance.state.in_(("failed", "upstream_failed")),
        )
    ).all()
    result = _xcom(session, dag_id, run.run_id, result_task, "return_value")
    state = str(run.state)
    outcome = (
        training_outcome(state, failed, result)
        if result_task == "report"
        else drift_outcome(state, failed, result)
    )
    conf = run.conf or {}
    return RunSummary(
        dag_id=dag_id,
        run_id=run.run_id,
        state=state,
        started=run.start_date,
        reason=str(conf.get("reason") or run.note or ""),
        outcome=outcome,
    )


def _pipeline_row(session: Session, spec: PipelineSpec) -> PipelineRow:
    from trainyard.core.tracking import champion_version
    from trainyard.drift.dag import has_drift_monitor
    from trainyard.ui.models_page import PipelineRow, champion_from_version

    champion = None
    version = champion_version(spec.registered_model_name)
    if version is not None:
        from mlflow import MlflowClient

        experiment_id = MlflowClient().get_run(version.run_id).info.experiment_id
        champion = champion_from_version(version, experiment_id)
    return PipelineRow(
        name=spec.name,
        model_name=spec.registered_model_name,
        training_dag_id=spec.training_dag_id,
        champion=champion,
        last_training=_latest_run(session, spec.training_dag_id, "report"),
        last_drift=(
            _latest_run(session, spec.drift_dag_id, "check_drift")
            if has_drift_monitor(spec)
            else None
        ),
    )


def _specs() -> dict[str, PipelineSpec]:
    from trainyard.core.settings import Settings
    from trainyard.core.spec import load_all_specs

    return {spec.name: spec for spec in load_all_specs(Settings.from_env().pipelines_dir)}


async def _current_user(request: Request) -> Any:
    """Airflow's own authentication (Bearer token or the UI's ``_token`` cookie); 401 without.

    Resolved per request, so that the components that load this plugin without serving it do
    not import the API server's security module.
    """
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

    return await get_user(request, None, await bearer_scheme(request))


User = Annotated[Any, Depends(_current_user)]

models_app = FastAPI(title="trainyard", docs_url=None, redoc_url=None, openapi_url=None)


@models_app.get("/models", response_class=HTMLResponse)
def models_page(request: Request, user: User, notice: str = "", error: str = "") -> str:
    """Every pipeline's champion, last training and last drift verdict, with actions."""
    from airflow.utils.session import create_session

    from trainyard.core.errors import TrainyardError
    from trainyard.core.services import service_errors
    from trainyard.core.settings import Settings
    from trainyard.ui.models_page import render_models_page

    rows = []
    with create_session() as session:
        for spec in _specs().values():
            try:
                with service_errors(Settings.from_env()):
                    rows.append(_pipeline_row(session, spec))
            except TrainyardError as failure:
                error = f"{error} {spec.name}: {failure}".strip()
    airflow_url = str(request.base_url).rstrip("/")
    return render_models_page(
        rows,
        mlflow_ui_url=Settings.from_env().mlflow_ui_url,
        airflow_url=airflow_url,
        notice=notice,
        error=error,
    )


@models_app.post("/models/{name}/retrain")
def retrain_now(name: str, reason: Annotated[str, Form()], user: User) -> RedirectResponse:
    """Trigger the pipeline's training DAG with the person's reason (needs the right to run it)."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import (
        DagAccessEntity,
        DagDetails,
    )
    from airflow.utils.types import DagRunTriggeredByType

    spec = _specs().get(name)
    if spec is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no pipeline named {name!r}")
    reason = reason.strip()
    if not reason:
        return _back(error="Retrain now needs a reason.")
    dag_id = spec.training_dag_id
    if not get_auth_manager().is_authorized_dag(
        method="POST", access_entity=DagAccessEntity.RUN, details=DagDetails(id=dag_id), user=user
    ):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"you may not trigger {dag_id}")
    run = trigger_dag(
        dag_id,
        triggered_by=DagRunTriggeredByType.UI,
        triggering_user_name=user.get_name(),
        conf={"reason": reason},
        note=f"Retrain now by {user.get_name()}: {reason}",
    )
    return _back(notice=f"triggered {dag_id} run {run.run_id if run else '?'}: {reason}")


def _back(**message: str) -> RedirectResponse:
    return RedirectResponse(
        f"{URL_PREFIX}/models?{urlencode(message)}", status_code=status.HTTP_303_SEE_OTHER
    )


class TrainyardUiPlugin(AirflowPlugin):
    """Task links to MLflow and S3 reports, and the Models page."""

    name = "trainyard_ui"
    global_operator_extra_links = [  # noqa: RUF012 - AirflowPlugin declares these as lists
        MlflowRunLink(),
        ModelVersionLink(),
        DataDocsLink(),
        DriftReportLink(),
    ]
    fastapi_apps = [{"app": models_app, "url_prefix": URL_PREFIX, "name": "trainyard models"}]  # noqa: RUF012
    external_views = [  # noqa: RUF012
        {
            "name": "Models",
            "href": f"{URL_PREFIX}/models",
            "destination": "nav",
            "url_route": "trainyard-models",
        }
    ]
