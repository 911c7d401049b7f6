"""Builds the performance monitor ``performance_<name>`` of each spec with a ``performance``
section (wiring only).

Its own DAG rather than a branch of the drift DAG: it runs on its own schedule (labels arrive
days after the predictions, once a day, while drift is checked hourly), reads other inputs (the
prediction log and labels, not raw features) and has its own Params. What it shares with the
drift monitor is the decision: the same ``decide`` step and ``retrain_requested →
trigger_retrain → record_retrain`` tasks (:func:`trainyard.drift.dag.retrain_on`), so one
cooldown ledger covers both and a drift and a decay verdict in the same slot give one retrain.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import DAG, Param, task

from trainyard.airflow.common import dag_arguments
from trainyard.core.settings import Settings
from trainyard.core.spec import load_all_specs
from trainyard.drift.dag import retrain_on
from trainyard.monitoring import tasks

if TYPE_CHECKING:
    from trainyard.core.spec import PipelineSpec


def performance_doc(spec: PipelineSpec) -> str:
    """The monitor's ``doc_md``."""
    performance, labels = spec.performance, spec.labels
    schedule = f"`{performance.schedule}`" if performance.schedule else "none (manual runs only)"
    where = (
        f"`{labels.prefix}/date=YYYY-MM-DD/` (id + target)"
        if labels.prefix
        else f"the source's own partitions `{spec.source.prefix}/`, landed again with "
        f"`{spec.schema_.target}` filled"
    )
    return f"""\
### Performance monitor of `{spec.name}`

Joins the champion's logged predictions (batch and online) with the true outcomes by
`{spec.schema_.id_column}` once they are due, and compares its realised `{performance.metric}`
with its own holdout value at registration (the version's `metric.{performance.metric}` tag).

**Steps:** `baseline` (the champion and its holdout metrics; *no champion: skipped*) →
`evaluate` (the {performance.consecutive_windows} newest window(s) of
{performance.window_days} day(s), the newest ending {labels.delay_days} day(s) before the run
day) → `decide` (the drift monitor's storm protection) → `retrain_requested` →
`trigger_retrain` → `record_retrain`.

- **Schedule:** {schedule}. **Labels:** {where}, due {labels.delay_days} day(s) later.
- **Decay:** {performance.metric} worse than the holdout value by more than
  {performance.max_drop:g} ({performance.drop}) in {performance.consecutive_windows}
  consecutive window(s) → retrain `{spec.training_dag_id}` with a reason naming the metric,
  values, baseline, windows and the summary. Fewer than {performance.min_labelled_rows}
  labelled predictions in the newest window: **insufficient labels**, no verdict; no
  predictions: says so, no verdict. Labels for rows never scored are ignored and counted.
- **Storm protection, shared with `{spec.drift_dag_id}`:** one cooldown of
  {spec.drift.cooldown_hours:g} h and one ledger (`drift/{spec.name}/retrains/`), none while
  training is queued or running; the training run id is `retrain__<slot start>`, the drift
  monitor's in the same slot.
- **Prediction and target drift** (reported, never retrain): the newest window's scores and
  labels against the champion's holdout scores, with Evidently's drift and
  classification/regression presets.
- **Outputs:** `performance/{spec.name}/v<version>/end-<date>/in-<sha>/summary.json` and
  `report.html` (Evidently), this run's decision in
  `performance/{spec.name}/runs/<run_id>/decision.json` (signal `decay`, for alerts), and an
  MLflow run in `{spec.monitoring_experiment}` (`realised_*`, `baseline_*`,
  `prediction_drift_score`, `target_drift_score`, `evidently_*`).

**Manual runs** (Trigger DAG w/ config): `window_end` (the newest window's last day), `force`.
"""


def build_performance_dag(spec: PipelineSpec) -> DAG:
    """The performance monitor of one pipeline.

    Args:
        spec: A spec with ``labels`` and ``performance`` sections.

    Returns:
        The DAG ``performance_<name>``.
    """
    with DAG(
        dag_id=spec.performance_dag_id,
        description=f"Realised performance of {spec.name}'s champion on delayed labels",
        schedule=spec.performance.schedule,
        **dag_arguments(spec, execution_timeout=timedelta(hours=1)),
        doc_md=performance_doc(spec),
        tags=["trainyard", "monitoring", *spec.tags],
        params={
            "window_end": Param(
                None,
                type=["null", "string"],
                format="date",
                description="Last day of the newest window (default: run day minus the "
                "labels' delay).",
            ),
            "force": Param(
                False,
                type="boolean",
                description="Retrain on decay even inside the cooldown (never while training "
                "is queued or running).",
            ),
        },
    ) as dag:

        @task(task_id="baseline")
        def baseline(**context: Any) -> dict:
            return tasks.baseline(spec, context)

        @task(task_id="evaluate")
        def evaluate(champion: dict, **context: Any) -> dict:
            return tasks.evaluate(spec, champion, context)

        @task(task_id="decide")
        def decide(summary: dict, **context: Any) -> dict:
            return tasks.decide(spec, summary, context)

        retrain_on(spec, decide(evaluate(baseline())))
    return dag


def build_performance_dags(settings: Settings | None = None) -> list[DAG]:
    """One performance monitor per spec with a ``performance`` section.

    Raises:
        trainyard.core.spec.SpecError: Naming every invalid spec file and field.
    """
    settings = settings or Settings.from_env()
    specs = load_all_specs(settings.pipelines_dir)
    return [build_performance_dag(spec) for spec in specs if spec.performance is not None]
