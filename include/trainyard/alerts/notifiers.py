"""Airflow's side of alerts: the notifiers (callbacks) and what the tasks call on an event.

- :class:`TaskFailedNotifier` is every trainyard DAG's ``on_failure_callback``: Airflow calls it
  once a task failed for good (after its retries; at once for a deterministic error), never for
  an attempt that will be retried;
- :class:`ApprovalWaitingNotifier` is the approval operator's notifier: called when the request
  is written, before the task waits for a person;
- :func:`alert_gate_rejection`, :func:`alert_monitor_verdict` and :func:`alert_rollback` are
  called by the ``gate``, ``decide`` and ``rollback`` tasks with the records they made.

Each gathers the numbers and links, builds the message (:mod:`trainyard.alerts.messages`) and
hands it to :func:`trainyard.alerts.delivery.deliver`, which sends it once per event and
channel. None of them raises: an alert that cannot be built or sent is logged, and the task's
own outcome stands. Imported by the DAG builders at parse time: the Airflow SDK and trainyard's
light modules only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseNotifier

from trainyard.alerts import messages
from trainyard.core.settings import AlertSettings, Settings

if TYPE_CHECKING:
    from trainyard.core.spec import PipelineSpec
    from trainyard.data.validation import ValidationReport

log = logging.getLogger(__name__)


@contextmanager
def _never_fails(what: str) -> Iterator[None]:
    """Log, never raise: an alert must not change the outcome of the task that has it."""
    try:
        yield
    except Exception:  # noqa: BLE001 (a failing notifier never fails the pipeline)
        log.exception("could not send the %s alert; the run goes on", what)


def _airflow_ui_url() -> str:
    try:
        return AlertSettings.from_env().airflow_ui_url
    except ValueError:
        return AlertSettings().airflow_ui_url


def _browser_url(settings: Settings, uri: str | None) -> str | None:
    """An ``s3://`` report as a URL a person can open (presigned), else as it is."""
    if not uri or not uri.startswith("s3://"):
        return uri
    from trainyard.core import storage

    try:
        return storage.presigned_url(settings, uri)
    except Exception as error:  # noqa: BLE001 (the link degrades to the S3 URI)
        log.warning("cannot presign %s (%s)", uri, error)
        return uri


def _mlflow_run_url(
    settings: Settings, run_id: str | None, experiment_id: str | None = None
) -> str:
    """The MLflow UI page of a run (its experiment is looked up when not given)."""
    if not run_id:
        return ""
    from trainyard.ui.links import link_url, mlflow_run_ref

    if experiment_id is None:
        try:
            from mlflow import MlflowClient

            experiment_id = MlflowClient().get_run(run_id).info.experiment_id
        except Exception as error:  # noqa: BLE001 (the link is left out, the alert still goes)
            log.warning("cannot look up MLflow run %s (%s)", run_id, error)
            return ""
    return (
        link_url(
            mlflow_run_ref(experiment_id, run_id),
            mlflow_ui_url=settings.mlflow_ui_url,
            presign=lambda uri: uri,
        )
        or ""
    )


def _links(*pairs: tuple[str, str | None], base: dict[str, str]) -> dict[str, str]:
    return {**base, **{label: url for label, url in pairs if url}}


def _validation_report(error: BaseException | None) -> ValidationReport | None:
    """The validation report behind a failure (through ``raise ... from``), if there is one."""
    from trainyard.data.validation import ValidationFailed

    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, ValidationFailed):
            return error.report
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


class PipelineNotifier(BaseNotifier):
    """A notifier that knows its pipeline (the alerts name it and are stored under it)."""

    def __init__(self, pipeline: str) -> None:
        super().__init__()
        self.pipeline = pipeline


class TaskFailedNotifier(PipelineNotifier):
    """``on_failure_callback`` of every trainyard task: the task failed after its retries.

    A validation failure lists every failed expectation and links its result and Data Docs.
    """

    def notify(self, context: dict[str, Any]) -> None:
        """Build and send the failure alert from the callback's context."""
        with _never_fails("task failure"):
            ti, dag_run = context["ti"], context["dag_run"]
            error = context.get("exception")
            settings = Settings.from_env()
            report = _validation_report(error if isinstance(error, BaseException) else None)
            links = _links(
                ("validation result", _browser_url(settings, report and report.result_uri)),
                ("Data Docs", _browser_url(settings, report and report.data_docs_uri)),
                base=messages.airflow_links(
                    _airflow_ui_url(), dag_run.dag_id, dag_run.run_id, ti.task_id
                ),
            )
            alert = messages.task_failed(
                self.pipeline,
                dag_run.dag_id,
                dag_run.run_id,
                ti.task_id,
                int(getattr(ti, "try_number", 1) or 1),
                str(error) if error else "failed",
                [failure.describe() for failure in report.failures] if report else [],
                links,
            )
            from trainyard.alerts.delivery import deliver

            deliver(alert)


