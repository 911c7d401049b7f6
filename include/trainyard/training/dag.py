"""Builds the training DAG ``train_<name>`` of each pipeline spec (wiring only).

Imported by dags/training_pipelines.py at parse time: only the Airflow SDK and trainyard's light
modules are imported here; every heavy library is imported inside the task callables
(:mod:`trainyard.training.tasks` → :mod:`trainyard.training.steps`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import DAG, Param, TriggerRule, task

from trainyard.airflow.common import dag_arguments, window_params
from trainyard.alerts.notifiers import ApprovalWaitingNotifier
from trainyard.core.settings import Settings
from trainyard.core.spec import load_all_specs
from trainyard.governance import tasks as governance_tasks
from trainyard.governance.approval import APPROVAL_TASK_ID
from trainyard.governance.dag import AnswerRecordingApproval
from trainyard.training import tasks

if TYPE_CHECKING:
    from trainyard.core.spec import PipelineSpec


def source_description(spec: PipelineSpec) -> str:
    """Where a pipeline's data comes from and which window a run reads, in one sentence."""
    source, window = spec.source, spec.window
    if source.kind == "sklearn_dataset":
        return f"scikit-learn dataset `{source.dataset}` (static; the window is ignored)"
    if source.kind == "sql":
        if not source.windowed:
            return "a SQL query (static; the window is ignored)"
        span = f"{window.hours} hours" if window.hours is not None else f"{window.days} days"
        return f"a SQL query windowed by `:window_start` / `:window_end`; window {span}"
    where = f"{source.format} files under `{source.prefix}/`"
    if source.layout is None:
        return f"{where} (static; the window is ignored)"
    unit = "hourly" if source.layout.hourly else "daily"
    if window.hours is not None:
        span = f"{window.hours} hours ending {window.end_offset_hours} hour(s) before the run"
    else:
        span = f"{window.days} days ending {window.end_offset_days} day(s) before the run day"
    return f"{where} in {unit} partitions `{source.partitioning}/`; window {span}"


def training_doc(spec: PipelineSpec) -> str:
    """The DAG's ``doc_md``: what it does, where the data is, how it is gated."""
    floors = ", ".join(f"`{m}` {b}" for m, b in spec.gate.floors.items()) or "none"
    source = source_description(spec)
    return f"""\
### Training pipeline `{spec.name}`

{spec.description}

**Steps:** ingest the window into a content-addressed Parquet snapshot on S3 →
validate it with the Great Expectations suite `{spec.validation.suite}` (a failed critical
expectation stops the run here) → train `{spec.model.estimator}` → score challenger and champion
on the same holdout → **gate** → register in MLflow as `{spec.registered_model_name}` and move
alias `champion` (the old champion becomes `previous`).

- **Data:** {source}.
- **Gate:** floors {floors}; `{spec.gate.champion_metric}` may be at most
  {spec.gate.max_regression} worse than the champion's on the same holdout.
- **Rejected by the gate:** `register` is skipped, the run still succeeds and `report` says
  `rejected_by_gate`; the champion does not change.

- **Never blind:** a champion that cannot be scored on this holdout fails the gate (unless the
  run sets `replace_incompatible_champion`); an implausibly perfect metric
  ({", ".join(f"`{m}` {b}" for m, b in spec.leak_bounds.items()) or "no bound set"}) is
  rejected as a suspected leak.

- **Promotion:** {_promotion_doc(spec)}

**Manual runs** (Trigger DAG w/ config): `window_end` (YYYY-MM-DD, last day included, not after
the run day), `window_days`, `reason` (recorded in the model version's lineage),
`replace_incompatible_champion`, `allow_older_window` (a rerun or backfill of a window older than
the champion's is refused unless set).
Runs triggered by the drift monitor also carry `drift_report_uri` (a lineage tag),
`drifted_columns` and `drift_share`.
"""


def _promotion_doc(spec: PipelineSpec) -> str:
    promotion = spec.promotion
    if promotion.mode == "auto":
        return "automatic: a version that passes the gate becomes `champion`."
    return (
        "by approval: a version that passes the gate becomes `challenger`, and `approval` waits "
        f"for a person (Browse → Required Actions) up to {promotion.timeout}, then "
        f"{promotion.on_timeout}s. Approve → `champion`; reject → the champion stays. Every "
        "answer is kept in the audit trail (`trainyard history`)."
    )


