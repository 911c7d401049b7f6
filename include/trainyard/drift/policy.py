"""When a monitor's verdict may start a retrain: storm protection.

Two monitors ask for retrains: the drift monitor (verdict ``drift``) and the performance monitor
(verdict ``decay``). They share these rules, the cooldown (``drift.cooldown_hours``) and one
ledger, so a drift verdict and a decay verdict in the same slot give one retrain.

Rules, in order:

1. No drift / no decay (or insufficient data, labels or predictions) → no retrain.
2. Inside the cooldown (``drift.cooldown_hours`` after the last monitor-triggered retrain of the
   pipeline, whichever monitor asked) → "retrain suppressed: cooldown until …", unless forced.
3. A training run of the pipeline is queued or running → suppressed (also when forced: a second
   run would only queue behind it, on data it may already cover).
4. Otherwise → retrain, with a training run id that is the same for every monitor run, drift or
   decay, in the same cooldown slot (``retrain__<slot>``). Two monitor runs that race past rules
   2-3 therefore ask Airflow for the *same* run id, and Airflow creates it once (the second
   trigger is skipped as "already exists"). Which signal asked is in the run's conf (``reason``)
   and in the ledger; a forced run, or a pipeline without cooldown, gets a run id naming its
   signal and monitor run (``drift__forced__<run>``, ``decay__<run>``).

The last drift-triggered retrain is recorded on S3 by the task that triggered it (see
:mod:`trainyard.drift.ledger`). Airflow's Task SDK lets a task count runs by exact run ids and
states (which is how rule 3 asks Airflow), but not list runs or read their times, so the
cooldown's start is kept where any task (and a person) can read it.

Everything here is pure and runs without Airflow or storage.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

Action = Literal[
    "retrain",
    "no_drift",
    "insufficient_data",
    "suppressed_cooldown",
    "suppressed_active",
    "no_champion",
    "data_quality_failure",
    "no_decay",
    "insufficient_labels",
    "no_predictions",
]
#: Which monitor reached a verdict: the drift monitor or the performance monitor.
Signal = Literal["drift", "decay"]
#: Verdicts that never retrain, recorded as the decision's action.
_QUIET = frozenset(
    {"no_drift", "insufficient_data", "no_decay", "insufficient_labels", "no_predictions"}
)
#: Prefix of the training run both monitors ask for in a cooldown slot (they share the slots).
SLOT_RUN_ID_PREFIX = "retrain__"

#: The monitor run's fields were named ``drift_dag_id`` / ``drift_run_id`` before the
#: performance monitor shared the ledger; records and decisions stored under those names still
#: read (they are written under the new names).
_MONITOR_DAG_ID = Field(validation_alias=AliasChoices("monitor_dag_id", "drift_dag_id"))
_MONITOR_RUN_ID = Field(validation_alias=AliasChoices("monitor_run_id", "drift_run_id"))


class RetrainRecord(BaseModel):
    """A monitor-triggered retrain: when, by which monitor run, which training run, why.

    ``monitor_dag_id`` / ``monitor_run_id`` name the monitor run that asked (the drift monitor or,
    with ``signal`` decay, the performance monitor); records written as ``drift_dag_id`` /
    ``drift_run_id`` still read.
    """

    model_config = ConfigDict(frozen=True)

    signal: Signal = "drift"
    training_dag_id: str
    training_run_id: str
    requested_at: datetime
    monitor_dag_id: str = _MONITOR_DAG_ID
    monitor_run_id: str = _MONITOR_RUN_ID
    report_uri: str | None
    drifted_columns: list[str]
    drift_share: float | None


class RetrainDecision(BaseModel):
    """What a monitor run decided, and why (stored per run, and returned as XCom)."""

    model_config = ConfigDict(frozen=True)

    signal: Signal = "drift"
    pipeline: str
    action: Action
    retrain: bool
    message: str
    decided_at: datetime
    monitor_run_id: str = _MONITOR_RUN_ID
    training_dag_id: str
    training_run_id: str | None = None
    conf: dict[str, Any] | None = None
    cooldown_until: datetime | None = None
    active_training_runs: int = 0
    forced: bool = False
    summary_uri: str | None = None
    report_uri: str | None = None


def cooldown_slot(moment: datetime, cooldown_hours: float) -> datetime:
    """Start of the fixed, epoch-aligned slot of length ``cooldown_hours`` holding ``moment``.

    Args:
        moment: An aware datetime.
        cooldown_hours: Slot length; must be positive.

    Returns:
        The slot's start (UTC).
    """
    if cooldown_hours <= 0:
        raise ValueError("cooldown_hours must be positive to define slots")
    seconds = cooldown_hours * 3600
    epoch = moment.astimezone(UTC).timestamp()
    return datetime.fromtimestamp((epoch // seconds) * seconds, tz=UTC)


def training_run_id(
    moment: datetime,
    cooldown_hours: float,
    monitor_run_id: str,
    force: bool = False,
    signal: Signal = "drift",
) -> str:
    """The run id a monitor-triggered training run gets.

    Deterministic per cooldown slot (``retrain__20260302T060000Z``), whichever monitor asks, so
    racing monitor runs collide on it; a forced run, or a pipeline without cooldown, gets one per
    monitor run, named for its signal (``drift__forced__<run>``, ``decay__<run>``).

    Args:
        moment: When the verdict was reached.
        cooldown_hours: The spec's cooldown.
        monitor_run_id: The monitor DAG run asking.
        force: The monitor run was forced past the cooldown.
        signal: Which monitor asks (the prefix of an unslotted run id).

    Returns:
        An Airflow run id (letters, digits and ``_.~:+-`` only).
    """
    if force or cooldown_hours <= 0:
        return f"{signal}__{'forced__' if force else ''}{monitor_run_id}"
    return f"{SLOT_RUN_ID_PREFIX}{cooldown_slot(moment, cooldown_hours):%Y%m%dT%H%M%SZ}"


def retrain_reason(summary: dict[str, Any]) -> str:
    """The ``reason`` of a drift-triggered training run (recorded in the model's lineage)."""
    columns = ", ".join(summary.get("drifted_columns") or []) or "none"
    share = summary.get("drift_share")
    share_text = f"{share:.2f}" if isinstance(share, int | float) else "n/a"
    return (
        f"drift: {columns} drifted (share {share_text} >= {summary['drift_share_threshold']:g}) "
        f"in {summary['current_window_start']}..{summary['current_window_end']} vs "
        f"{summary['reference_model']}; report {summary['report_uri']}"
    )


def retrain_conf(summary: dict[str, Any]) -> dict[str, Any]:
    """The training run's conf: reason, report, drifted columns, share, and its window.

    The window ends on the last drifted day, so the retrained model sees the data that drifted.
    """
    return {
        "reason": retrain_reason(summary),
        "drift_report_uri": summary["report_uri"],
        "drifted_columns": list(summary.get("drifted_columns") or []),
        "drift_share": summary.get("drift_share"),
        "window_end": summary["current_window_end"],
    }


def decide(
    summary: dict[str, Any],
    *,
    now: datetime,
    cooldown_hours: float,
    last_retrain: RetrainRecord | None,
    active_training_runs: int,
    monitor_run_id: str,
    training_dag_id: str,
    force: bool = False,
    signal: Signal = "drift",
    conf: dict[str, Any] | None = None,
) -> RetrainDecision:
    """Apply the storm-protection rules to one monitor verdict.

    Args:
        summary: The check's XCom summary (``pipeline``, ``verdict``, ``message``,
            ``summary_uri``, ``report_uri``; for drift ``DriftSummary.reference_for_xcom()``).
        now: When the verdict was reached (the drift run's ``run_after``: stable across retries).
        cooldown_hours: The spec's cooldown.
        last_retrain: The last monitor-triggered retrain of this pipeline (drift or decay), if any.
        active_training_runs: Queued or running runs of the training DAG.
        monitor_run_id: This monitor run (drift or performance).
        training_dag_id: The DAG to trigger.
        force: Skip the cooldown (not the active-run rule).
        signal: Which monitor: its verdict of that name retrains.
        conf: The training run's conf (default: :func:`retrain_conf` of a drift summary).

    Returns:
        The decision; ``retrain`` is True only for action ``retrain``.
    """
    base = {
        "signal": signal,
        "pipeline": summary["pipeline"],
        "decided_at": now,
        "monitor_run_id": monitor_run_id,
        "training_dag_id": training_dag_id,
        "active_training_runs": active_training_runs,
        "forced": force,
        "summary_uri": summary.get("summary_uri"),
        "report_uri": summary.get("report_uri"),
    }
    verdict = summary["verdict"]
    if verdict != signal:
        action = verdict if verdict in _QUIET else f"no_{signal}"
        return RetrainDecision(
            action=action, retrain=False, message=f"{summary['message']}: no retrain", **base
        )
    if conf is None:
        conf = retrain_conf(summary)
    if (
        last_retrain is not None
        and last_retrain.monitor_run_id == monitor_run_id
        and last_retrain.signal == signal
    ):
        # A retry of the run that already asked for this retrain: ask again (Airflow will find
        # the run exists), never suppress our own request.
        return RetrainDecision(
            action="retrain",
            retrain=True,
            message=f"{signal}: retrain {last_retrain.training_run_id} already requested by this "
            "run",
            training_run_id=last_retrain.training_run_id,
            conf=conf,
            **base,
        )
    cooldown_until, in_cooldown = None, False
    if last_retrain is not None and cooldown_hours > 0:
        cooldown_until = last_retrain.requested_at + timedelta(hours=cooldown_hours)
        in_cooldown = now < cooldown_until
        if in_cooldown and not force:
            return RetrainDecision(
                action="suppressed_cooldown",
                retrain=False,
                message=(
                    f"{signal} detected, retrain suppressed: cooldown until "
                    f"{cooldown_until.isoformat()} (last monitor-triggered retrain "
                    f"{last_retrain.training_run_id} at {last_retrain.requested_at.isoformat()})"
                ),
                cooldown_until=cooldown_until,
                **base,
            )
    if active_training_runs > 0:
        return RetrainDecision(
            action="suppressed_active",
            retrain=False,
            message=(
                f"{signal} detected, retrain suppressed: {active_training_runs} run(s) of "
                f"{training_dag_id} already queued or running"
            ),
            cooldown_until=cooldown_until if in_cooldown else None,
            **base,
        )
    run_id = training_run_id(now, cooldown_hours, monitor_run_id, force, signal)
    return RetrainDecision(
        action="retrain",
        retrain=True,
        message=(
            f"{signal} detected: triggering {training_dag_id} run {run_id}"
            + (" (forced past the cooldown)" if force and in_cooldown else "")
        ),
        training_run_id=run_id,
        conf=conf,
        cooldown_until=cooldown_until if in_cooldown else None,
        **base,
    )


def record_from(decision: RetrainDecision, monitor_dag_id: str) -> RetrainRecord:
    """The ledger entry for a decision that triggered a retrain.

    Args:
        decision: A decision to retrain.
        monitor_dag_id: The monitor DAG that made it (the spec's drift or performance DAG id).
    """
    if not decision.retrain or decision.training_run_id is None or decision.conf is None:
        raise ValueError("only a decision to retrain can be recorded as a retrain")
    return RetrainRecord(
        signal=decision.signal,
        training_dag_id=decision.training_dag_id,
        training_run_id=decision.training_run_id,
        requested_at=decision.decided_at,
        monitor_dag_id=monitor_dag_id,
        monitor_run_id=decision.monitor_run_id,
        report_uri=decision.report_uri,
        drifted_columns=list(decision.conf.get("drifted_columns") or []),
        drift_share=decision.conf.get("drift_share"),
    )
