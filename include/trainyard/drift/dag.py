"""Builds the drift monitor ``drift_<name>`` of each spec whose source reads a window (wiring only).

Imported by dags/drift_monitors.py at parse time: only the Airflow SDK, the standard provider's
TriggerDagRunOperator and trainyard's light modules are imported here; Evidently, Great
Expectations, pandas and MLflow are imported inside the task callables.

Why TriggerDagRunOperator and not an Asset event: the training DAG runs with
``max_active_runs=1``, and upstream reports that asset events can be dropped for such a
consumer (apache/airflow#56050) and that how events are batched into runs depends on scheduler
timing (#56750). A drift-triggered retrain must neither vanish nor merge with another. The
operator creates exactly one run with an explicit run id and conf (reason, report URI, drifted
columns, share, window); the run id is deterministic per cooldown slot, so two racing drift runs
cannot create two retrains (the second is skipped as "already exists").
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, Param, task

from trainyard.airflow.common import dag_arguments, window_params
from trainyard.core.settings import Settings
from trainyard.core.spec import load_all_specs
from trainyard.drift import tasks

if TYPE_CHECKING:
    from trainyard.core.spec import PipelineSpec

_DECISION = "ti.xcom_pull(task_ids='decide')"


def has_drift_monitor(spec: PipelineSpec) -> bool:
    """Only data that keeps arriving can drift: partitioned files and windowed queries."""
    return spec.source.windowed


def current_data(spec: PipelineSpec) -> str:
    """What the drift check's current window reads, for the docs."""
    if spec.source.kind == "sql":
        return "the query's rows (by its timestamp bounds, ending on the run day)"
    return "partitions"


def drift_doc(spec: PipelineSpec) -> str:
    """The drift DAG's ``doc_md``."""
    drift = spec.drift
    overrides = ", ".join(
        [f"`{c}`: {m}" for c, m in drift.per_column_method.items()]
        + [f"`{c}` threshold {t}" for c, t in drift.per_column_threshold.items()]
    )
    schedule = f"`{drift.schedule}`" if drift.schedule else "none (manual runs only)"
    return f"""\
### Drift monitor of `{spec.name}`

Compares the newest raw data with the data the **current champion** of
`{spec.registered_model_name}` was trained on (its `snapshot_uri` lineage tag), and triggers
`{spec.training_dag_id}` when Evidently reports dataset drift.

**Steps:** `reference` (the champion's snapshot; *no champion: the run is skipped*) →
`current` (the newest {drift.window_days} day(s) of {current_data(spec)}, snapshotted) → `validate`
(the GX suite `{spec.validation.suite}`: a broken batch **fails the run as a data-quality
failure, never a drift verdict**) → `check_drift` (Evidently `DataDriftPreset`) → `decide`
(storm protection) → `retrain_requested` → `trigger_retrain` → `record_retrain`.

- **Schedule:** {schedule}.
- **Verdict:** dataset drift when at least {drift.drift_share:g} of the columns drift
  ({", ".join(drift.columns) if drift.columns else "all features"}); method
  {drift.method or "Evidently's default for the reference size"}, threshold
  {drift.threshold if drift.threshold is not None else "Evidently's default"}
  {("; overrides " + overrides) if overrides else ""}. Fewer than {drift.min_rows} rows on either
  side: **insufficient data**, no verdict. Sampling cap: {drift.sample_size or "none"}
  (seed {drift.sample_seed}).
- **Outputs:** HTML report + JSON summary on S3 under
  `drift/{spec.name}/ref-…/cur-…/cfg-…/`, an MLflow run in `{spec.name}-monitoring`, and this
  run's decision in `drift/{spec.name}/runs/<run_id>/decision.json`.
- **Storm protection:** at most one monitor-triggered retrain (drift, or decay from the
  performance monitor) per {drift.cooldown_hours:g} h cooldown, none while a run of
  `{spec.training_dag_id}` is queued or running. Runs inside
  the cooldown still record their verdict and say *retrain suppressed: cooldown until …*.
- **Why TriggerDagRunOperator, not Asset events:** the training DAG has `max_active_runs=1`;
  upstream reports dropped asset events for such consumers (apache/airflow#56050) and
  timing-dependent batching (#56750). The trigger carries the reason in its conf and uses a
  run id fixed per cooldown slot, so a race cannot create two retrains.

**Manual runs** (Trigger DAG w/ config): `window_end` (YYYY-MM-DD), `window_days`,
`force` (true: ignore the cooldown; still never while training is queued or running).
"""


