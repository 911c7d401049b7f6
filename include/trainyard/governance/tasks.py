"""Airflow adapters of the governance steps (rollback, approval): Params and XComs in, one step,
a small dict out.

Heavy libraries are imported inside the steps, never here.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowSkipException

from trainyard.airflow.common import actor, airflow_failures
from trainyard.alerts.notifiers import alert_rollback
from trainyard.core.settings import Settings

if TYPE_CHECKING:
    from trainyard.core.spec import PipelineSpec

log = logging.getLogger(__name__)


def rollback(spec: PipelineSpec, context: dict[str, Any]) -> dict[str, Any]:
    """Roll ``champion`` back to the ``to_version`` Param (default: ``previous``), for ``reason``.

    A refusal (no reason, the current champion, another model's version, a version that does not
    load) fails the task at once, without retries, naming why; nothing moves.
    """
    from trainyard.governance.audit import Cause
    from trainyard.governance.rollback import rollback as roll_back

    params = context["params"]
    dag_run = context["dag_run"]
    cause = Cause(
        actor=actor(context),
        reason=(params.get("reason") or "").strip(),
        dag_id=dag_run.dag_id,
        run_id=dag_run.run_id,
    )
    with airflow_failures(spec, "the rollback"):
        event = roll_back(
            Settings.from_env(), spec.registered_model_name, params.get("to_version"), cause
        )
    log.info("%s", event.describe())
    alert_rollback(spec, event, context)
    return event.model_dump(mode="json")


# ---- approval (promotion.mode: approval) --------------------------------------------------------


def _links(
    settings: Settings, trained: dict[str, Any], validation: dict[str, Any], context: dict[str, Any]
) -> dict[str, str]:
    """Browser links for the reviewer: the MLflow run, the validation result and Data Docs, the
    drift report that triggered the run (S3 objects as pre-signed URLs)."""
    import mlflow

    from trainyard.core import storage
    from trainyard.core.tracking import mlflow_run_url

    links = {
        "MLflow run": mlflow_run_url(
            mlflow.get_tracking_uri(), trained["experiment_id"], trained["mlflow_run_id"]
        )
    }
    for label, uri in (
        ("validation result", validation.get("result_uri")),
        ("Data Docs", validation.get("data_docs_uri")),
        ("drift report", context["params"].get("drift_report_uri")),
    ):
        if uri:
            links[label] = storage.presigned_url(settings, uri)
    return links


def ask_for_approval(
    spec: PipelineSpec,
    registration: dict[str, Any] | None,
    decision: dict[str, Any],
    trained: dict[str, Any],
    validation: dict[str, Any],
    context: dict[str, Any],
) -> bool:
    """Write the reviewer's request (XComs ``subject`` and ``body``) for a version waiting as
    ``challenger``; False (no approval asked) when it already is champion (a rerun)."""
    from trainyard.governance.aliases import CHALLENGER
    from trainyard.governance.approval import request_text
    from trainyard.training.gate import GateDecision

    if not registration or registration["alias"] != CHALLENGER:
        log.info("no approval needed: the version already is champion")
        return False
    with airflow_failures(spec, "the approval"):
        links = _links(Settings.from_env(), trained, validation, context)
    subject, body = request_text(
        spec.registered_model_name,
        registration["version"],
        GateDecision.model_validate(decision),
        links,
        spec.promotion.timeout,
        spec.promotion.on_timeout,
    )
    context["ti"].xcom_push(key="subject", value=subject)
    context["ti"].xcom_push(key="body", value=body)
    return True


def _settle(spec: PipelineSpec, registration: dict[str, Any], context: dict[str, Any]) -> Any:
    """The approval's verdict and the audit cause it gives; None when no approval was asked."""
    from trainyard.governance.approval import APPROVAL_TASK_ID, verdict
    from trainyard.governance.audit import Cause

    response = context["ti"].xcom_pull(task_ids=APPROVAL_TASK_ID, key="answer")
    if not response:
        return None, None
    found = verdict(response, spec.promotion.on_timeout, spec.promotion.timeout)
    dag_run = context["dag_run"]
    cause = Cause(
        actor=found.actor,
        reason=found.comment,
        dag_id=dag_run.dag_id,
        run_id=dag_run.run_id,
        details={"mlflow_run_id": registration["lineage"].get("mlflow_run_id", "")},
    )
    return found, cause


def promote_approved(
    spec: PipelineSpec, registration: dict[str, Any], context: dict[str, Any]
) -> dict[str, Any]:
    """Make an approved challenger champion (Airflow skips this task on a rejection)."""
    from trainyard.governance.aliases import move

    found, cause = _settle(spec, registration, context)
    with airflow_failures(spec, "the promotion"):
        move(
            Settings.from_env(),
            spec.registered_model_name,
            found.action,
            registration["version"],
            cause,
            crown=True,
        )
    _record_on_card(spec, registration, found.describe())
    log.info("%s", found.describe())
    return {"crown": True, "describe": found.describe()}


def settle_approval(
    spec: PipelineSpec, registration: dict[str, Any] | None, context: dict[str, Any]
) -> dict[str, Any]:
    """Record a rejection (or a timeout the spec rejects): the challenger alias goes, the
    champion stays. An approval was recorded by ``promote``; no approval asked: skipped."""
    from trainyard.governance.aliases import move

    found, cause = _settle(spec, registration or {}, context) if registration else (None, None)
    if found is None:
        raise AirflowSkipException("no approval was asked (gate rejected, or already champion)")
    if not found.crown:
        with airflow_failures(spec, "the approval"):
            move(
                Settings.from_env(),
                spec.registered_model_name,
                found.action,
                registration["version"],
                cause,
            )
        _record_on_card(spec, registration, found.describe())
        log.warning("NOT APPROVED; the champion stays. %s", found.describe())
    return {"crown": found.crown, "describe": found.describe()}


def _record_on_card(spec: PipelineSpec, registration: dict[str, Any], outcome: str) -> None:
    """Put the reviewer's answer on the challenger's model card."""
    from trainyard.governance.model_card import record_approval

    with airflow_failures(spec, "the model card"):
        uri = record_approval(
            Settings.from_env(), spec.registered_model_name, str(registration["version"]), outcome
        )
    log.info("model card %s", uri or "absent (registered before cards): nothing to update")