def build_training_dag(spec: PipelineSpec, training_queue: str | None = None) -> DAG:
    """The nightly training DAG of one pipeline.

    Args:
        spec: The pipeline spec.
        training_queue: Executor queue of the ``train`` task (None: the default queue).

    Returns:
        The DAG ``train_<name>``.
    """
    with DAG(
        dag_id=spec.training_dag_id,
        description=spec.description or f"Train {spec.name}",
        schedule=spec.schedule,
        **dag_arguments(spec, execution_timeout=timedelta(hours=3)),
        doc_md=training_doc(spec),
        tags=["trainyard", "training", *spec.tags],
        params={
            **window_params(
                spec.window.days,
                "Last partition date to include (default: run day minus the offset).",
            ),
            "reason": Param(
                "",
                type="string",
                description="Why this run; recorded in the model version's lineage.",
            ),
            "replace_incompatible_champion": Param(
                False,
                type="boolean",
                description="Let this run replace a champion that cannot be scored on its "
                "holdout (other columns, classes or task); recorded in the new version's "
                "lineage. Off: such a champion fails the gate.",
            ),
            "allow_older_window": Param(
                False,
                type="boolean",
                description="Let this run replace a champion trained on a newer window (a rerun "
                "or backfill of older data); recorded in the new version's lineage. Off: such a "
                "run ends refused_older_window and the champion stays.",
            ),
            "drift_report_uri": Param(
                "",
                type="string",
                description="Set by the drift monitor: the report that triggered this run; "
                "recorded in the model version's lineage.",
            ),
        },
    ) as dag:

        @task(task_id="ingest")
        def ingest_window(**context: Any) -> dict:
            return tasks.ingest(spec, context)

        @task(task_id="validate")
        def validate_snapshot(snapshot: dict) -> dict:
            return tasks.validate(spec, snapshot)

        @task(task_id="train", **({"queue": training_queue} if training_queue else {}))
        def train_model(snapshot: dict, report: dict, **context: Any) -> dict:
            return tasks.train(spec, snapshot, report, context)

        @task(task_id="evaluate")
        def evaluate_model(snapshot: dict, trained: dict, **context: Any) -> dict:
            return tasks.evaluate(spec, snapshot, trained, context)

        @task.short_circuit(task_id="gate", ignore_downstream_trigger_rules=False, retries=0)
        def gate(decision: dict, trained: dict, **context: Any) -> bool:
            return tasks.gate(spec, decision, trained, context)

        @task(task_id="register")
        def register_model(
            snapshot: dict, report: dict, trained: dict, decision: dict, **context: Any
        ) -> dict:
            return tasks.register(spec, snapshot, report, trained, decision, context)

        @task(task_id="report", trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
        def report_outcome(
            snapshot: dict,
            trained: dict,
            decision: dict,
            registration: dict | None,
            approval: dict | None = None,
        ) -> dict:
            return tasks.report(spec, snapshot, trained, decision, registration, approval)

        snapshot = ingest_window()
        validation = validate_snapshot(snapshot)
        trained = train_model(snapshot, validation)
        decision = evaluate_model(snapshot, trained)
        passed = gate(decision, trained)
        registration = register_model(snapshot, validation, trained, decision)
        passed >> registration
        approval = None
        if spec.promotion.mode == "approval":
            approval = _approval_steps(spec, registration, decision, trained, validation)
        report_outcome(snapshot, trained, decision, registration, approval)
    return dag


def _approval_steps(spec: PipelineSpec, registration: Any, *upstream: Any) -> Any:
    """``ask → approval → promote → settle``: a person decides whether the challenger becomes
    champion (``promotion.mode: approval``).

    ``approval`` is Airflow's ApprovalOperator (Browse → Required Actions); a rejection skips
    ``promote``, and ``settle`` records it. Returns ``settle``'s output (the verdict).
    """
    decision, trained, validation = upstream

    @task.short_circuit(task_id="ask", ignore_downstream_trigger_rules=False)
    def ask(
        registration: dict | None, decision: dict, trained: dict, validation: dict, **context: Any
    ) -> bool:
        return governance_tasks.ask_for_approval(
            spec, registration, decision, trained, validation, context
        )

    approval = AnswerRecordingApproval(
        task_id=APPROVAL_TASK_ID,
        subject="{{ ti.xcom_pull(task_ids='ask', key='subject') }}",
        body="{{ ti.xcom_pull(task_ids='ask', key='body') }}",
        defaults="Approve" if spec.promotion.on_timeout == "approve" else "Reject",
        params={
            "comment": Param("", type="string", description="Why; kept in the model's audit trail.")
        },
        response_timeout=spec.promotion.timeout,
        notifiers=[ApprovalWaitingNotifier(spec.name)],
    )

    @task(task_id="promote")
    def promote(registration: dict, **context: Any) -> dict:
        return governance_tasks.promote_approved(spec, registration, context)

    @task(task_id="settle", trigger_rule=TriggerRule.NONE_FAILED)
    def settle(registration: dict | None, **context: Any) -> dict:
        return governance_tasks.settle_approval(spec, registration, context)

    promoted = promote(registration)
    ask(registration, decision, trained, validation) >> approval >> promoted
    settled = settle(registration)
    promoted >> settled
    return settled


def build_training_dags(settings: Settings | None = None) -> list[DAG]:
    """One training DAG per spec in the pipelines directory.

    Raises:
        trainyard.core.spec.SpecError: Naming every invalid spec file and field.
    """
    settings = settings or Settings.from_env()
    return [
        build_training_dag(spec, settings.training_queue)
        for spec in load_all_specs(settings.pipelines_dir)
    ]
