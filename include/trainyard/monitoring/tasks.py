"""Airflow adapters of the performance monitor: XCom dicts in, one step, XCom dicts out.

The decision and the retrain are the drift monitor's own tasks (:mod:`trainyard.drift.tasks`)
with ``signal="decay"``: one storm protection, one retrain ledger for both monitors. A run that
ends before a verdict (no champion) records why in ``performance/<pipeline>/runs/<run id>/``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from trainyard.airflow.common import (
    airflow_failures,
    record_links,
    run_context,
    run_day,
    window_end_param,
)
from trainyard.core.settings import Settings
from trainyard.ui.links import LinkKind, mlflow_run_ref

if TYPE_CHECKING:
    from trainyard.core.spec import PipelineSpec

log = logging.getLogger(__name__)


def baseline(spec: PipelineSpec, context: dict[str, Any]) -> dict[str, Any]:
    """The champion and its holdout metrics; without a champion the run ends here, skipped."""
    from trainyard.core.tracking import NoChampionError
    from trainyard.drift.tasks import record_outcome
    from trainyard.monitoring.steps import champion_baseline

    with airflow_failures(spec, "the performance check"):
        try:
            ref = champion_baseline(spec)
        except NoChampionError as error:
            uri = record_outcome(spec, context, "no_champion", str(error), signal="decay")
            record_links({LinkKind.PERFORMANCE_REPORT: uri})
            log.warning("%s (recorded in %s)", error, uri)
            raise
    log.info("champion %s v%s, holdout %s", ref.model_name, ref.version, ref.metrics)
    return ref.model_dump(mode="json")


def evaluate(spec: PipelineSpec, champion: dict[str, Any], context: dict[str, Any]) -> dict:
    """Join predictions and labels for the due windows; judge; store; log to MLflow."""
    from trainyard.monitoring import steps

    settings = Settings.from_env()
    with airflow_failures(spec):
        newest_end = window_end_param(context) or steps.due_end(spec, run_day(context))
        summary = steps.check_performance(
            spec, settings, steps.Baseline.model_validate(champion), newest_end
        )
        mlflow_run_id = steps.log_check(spec, summary, run_context(context))
        experiment_id = _experiment_id(mlflow_run_id)
    record_links(
        {
            LinkKind.PERFORMANCE_REPORT: summary.report_uri or summary.summary_uri,
            LinkKind.MLFLOW_RUN: mlflow_run_ref(experiment_id, mlflow_run_id),
        }
    )
    log.info("%s", summary.describe())
    log.info("MLflow run %s (experiment %s)", mlflow_run_id, spec.monitoring_experiment)
    conf = steps.decay_conf(summary) if summary.verdict == "decay" else None
    return {**summary.reference_for_xcom(), "mlflow_run_id": mlflow_run_id, "conf": conf}


def _experiment_id(mlflow_run_id: str) -> str:
    from mlflow import MlflowClient

    return MlflowClient().get_run(mlflow_run_id).info.experiment_id


def decide(spec: PipelineSpec, summary: dict[str, Any], context: dict[str, Any]) -> dict:
    """The drift monitor's storm protection, for a decay verdict."""
    from trainyard.drift.tasks import decide as decide_retrain

    return decide_retrain(spec, summary, context, signal="decay", conf=summary.get("conf"))
