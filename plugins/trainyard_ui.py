"""trainyard in the Airflow UI: links from each task to its evidence, and a Models page.

- Extra links (``global_operator_extra_links``): a task that recorded references under
  :data:`trainyard.ui.links.LINKS_XCOM_KEY` gets a button per reference: *MLflow run*,
  *Model version*, *Data Docs*, *Drift report*, *Scoring report*, *Performance report*, and
  *Required action* (an approval's page in this UI). S3 reports are presigned for 15 minutes
  when the UI asks, so a logged-in user needs no S3 credentials; a task that recorded nothing
  shows none.
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

    from trainyard.core.settings import Settings
    from trainyard.core.spec import PipelineSpec
    from trainyard.ui.models_page import PipelineRow, Realised, RunSummary

log = logging.getLogger(__name__)


def _presign(uri: str) -> str:
    """A short-lived URL of an S3 object, signed for the address browsers use."""
    from dataclasses import replace

    from trainyard.core import storage
    from trainyard.core.settings import Settings

    settings = Settings.from_env()
    public = replace(settings, s3_endpoint_url=settings.s3_public_url or settings.s3_endpoint_url)
    return storage.presigned_url(public, uri, expires_seconds=PRESIGN_SECONDS)


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
        from airflow.configuration import conf
        from airflow.utils.session import create_session

        from trainyard.core.settings import Settings

        with create_session() as session:
            recorded = _xcom(session, ti_key.dag_id, ti_key.run_id, ti_key.task_id, LINKS_XCOM_KEY)
        url = link_url(
            references_of(recorded).get(self.kind.value),
            mlflow_ui_url=Settings.from_env().mlflow_ui_url,
            presign=_presign,
            # Unset: Airflow pages are linked relative to the UI showing the button.
            airflow_url=conf.get("api", "base_url", fallback=None) or "",
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


class ScoringReportLink(_EvidenceLink):
    kind = LinkKind.SCORING_REPORT


class PerformanceReportLink(_EvidenceLink):
    kind = LinkKind.PERFORMANCE_REPORT


class RequiredActionLink(_EvidenceLink):
    kind = LinkKind.REQUIRED_ACTION


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


def _pipeline_row(session: Session, spec: PipelineSpec, settings: Settings) -> PipelineRow:
    from trainyard.core.tracking import alias_version, champion_version
    from trainyard.drift.dag import has_drift_monitor
    from trainyard.governance.aliases import CHALLENGER
    from trainyard.governance.audit import read_events
    from trainyard.ui.models_page import (
        PipelineRow,
        champion_from_version,
        pending_from_version,
        with_audit,
    )

    champion = None
    version = champion_version(spec.registered_model_name)
    if version is not None:
        from mlflow import MlflowClient

        experiment_id = MlflowClient().get_run(version.run_id).info.experiment_id
        champion = with_audit(
            champion_from_version(version, experiment_id),
            read_events(settings, spec.registered_model_name),
        )
    challenger = alias_version(spec.registered_model_name, CHALLENGER)
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
        pending_approval=pending_from_version(challenger) if challenger else None,
        realised=_realised(spec),
    )


def _realised(spec: PipelineSpec) -> Realised | None:
    """The performance monitor's latest realised metrics (pipelines that have the monitor)."""
    from trainyard.monitoring.steps import latest_check_run
    from trainyard.ui.models_page import realised_from_run

    if spec.performance is None:
        return None
    run = latest_check_run(spec)
    return realised_from_run(run) if run is not None else None


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
    """Every pipeline's champion, realised metrics, pending approval, last training and last
    drift verdict, with actions."""
    from airflow.utils.session import create_session

    from trainyard.core.errors import TrainyardError
    from trainyard.core.services import service_errors
    from trainyard.core.settings import Settings
    from trainyard.ui.models_page import render_models_page

    settings = Settings.from_env()
    rows = []
    with create_session() as session:
        for spec in _specs().values():
            try:
                with service_errors(settings):
                    rows.append(_pipeline_row(session, spec, settings))
            except TrainyardError as failure:
                error = f"{error} {spec.name}: {failure}".strip()
    return render_models_page(
        rows,
        mlflow_ui_url=settings.mlflow_ui_url,
        airflow_url=_airflow_url(request),
        notice=notice,
        error=error,
    )


@models_app.get("/models/{name}", response_class=HTMLResponse)
def history_page(request: Request, name: str, user: User) -> str:
    """A pipeline's audit timeline: every alias move, who made it, when and why."""
    from trainyard.core.services import service_errors
    from trainyard.core.settings import Settings
    from trainyard.governance.audit import read_events
    from trainyard.ui.models_page import render_history_page

    spec = _spec(name)
    settings = Settings.from_env()
    with service_errors(settings):
        events = read_events(settings, spec.registered_model_name)
    return render_history_page(
        spec.name, spec.registered_model_name, events, airflow_url=_airflow_url(request)
    )


@models_app.post("/models/{name}/retrain")
def retrain_now(name: str, reason: Annotated[str, Form()], user: User) -> RedirectResponse:
    """Trigger the pipeline's training DAG with the person's reason."""
    spec = _spec(name)
    return _trigger(spec.training_dag_id, {"reason": reason.strip()}, user, "Retrain now")


@models_app.post("/models/{name}/rollback")
def roll_back(
    name: str,
    reason: Annotated[str, Form()],
    user: User,
    to_version: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """Trigger the pipeline's rollback DAG (empty version: the one holding ``previous``).

    The rollback DAG checks the target (loads it first; refuses the current champion or a
    version of another model) and records the move in the audit trail.
    """
    spec = _spec(name)
    conf = {"to_version": to_version.strip().removeprefix("v"), "reason": reason.strip()}
    return _trigger(spec.rollback_dag_id, conf, user, "Roll back")


def _spec(name: str) -> PipelineSpec:
    spec = _specs().get(name)
    if spec is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no pipeline named {name!r}")
    return spec


def _airflow_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _trigger(dag_id: str, conf: dict[str, str], user: Any, action: str) -> RedirectResponse:
    """Trigger ``dag_id`` as ``user`` with ``conf`` (which must carry a reason).

    Raises:
        HTTPException: 403 when the user may not run that DAG.
    """
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import (
        DagAccessEntity,
        DagDetails,
    )
    from airflow.utils.types import DagRunTriggeredByType

    if not conf["reason"]:
        return _back(error=f"{action} needs a reason.")
    if not get_auth_manager().is_authorized_dag(
        method="POST", access_entity=DagAccessEntity.RUN, details=DagDetails(id=dag_id), user=user
    ):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"you may not trigger {dag_id}")
    run = trigger_dag(
        dag_id,
        triggered_by=DagRunTriggeredByType.UI,
        triggering_user_name=user.get_name(),
        conf=conf,
        note=f"{action} by {user.get_name()}: {conf['reason']}",
    )
    return _back(notice=f"triggered {dag_id} run {run.run_id if run else '?'}: {conf['reason']}")


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
        ScoringReportLink(),
        PerformanceReportLink(),
        RequiredActionLink(),
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