class ApprovalWaitingNotifier(PipelineNotifier):
    """Notifier of the approval operator: a challenger waits for a person, with the link."""

    def notify(self, context: dict[str, Any]) -> None:
        """Send the request's subject and body with the Required Actions link."""
        with _never_fails("approval waiting"):
            task, dag_run = context["task"], context["dag_run"]
            base = _airflow_ui_url()
            alert = messages.approval_waiting(
                self.pipeline,
                dag_run.dag_id,
                dag_run.run_id,
                str(task.subject),
                str(task.body or ""),
                messages.required_actions_url(base),
                messages.airflow_links(base, dag_run.dag_id, dag_run.run_id, task.task_id),
            )
            from trainyard.alerts.delivery import deliver

            deliver(alert)


def alert_gate_rejection(
    spec: PipelineSpec, decision: dict[str, Any], trained: dict[str, Any], context: dict[str, Any]
) -> None:
    """Tell that the gate rejected this run's challenger (the ``gate`` task calls this)."""
    with _never_fails("gate rejection"):
        from trainyard.alerts.delivery import deliver
        from trainyard.training.gate import GateDecision

        dag_run = context["dag_run"]
        settings = Settings.from_env()
        run_url = _mlflow_run_url(settings, trained["mlflow_run_id"], trained["experiment_id"])
        links = _links(
            ("MLflow run", run_url),
            ("gate decision", run_url and f"{run_url}/artifacts/gate/decision.txt"),
            base=messages.airflow_links(_airflow_ui_url(), dag_run.dag_id, dag_run.run_id),
        )
        deliver(
            messages.gate_rejected(
                spec.name,
                spec.registered_model_name,
                dag_run.dag_id,
                dag_run.run_id,
                GateDecision.model_validate(decision),
                links,
            )
        )


def alert_monitor_verdict(
    decision: dict[str, Any], summary: dict[str, Any], context: dict[str, Any]
) -> None:
    """Tell a drift or decay verdict and what storm protection decided (``decide`` calls this);
    a run without such a verdict sends nothing."""
    with _never_fails("monitor verdict"):
        from trainyard.alerts.delivery import deliver
        from trainyard.drift.policy import RetrainDecision

        verdict = RetrainDecision.model_validate(decision)
        if verdict.action not in messages.VERDICT_ACTIONS:
            return
        dag_run = context["dag_run"]
        settings = Settings.from_env()
        links = _links(
            ("MLflow run", _mlflow_run_url(settings, summary.get("mlflow_run_id"))),
            ("report", _browser_url(settings, summary.get("report_uri"))),
            ("summary", _browser_url(settings, summary.get("summary_uri"))),
            base=messages.airflow_links(_airflow_ui_url(), dag_run.dag_id, dag_run.run_id),
        )
        deliver(messages.monitor_verdict(verdict, summary, links))


def alert_rollback(spec: PipelineSpec, event: Any, context: dict[str, Any]) -> None:
    """Tell that ``champion`` was rolled back (the ``rollback`` task calls this with its event)."""
    with _never_fails("rollback"):
        from trainyard.alerts.delivery import deliver
        from trainyard.ui.links import link_url, model_version_ref

        dag_run = context["dag_run"]
        settings = Settings.from_env()
        versions = {
            f"v{version} in MLflow": link_url(
                model_version_ref(event.model_name, version),
                mlflow_ui_url=settings.mlflow_ui_url,
                presign=lambda uri: uri,
            )
            for version in (event.to_version, event.from_version)
            if version
        }
        links = _links(
            *versions.items(),
            base=messages.airflow_links(_airflow_ui_url(), dag_run.dag_id, dag_run.run_id),
        )
        deliver(messages.rolled_back(spec.name, event, links))
