"""What an alert says: one event → one :class:`Alert` with its numbers and links (pure).

Each function here turns one event's records (the failed task and its error, the gate's
decision, a monitor's decision and summary, the approval request, the rollback's audit event)
into the subject, the plain text and the facts every channel sends. Nothing here does I/O:
:mod:`trainyard.alerts.delivery` sends, :mod:`trainyard.alerts.notifiers` and the task adapters
call these with what they read.

An alert's :attr:`Alert.identity` names its *event*, not its attempt (DAG, run, task or decision,
never a try number), so a retry or a rerun of the same run produces the same identity, which
delivery sends at most once per channel.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from trainyard.drift.policy import RetrainDecision
    from trainyard.governance.audit import AuditEvent
    from trainyard.training.gate import GateDecision

#: The events that alert.
Kind = Literal["task_failed", "gate_rejected", "drift", "decay", "approval_waiting", "rollback"]

#: Monitor actions that carry a verdict worth telling someone (a retrain, or one held back).
VERDICT_ACTIONS = frozenset({"retrain", "suppressed_cooldown", "suppressed_active"})


class Alert(BaseModel):
    """One message about one event, as every channel sends it."""

    model_config = ConfigDict(frozen=True)

    kind: Kind
    pipeline: str
    #: What the event is (DAG, run, task or record): equal for every retry and rerun of it.
    identity: str
    subject: str
    text: str
    #: The numbers of the event, also sent as JSON by the generic webhook.
    facts: dict[str, Any]
    #: Label → URL (Airflow run, MLflow run, reports).
    links: dict[str, str]

    @property
    def event_id(self) -> str:
        """A short, key-safe id of :attr:`identity`."""
        return hashlib.sha256(self.identity.encode()).hexdigest()[:20]


def airflow_links(
    airflow_ui_url: str, dag_id: str, run_id: str, task_id: str | None = None
) -> dict[str, str]:
    """Links to a DAG run (and one of its tasks) in the Airflow UI.

    Args:
        airflow_ui_url: Where people reach Airflow.
        dag_id: The DAG.
        run_id: The run.
        task_id: A task of the run, if the event is about one.

    Returns:
        ``{"Airflow run": url}``, plus ``"Airflow task"`` when ``task_id`` is given.
    """
    base = airflow_ui_url.rstrip("/")
    run = f"{base}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"
    links = {"Airflow run": run}
    if task_id:
        links["Airflow task"] = f"{run}/tasks/{quote(task_id, safe='')}"
    return links


def required_actions_url(airflow_ui_url: str) -> str:
    """The Airflow UI page listing the approvals that wait for a person (Required Actions)."""
    return f"{airflow_ui_url.rstrip('/')}/required_actions"


def _text(lead: str, sections: list[tuple[str, list[str]]], links: Mapping[str, str]) -> str:
    """The plain-text body: a lead paragraph, titled sections of lines, then the links."""
    parts = [lead]
    for title, lines in sections:
        if lines:
            parts.append("\n".join([f"{title}:", *(f"  {line}" for line in lines)]))
    if links:
        parts.append("\n".join(["Links:", *(f"  {label}: {url}" for label, url in links.items())]))
    return "\n\n".join(parts) + "\n"


def task_failed(
    pipeline: str,
    dag_id: str,
    run_id: str,
    task_id: str,
    tries: int,
    error: str,
    failed_expectations: list[str],
    links: Mapping[str, str],
) -> Alert:
    """A task that failed for good (after its retries, or at once for a deterministic error).

    Args:
        pipeline: The pipeline.
        dag_id: The DAG.
        run_id: The run.
        task_id: The failed task.
        tries: How many attempts it made.
        error: The error's message.
        failed_expectations: One line per failed expectation, when validation failed.
        links: Airflow run and task, and the validation result / Data Docs when there are any.

    Returns:
        The alert; its identity is the task of that run, whatever the try.
    """
    lines = error.strip().splitlines() or ["(no message)"]
    what = "data validation failed" if failed_expectations else lines[0][:120]
    subject = f"[trainyard] {dag_id}: {task_id} failed ({what})"
    lead = (
        f"Task {task_id} of {dag_id} run {run_id} failed after {tries} attempt(s); "
        "the run stops there and the champion does not change."
    )
    sections = [("Error", lines[:20])]
    if failed_expectations:
        sections = [(f"Failed expectations ({len(failed_expectations)})", failed_expectations)]
    return Alert(
        kind="task_failed",
        pipeline=pipeline,
        identity=f"{dag_id}/{run_id}/{task_id}/failed",
        subject=subject,
        text=_text(lead, sections, links),
        facts={
            "dag_id": dag_id,
            "run_id": run_id,
            "task_id": task_id,
            "tries": tries,
            "error": lines[0],
            "failed_expectations": list(failed_expectations),
        },
        links=dict(links),
    )


def gate_rejected(
    pipeline: str,
    model_name: str,
    dag_id: str,
    run_id: str,
    decision: GateDecision,
    links: Mapping[str, str],
) -> Alert:
    """A challenger the gate rejected; the champion stays.

    Args:
        pipeline: The pipeline.
        model_name: The registered model.
        dag_id: The training DAG.
        run_id: The training run.
        decision: The gate's decision (every check, both sides' metrics).
        links: Airflow run, MLflow run, the gate's decision.

    Returns:
        The alert; its identity is the training run's gate.
    """
    champion = f"v{decision.champion_version}" if decision.champion_version else "none"
    failed = [check for check in decision.checks if not check.passed]
    subject = (
        f"[trainyard] {model_name}: challenger rejected by the gate "
        f"({len(failed)} failed check(s); champion {champion} stays)"
    )
    metrics = [
        f"{metric}: challenger {value:.4f}, champion "
        + (
            f"{decision.champion[metric]:.4f}"
            if decision.champion and metric in decision.champion
            else "-"
        )
        for metric, value in decision.challenger.items()
    ]
    checks = [check.describe() for check in decision.checks]
    if decision.note:
        checks.append(f"note: {decision.note}")
    lead = (
        f"{dag_id} run {run_id} trained a model of {model_name} that the gate rejected; "
        f"nothing was registered and the champion ({champion}) did not change."
    )
    return Alert(
        kind="gate_rejected",
        pipeline=pipeline,
        identity=f"{dag_id}/{run_id}/gate_rejected",
        subject=subject,
        text=_text(lead, [("Gate checks", checks), ("Metrics", metrics)], links),
        facts={
            "model_name": model_name,
            "champion_version": decision.champion_version,
            "challenger": dict(decision.challenger),
            "champion": dict(decision.champion or {}),
            "failed_checks": [check.describe() for check in failed],
        },
        links=dict(links),
    )


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _drift_lines(summary: Mapping[str, Any]) -> tuple[list[str], dict[str, Any]]:
    share = summary.get("drift_share")
    columns = list(summary.get("drifted_columns") or [])
    lines = [
        f"drift share {share:.2f} >= {summary['drift_share_threshold']:g} "
        f"({len(columns)} of {summary.get('column_count')} columns)"
        if isinstance(share, int | float)
        else "drift share n/a",
        f"drifted columns: {', '.join(columns) or 'none'}",
        f"current window {summary.get('current_window_start')}..{summary.get('current_window_end')}"
        f", {summary.get('current_rows')} rows, against {summary.get('reference_model')}",
    ]
    facts = {
        "drift_share": share,
        "drift_share_threshold": summary.get("drift_share_threshold"),
        "drifted_columns": columns,
        "window_start": summary.get("current_window_start"),
        "window_end": summary.get("current_window_end"),
        "rows": summary.get("current_rows"),
        "reference_model": summary.get("reference_model"),
    }
    return lines, facts


def _decay_lines(summary: Mapping[str, Any]) -> tuple[list[str], dict[str, Any]]:
    metric, value, baseline = summary["metric"], summary.get("value"), summary.get("baseline")
    drop = (
        (baseline - value) / baseline
        if isinstance(value, int | float) and isinstance(baseline, int | float) and baseline
        else None
    )
    shown = f"{value:.4f}" if isinstance(value, int | float) else "n/a"
    lines = [
        f"realised {metric} {shown} vs holdout {baseline:.4f}"
        + (f" ({-drop:+.2%})" if drop is not None else "")
        + f" of {summary.get('model')}",
        f"windows {summary.get('window_start')}..{summary.get('window_end')}",
        str(summary.get("message") or ""),
    ]
    facts = {
        "metric": metric,
        "realised": value,
        "baseline": baseline,
        "relative_drop": drop,
        "window_start": summary.get("window_start"),
        "window_end": summary.get("window_end"),
        "model": summary.get("model"),
    }
    return [line for line in lines if line], facts


def monitor_verdict(
    decision: RetrainDecision, summary: Mapping[str, Any], links: Mapping[str, str]
) -> Alert | None:
    """A drift or decay verdict and what storm protection made of it.

    Args:
        decision: The monitor run's decision (``performance/`` or ``drift/<p>/runs/<run>/``).
        summary: The check's XCom summary (drift: ``DriftSummary.reference_for_xcom()``; decay:
            ``PerformanceSummary.reference_for_xcom()``).
        links: Airflow run, MLflow run, the report and summary.

    Returns:
        The alert for a drift or decay verdict (retrain triggered or suppressed, with the
        cooldown's end); None when the run reached no such verdict (no drift, too little data).
    """
    if decision.action not in VERDICT_ACTIONS:
        return None
    signal = decision.signal
    lines, facts = _drift_lines(summary) if signal == "drift" else _decay_lines(summary)
    if decision.retrain:
        outcome = f"retrain triggered: {decision.training_dag_id} run {decision.training_run_id}"
    elif decision.action == "suppressed_cooldown":
        outcome = f"retrain suppressed: cooldown until {_when(decision.cooldown_until)}"
    else:
        outcome = (
            f"retrain suppressed: {decision.active_training_runs} run(s) of "
            f"{decision.training_dag_id} already queued or running"
        )
    what = "drift detected" if signal == "drift" else f"{facts['metric']} decayed"
    return Alert(
        kind=signal,
        pipeline=decision.pipeline,
        identity=f"{decision.pipeline}/{signal}/{decision.monitor_run_id}",
        subject=f"[trainyard] {decision.pipeline}: {what}, {outcome}",
        text=_text(
            f"The {signal} monitor of {decision.pipeline} (run {decision.monitor_run_id}) reached "
            f"a verdict at {decision.decided_at.isoformat()}: {outcome}.",
            [("Numbers", lines), ("Decision", [decision.message])],
            links,
        ),
        facts={
            **facts,
            "action": decision.action,
            "retrain": decision.retrain,
            "training_run_id": decision.training_run_id,
            "cooldown_until": _when(decision.cooldown_until),
            "forced": decision.forced,
        },
        links=dict(links),
    )


def approval_waiting(
    pipeline: str,
    dag_id: str,
    run_id: str,
    request_subject: str,
    request_body: str,
    required_actions: str,
    links: Mapping[str, str],
) -> Alert:
    """A challenger waits for a person's approval in the Airflow UI (Required Actions).

    Args:
        pipeline: The pipeline.
        dag_id: The training DAG.
        run_id: The training run.
        request_subject: The approval request's subject (names the versions).
        request_body: Its body (gate checks, challenger against champion, links).
        required_actions: The Required Actions page's URL.
        links: Airflow run (and task).

    Returns:
        The alert; its identity is the run's approval.
    """
    every_link = {"Required Actions": required_actions, **links}
    return Alert(
        kind="approval_waiting",
        pipeline=pipeline,
        identity=f"{dag_id}/{run_id}/approval_waiting",
        subject=f"[trainyard] approval waiting: {request_subject}",
        text=_text(
            f"{dag_id} run {run_id} waits for a person: answer under Required Actions "
            f"({required_actions}).",
            [("Request", request_body.strip().splitlines())],
            every_link,
        ),
        facts={"dag_id": dag_id, "run_id": run_id, "request": request_subject},
        links=every_link,
    )


def rolled_back(pipeline: str, event: AuditEvent, links: Mapping[str, str]) -> Alert:
    """``champion`` was rolled back to an earlier version.

    Args:
        pipeline: The pipeline.
        event: The rollback's audit event (who, why, from → to, the run).
        links: Airflow run, the versions in MLflow.

    Returns:
        The alert; its identity is the audit event.
    """
    cause = event.cause
    subject = (
        f"[trainyard] {event.model_name}: champion rolled back v{event.from_version} → "
        f"v{event.to_version} by {cause.actor}"
    )
    return Alert(
        kind="rollback",
        pipeline=pipeline,
        identity=f"{event.model_name}/rollback/{event.event_id}",
        subject=subject,
        text=_text(
            f"{cause.actor} rolled {event.model_name}@champion back from v{event.from_version} to "
            f"v{event.to_version} at {event.at.isoformat()} ({cause.dag_id} run {cause.run_id}).",
            [("Reason", [cause.reason or "-"]), ("Audit", [event.describe()])],
            links,
        ),
        facts={
            "model_name": event.model_name,
            "from_version": event.from_version,
            "to_version": event.to_version,
            "actor": cause.actor,
            "reason": cause.reason,
            "at": event.at.isoformat(),
        },
        links=dict(links),
    )


def slack_payload(alert: Alert) -> dict[str, Any]:
    """The body of a Slack-compatible incoming webhook (``text`` in Slack's mrkdwn)."""
    return {"text": f"*{alert.subject}*\n{alert.text}"}


def webhook_payload(alert: Alert) -> dict[str, Any]:
    """The body of the generic JSON webhook: the whole alert and its event id."""
    return {"event_id": alert.event_id, **alert.model_dump(mode="json")}