def build_drift_dag(spec: PipelineSpec) -> DAG:
    """The drift monitor of one pipeline.

    Args:
        spec: The pipeline spec (partitioned files or a windowed query).

    Returns:
        The DAG ``drift_<name>``.
    """
    with DAG(
        dag_id=spec.drift_dag_id,
        description=f"Drift monitor of {spec.name}: Evidently vs the champion's training data",
        schedule=spec.drift.schedule,
        **dag_arguments(spec, execution_timeout=timedelta(hours=1)),
        doc_md=drift_doc(spec),
        tags=["trainyard", "drift", *spec.tags],
        params={
            **window_params(
                spec.drift.window_days,
                "Last day to check (default: the run day)"
                if spec.source.kind == "sql"
                else "Last partition date to check (default: the newest partition).",
            ),
            "force": Param(
                False,
                type="boolean",
                description="Retrain on drift even inside the cooldown (never while training "
                "is queued or running).",
            ),
        },
    ) as dag:

        @task(task_id="reference")
        def reference(**context: Any) -> dict:
            return tasks.reference(spec, context)

        @task(task_id="current")
        def current(**context: Any) -> dict:
            return tasks.current(spec, context)

        @task(task_id="validate")
        def validate(snapshot: dict, **context: Any) -> dict:
            return tasks.validate(spec, snapshot, context)

        @task(task_id="check_drift")
        def check_drift(reference: dict, snapshot: dict, **context: Any) -> dict:
            return tasks.check(spec, reference, snapshot, context)

        @task(task_id="decide")
        def decide(summary: dict, **context: Any) -> dict:
            return tasks.decide(spec, summary, context)

        ref = reference()
        snapshot = current()
        ref >> snapshot  # no champion: nothing else runs
        validation = validate(snapshot)
        summary = check_drift(ref, snapshot)
        validation >> summary
        retrain_on(spec, decide(summary))
    return dag


def retrain_on(spec: PipelineSpec, decision: Any) -> None:
    """``retrain_requested → trigger_retrain → record_retrain`` after a monitor's ``decide``.

    Shared by the drift and the performance monitors (one of each thing): the decision comes
    from :func:`trainyard.drift.tasks.decide`, so both obey the same storm protection.

    Args:
        spec: The pipeline (its training DAG).
        decision: The ``decide`` task's output (an XComArg).
    """

    @task.short_circuit(task_id="retrain_requested", ignore_downstream_trigger_rules=True)
    def retrain_requested(decision: dict) -> bool:
        return tasks.retrain_requested(decision)

    trigger_retrain = TriggerDagRunOperator(
        task_id="trigger_retrain",
        trigger_dag_id=spec.training_dag_id,
        trigger_run_id="{{ " + _DECISION + "['training_run_id'] }}",
        conf="{{ " + _DECISION + "['conf'] | tojson }}",
        logical_date=None,
        # The run id is fixed per monitor and cooldown slot: if it exists, another run of the
        # same monitor (or a retry of this one) already asked for this retrain.
        skip_when_already_exists=True,
        wait_for_completion=False,
    )

    @task(task_id="record_retrain")
    def record_retrain(decision: dict, **context: Any) -> dict:
        return tasks.record(spec, decision, context)

    retrain_requested(decision) >> trigger_retrain >> record_retrain(decision)


def build_drift_dags(settings: Settings | None = None) -> list[DAG]:
    """One drift DAG per spec whose source reads a window (static datasets cannot drift).

    A spec whose ``drift.schedule`` is null still gets its DAG, for manual runs only.

    Raises:
        trainyard.core.spec.SpecError: Naming every invalid spec file and field.
    """
    settings = settings or Settings.from_env()
    specs = load_all_specs(settings.pipelines_dir)
    return [build_drift_dag(spec) for spec in specs if has_drift_monitor(spec)]
