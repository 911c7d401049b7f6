"""What every trainyard DAG shares: start date, retries, Params, run context, failure mapping.

Imported by the DAG builders at parse time: only the Airflow SDK and trainyard's light core
modules are imported here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import Param
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from trainyard.alerts.notifiers import TaskFailedNotifier
from trainyard.core.errors import DeterministicError, NothingToDoError
from trainyard.core.settings import Settings

if TYPE_CHECKING:
    from trainyard.core.lineage import RunContext
    from trainyard.core.spec import PipelineSpec
    from trainyard.ui.links import LinkKind

START_DATE = datetime(2026, 1, 1, tzinfo=UTC)


def dag_arguments(spec: PipelineSpec, execution_timeout: timedelta) -> dict[str, Any]:
    """The ``DAG(...)`` arguments every trainyard DAG shares.

    A fixed start date without catch-up, one run at a time, the spec's owner, and retries with
    exponential backoff for transient failures (S3, MLflow, network, a killed task process),
    the first after ``TRAINYARD_TASK_RETRY_DELAY`` seconds (default 30). Deterministic failures
    skip these retries: :func:`airflow_failures` turns them into ``AirflowFailException``. A task
    that fails for good (not an attempt that will be retried) sends an alert
    (:class:`~trainyard.alerts.notifiers.TaskFailedNotifier`).

    Args:
        spec: The pipeline (its owner).
        execution_timeout: How long one task may run.
    """
    return {
        "start_date": START_DATE,
        "catchup": False,
        "max_active_runs": 1,
        "default_args": {
            "owner": spec.owner,
            "retries": 2,
            "retry_delay": timedelta(seconds=Settings.from_env().task_retry_delay_seconds),
            "retry_exponential_backoff": 2.0,
            "max_retry_delay": timedelta(minutes=10),
            "execution_timeout": execution_timeout,
            "on_failure_callback": [TaskFailedNotifier(spec.name)],
        },
    }


def window_params(default_days: int, end_description: str) -> dict[str, Param]:
    """The ``window_end`` / ``window_days`` Params of a manual run."""
    return {
        "window_end": Param(
            None, type=["null", "string"], format="date", description=end_description
        ),
        "window_days": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            description=f"Days in the window (default {default_days}).",
        ),
    }


def run_time(context: dict[str, Any]) -> datetime:
    """When a run is for (UTC): the scheduled tick, or when a manual/triggered run was created."""
    dag_run = context["dag_run"]
    moment = dag_run.logical_date or dag_run.run_after
    return moment.astimezone(UTC).replace(tzinfo=None)


def run_day(context: dict[str, Any]) -> date:
    """The day a run is for (UTC)."""
    return run_time(context).date()


def window_end_param(context: dict[str, Any]) -> date | None:
    """The ``window_end`` Param as a date (None when not given)."""
    value = context["params"].get("window_end")
    return date.fromisoformat(value) if value else None


def trigger_reason(context: dict[str, Any]) -> str:
    """Why this run exists: the ``reason`` param/conf if given, else the run type."""
    reason = (context["params"].get("reason") or "").strip()
    if reason:
        return reason
    run_type = str(getattr(context["dag_run"].run_type, "value", context["dag_run"].run_type))
    return {"scheduled": "schedule", "manual": "manual"}.get(run_type, run_type)


def actor(context: dict[str, Any]) -> str:
    """Who started this run: the drift monitor, the schedule, or the Airflow user who did."""
    if (context["params"].get("drift_report_uri") or "").strip():
        return "drift monitor"
    dag_run = context["dag_run"]
    run_type = str(getattr(dag_run.run_type, "value", dag_run.run_type))
    if run_type == "scheduled":
        return "schedule"
    return getattr(dag_run, "triggering_user_name", None) or run_type


def run_context(context: dict[str, Any]) -> RunContext:
    """Lineage identity of the current Airflow run."""
    from trainyard.core.lineage import RunContext, git_commit

    dag_run = context["dag_run"]
    return RunContext(
        dag_id=dag_run.dag_id,
        run_id=dag_run.run_id,
        trigger_reason=trigger_reason(context),
        git_commit=git_commit(),
        drift_report_uri=(context["params"].get("drift_report_uri") or "").strip() or None,
        actor=actor(context),
    )


@contextmanager
def airflow_failures(spec: PipelineSpec, what: str = "run") -> Iterator[None]:
    """Map trainyard's errors onto Airflow's: the one place that decides what is retried.

    - missing partitions: skip ``what`` when the spec says ``on_missing_partitions: skip``,
      else fail; never retried (they will not appear by retrying at once);
    - nothing to do (no champion yet): skip;
    - any other deterministic error (spec, suite, data, estimator): fail without retries;
    - S3 or MLflow unreachable (after bounded client retries, see
      :mod:`trainyard.core.services`): one line naming the service, retried with backoff;
    - everything else propagates and is retried with backoff.

    Args:
        spec: The pipeline (its missing-partitions policy).
        what: What a skip skips, for the message.
    """
    from trainyard.core.services import service_errors
    from trainyard.data.sources import MissingPartitionsError

    try:
        with service_errors(Settings.from_env()):
            yield
    except MissingPartitionsError as error:
        if getattr(spec.source, "on_missing_partitions", "fail") == "skip":
            raise AirflowSkipException(f"skipping {what}: {error}") from error
        raise AirflowFailException(str(error)) from error
    except NothingToDoError as error:
        raise AirflowSkipException(str(error)) from error
    except DeterministicError as error:
        raise AirflowFailException(str(error)) from error


def record_links(references: dict[LinkKind, str | None]) -> None:
    """Record what the running task produced, for its links in the Airflow UI.

    Called as soon as the evidence exists (before a check that may still fail the task). Empty
    references are left out, so the task shows no link rather than a broken one.

    Args:
        references: Evidence kind → ``s3://`` URI or MLflow UI path (see :mod:`trainyard.ui.links`).
    """
    from airflow.sdk import get_current_context

    from trainyard.ui.links import LINKS_XCOM_KEY

    recorded = {str(kind): ref for kind, ref in references.items() if ref}
    if recorded:
        get_current_context()["ti"].xcom_push(key=LINKS_XCOM_KEY, value=recorded)
