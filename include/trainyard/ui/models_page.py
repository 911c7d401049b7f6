"""The Models page: one row per pipeline with its champion, its realised metrics, a pending
approval, the last training and the last drift verdict.

Pure: the Airflow plugin (plugins/trainyard_ui.py) gathers the facts (MLflow registry, Airflow's
metadata DB) into the records below and serves the HTML this module renders. Everything shown is
escaped; the only actions are forms posting to the plugin's own routes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from trainyard.governance.approval import APPROVAL_TASK_ID
from trainyard.ui.links import mlflow_run_ref, model_version_ref, task_required_action_ref

if TYPE_CHECKING:
    from trainyard.governance.audit import AuditEvent

#: Where the plugin's routes are mounted in the Airflow API server.
URL_PREFIX = "/trainyard"

#: Task of each DAG whose failure names the outcome ("failed at validation").
_FAILED_AT = {
    "ingest": "failed at ingest",
    "validate": "failed at validation",
    "train": "failed at training",
    "evaluate": "failed at evaluation",
    "register": "failed at registration",
    "reference": "failed: no reference",
    "current": "failed at ingest",
    "check_drift": "failed at the drift check",
}


@dataclass(frozen=True)
class Champion:
    """The version holding ``champion``: since when, by whom, from which run and why.

    From the audit event that made it champion when there is one, else from the lineage the
    version was registered with.
    """

    version: str
    since: datetime
    experiment_id: str
    mlflow_run_id: str
    airflow_run_id: str
    reason: str
    actor: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PendingApproval:
    """A version holding ``challenger``: it passed the gate and waits for a person's answer."""

    version: str
    since: datetime
    dag_id: str
    run_id: str
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def required_action_ref(self) -> str:
        """The Airflow UI page where the approval is answered (without the run that waits for
        it: the list of every pending one)."""
        if not (self.dag_id and self.run_id):
            return "/required_actions?response_received=false"
        return task_required_action_ref(self.dag_id, self.run_id, APPROVAL_TASK_ID)


@dataclass(frozen=True)
class Realised:
    """The performance monitor's latest check: realised metrics on labelled predictions."""

    model_version: str
    verdict: str
    window_end: str
    checked_at: datetime
    metrics: dict[str, float]
    experiment_id: str
    mlflow_run_id: str


@dataclass(frozen=True)
class RunSummary:
    """The latest run of one of a pipeline's DAGs, and what came of it."""

    dag_id: str
    run_id: str
    state: str
    started: datetime | None
    reason: str
    outcome: str


@dataclass(frozen=True)
class PipelineRow:
    """One pipeline on the Models page."""

    name: str
    model_name: str
    training_dag_id: str
    champion: Champion | None
    last_training: RunSummary | None
    last_drift: RunSummary | None
    pending_approval: PendingApproval | None = None
    realised: Realised | None = None


def champion_from_version(version: Any, experiment_id: str) -> Champion:
    """Read a registered model version (MLflow's ``ModelVersion``) and its lineage tags.

    Args:
        version: The version holding ``champion``.
        experiment_id: The experiment of its training run.
    """
    tags: Mapping[str, str] = version.tags or {}
    return Champion(
        version=str(version.version),
        since=datetime.fromtimestamp(version.creation_timestamp / 1000, tz=UTC),
        experiment_id=experiment_id,
        mlflow_run_id=tags.get("mlflow_run_id", version.run_id or ""),
        airflow_run_id=tags.get("airflow_run_id", ""),
        reason=tags.get("trigger_reason", ""),
        metrics=_metric_tags(tags),
    )


def _metric_tags(tags: Mapping[str, str]) -> dict[str, float]:
    return dict(
        sorted(
            (key.removeprefix("metric."), float(value))
            for key, value in tags.items()
            if key.startswith("metric.")
        )
    )


def pending_from_version(version: Any) -> PendingApproval:
    """Read the version holding ``challenger`` (MLflow's ``ModelVersion``) and its lineage tags:
    the training run that registered it is the one waiting for the answer."""
    tags: Mapping[str, str] = version.tags or {}
    return PendingApproval(
        version=str(version.version),
        since=datetime.fromtimestamp(version.creation_timestamp / 1000, tz=UTC),
        dag_id=tags.get("airflow_dag_id", ""),
        run_id=tags.get("airflow_run_id", ""),
        metrics=_metric_tags(tags),
    )


def realised_from_run(run: Any) -> Realised:
    """Read a performance check's MLflow run (metrics ``realised_<name>``; tags ``verdict``,
    ``model_version``, ``window_end``)."""
    tags: Mapping[str, str] = run.data.tags
    metrics = {
        key.removeprefix("realised_"): value
        for key, value in run.data.metrics.items()
        if key.startswith("realised_")
    }
    return Realised(
        model_version=tags.get("model_version", "?"),
        verdict=tags.get("verdict", "?"),
        window_end=tags.get("window_end", "-"),
        checked_at=datetime.fromtimestamp(run.info.start_time / 1000, tz=UTC),
        metrics=dict(sorted(metrics.items())),
        experiment_id=run.info.experiment_id,
        mlflow_run_id=run.info.run_id,
    )


def with_audit(champion: Champion, events: Iterable[AuditEvent]) -> Champion:
    """The champion as the audit trail tells it: the newest event that made it champion.

    Args:
        champion: From the registry (:func:`champion_from_version`).
        events: The model's audit events, oldest first.
    """
    made_champion = [e for e in events if e.aliases_set.get("champion") == champion.version]
    if not made_champion:
        return champion
    event = made_champion[-1]
    return replace(
        champion,
        since=event.at,
        airflow_run_id=event.cause.run_id,
        reason=event.cause.reason,
        actor=event.cause.actor,
    )


def training_outcome(state: str, failed_tasks: Iterable[str], report: object) -> str:
    """What a training run came to, in a few words.

    Args:
        state: The DAG run's state.
        failed_tasks: Task ids that failed in it.
        report: The ``report`` task's XCom (an Outcome dict), if any.
    """
    if isinstance(report, Mapping) and report.get("status") == "registered":
        return f"registered v{report.get('version')}"
    if isinstance(report, Mapping) and report.get("status") == "rejected_by_gate":
        return "rejected by the gate"
    return _outcome_of_state(state, failed_tasks)


def drift_outcome(state: str, failed_tasks: Iterable[str], check: object) -> str:
    """The verdict of a drift run, in a few words.

    Args:
        state: The DAG run's state.
        failed_tasks: Task ids that failed in it.
        check: The ``check_drift`` task's XCom (the summary reference), if any.
    """
    failed = set(failed_tasks)
    if "validate" in failed:
        return "data-quality failure"
    if isinstance(check, Mapping) and check.get("verdict"):
        return str(check.get("message") or check["verdict"])
    return _outcome_of_state(state, failed)


def _outcome_of_state(state: str, failed_tasks: Iterable[str]) -> str:
    for task_id in failed_tasks:
        if task_id in _FAILED_AT:
            return _FAILED_AT[task_id]
    if state == "failed":
        return "failed"
    return state


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "-"


def _run_cell(run: RunSummary | None, airflow_url: str) -> str:
    if run is None:
        return "<td>never run</td>"
    href = _run_href(airflow_url, run.dag_id, run.run_id)
    reason = f"<br><small>reason: {escape(run.reason)}</small>" if run.reason else ""
    return (
        f'<td class="run"><a href="{escape(href)}">{escape(run.outcome)}</a>'
        f"<br><small>{escape(run.run_id)} · {_when(run.started)}</small>{reason}</td>"
    )


def _champion_cells(row: PipelineRow, mlflow_ui_url: str) -> str:
    champion = row.champion
    if champion is None:
        return '<td class="champion">no champion</td><td>-</td>'
    version_href = f"{mlflow_ui_url}/#/{model_version_ref(row.model_name, champion.version)}"
    run_href = f"{mlflow_ui_url}/#/{mlflow_run_ref(champion.experiment_id, champion.mlflow_run_id)}"
    metrics = _metrics(champion.metrics)
    return (
        f'<td class="champion"><a href="{escape(version_href)}">'
        f"{escape(row.model_name)} v{escape(champion.version)}</a>"
        f"<br><small>since {_when(champion.since)} · "
        f'<a href="{escape(run_href)}">MLflow run</a></small>'
        f"<br><small>by {escape(champion.actor or champion.airflow_run_id or '-')}"
        f"{' in ' + escape(champion.airflow_run_id) if champion.actor else ''}: "
        f"{escape(champion.reason or '-')}</small></td>"
        f"<td>{escape(metrics or '-')}</td>"
    )


def _metrics(metrics: Mapping[str, float]) -> str:
    return ", ".join(f"{name} {value:.4f}" for name, value in metrics.items())


def _realised_cell(realised: Realised | None, mlflow_ui_url: str) -> str:
    if realised is None:
        return '<td class="realised">-</td>'
    href = f"{mlflow_ui_url}/#/{mlflow_run_ref(realised.experiment_id, realised.mlflow_run_id)}"
    verdict = realised.verdict.replace("_", " ")
    return (
        f'<td class="realised">{escape(_metrics(realised.metrics) or "no labelled rows")}'
        f"<br><small>v{escape(realised.model_version)} · {escape(verdict)}"
        f" · window to {escape(realised.window_end)} · "
        f'<a href="{escape(href)}">checked {_when(realised.checked_at)}</a></small></td>'
    )


def _pending_cell(pending: PendingApproval | None, airflow_url: str) -> str:
    if pending is None:
        return '<td class="pending">none</td>'
    href = f"{airflow_url}{pending.required_action_ref}"
    return (
        f'<td class="pending"><a href="{escape(href)}">v{escape(pending.version)} waits for '
        f"approval</a><br><small>since {_when(pending.since)} · "
        f"{escape(_metrics(pending.metrics) or '-')}</small></td>"
    )


def _actions(row: PipelineRow) -> str:
    base = f"{URL_PREFIX}/models/{quote(row.name)}"
    return (
        f'<form method="post" action="{escape(base)}/retrain" class="retrain">'
        f'<input name="reason" required placeholder="why retrain now?" '
        f'aria-label="reason to retrain {escape(row.name)}">'
        f'<button type="submit">Retrain now</button></form>'
        f'<form method="post" action="{escape(base)}/rollback" class="rollback">'
        f'<input name="to_version" inputmode="numeric" size="4" placeholder="vN" '
        f'aria-label="version to roll {escape(row.name)} back to (empty: previous)">'
        f'<input name="reason" required placeholder="why roll back?" '
        f'aria-label="reason to roll back {escape(row.name)}">'
        f'<button type="submit">Roll back</button></form>'
        f'<a href="{escape(base)}">history</a>'
    )


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1a202c; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #e2e8f0; padding: .5rem; text-align: left; vertical-align: top; }
small { color: #4a5568; }
.notice { background: #ebf8ff; padding: .5rem; margin-bottom: 1rem; }
.error { background: #fff5f5; padding: .5rem; margin-bottom: 1rem; }
form { margin-bottom: .3rem; }
"""


def render_models_page(
    rows: Iterable[PipelineRow],
    *,
    mlflow_ui_url: str,
    airflow_url: str,
    notice: str = "",
    error: str = "",
) -> str:
    """The Models page as a standalone HTML document.

    Args:
        rows: One row per pipeline.
        mlflow_ui_url: Where people reach the MLflow UI.
        airflow_url: Where people reach the Airflow UI (links to DAG runs).
        notice: A message to show on top (what an action did).
        error: An error to show on top (why an action was refused).
    """
    body = "".join(
        f'<tr data-pipeline="{escape(row.name)}"><td>{escape(row.name)}</td>'
        f"{_champion_cells(row, mlflow_ui_url)}"
        f"{_realised_cell(row.realised, mlflow_ui_url)}"
        f"{_pending_cell(row.pending_approval, airflow_url)}"
        f"{_run_cell(row.last_training, airflow_url)}"
        f"{_run_cell(row.last_drift, airflow_url)}"
        f"<td>{_actions(row)}</td></tr>"
        for row in rows
    )
    return _document(
        "Models",
        _banner(notice, error)
        + "<table><thead><tr><th>pipeline</th><th>champion</th><th>registered metrics</th>"
        "<th>latest realised metrics</th><th>pending approval</th><th>last training</th>"
        "<th>last drift check</th><th>actions</th></tr></thead>"
        f"<tbody>{body}</tbody></table>",
    )


def render_history_page(
    pipeline: str, model_name: str, events: Iterable[AuditEvent], *, airflow_url: str
) -> str:
    """A pipeline's alias moves (the audit trail), newest first.

    Args:
        pipeline: The pipeline's name.
        model_name: Its registered model.
        events: Its audit events, oldest first.
        airflow_url: Where people reach the Airflow UI (links to the DAG runs).
    """
    rows = "".join(
        f'<tr class="event"><td>{_when(event.at)}</td><td>{escape(event.action)}</td>'
        f"<td>v{escape(event.from_version or '-')} → v{escape(event.to_version or '-')}</td>"
        f"<td>{escape(event.cause.actor)}</td><td>{escape(event.cause.reason or '-')}</td>"
        f'<td><a href="{escape(_run_href(airflow_url, event.cause.dag_id, event.cause.run_id))}">'
        f"{escape(event.cause.dag_id)} / {escape(event.cause.run_id)}</a></td></tr>"
        for event in reversed(list(events))
    )
    return _document(
        f"{pipeline}: history of {model_name}",
        f'<p><a href="{URL_PREFIX}/models">all models</a></p>'
        + (
            "<table><thead><tr><th>when</th><th>what</th><th>champion</th><th>who</th>"
            f"<th>why</th><th>run</th></tr></thead><tbody>{rows}</tbody></table>"
            if rows
            else "<p>No alias move recorded yet.</p>"
        ),
    )


def _run_href(airflow_url: str, dag_id: str, run_id: str) -> str:
    return f"{airflow_url}/dags/{quote(dag_id)}/runs/{quote(run_id, safe='')}"


def _banner(notice: str, error: str) -> str:
    banner = ""
    if notice:
        banner += f'<p class="notice" role="status">{escape(notice)}</p>'
    if error:
        banner += f'<p class="error" role="alert">{escape(error)}</p>'
    return banner


def _document(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>"
    )
