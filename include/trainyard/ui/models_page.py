"""The Models page: one row per pipeline with its champion, last training and last drift verdict.

Pure: the Airflow plugin (plugins/trainyard_ui.py) gathers the facts (MLflow registry, Airflow's
metadata DB) into the records below and serves the HTML this module renders. Everything shown is
escaped; the only actions are forms posting to the plugin's own routes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import quote

from trainyard.ui.links import mlflow_run_ref, model_version_ref

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
    """The version holding ``champion`` and the lineage it was registered with."""

    version: str
    registered_at: datetime
    experiment_id: str
    mlflow_run_id: str
    airflow_run_id: str
    reason: str
    metrics: dict[str, float] = field(default_factory=dict)


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


def champion_from_version(version: Any, experiment_id: str) -> Champion:
    """Read a registered model version (MLflow's ``ModelVersion``) and its lineage tags.

    Args:
        version: The version holding ``champion``.
        experiment_id: The experiment of its training run.
    """
    tags: Mapping[str, str] = version.tags or {}
    metrics = {
        key.removeprefix("metric."): float(value)
        for key, value in tags.items()
        if key.startswith("metric.")
    }
    return Champion(
        version=str(version.version),
        registered_at=datetime.fromtimestamp(version.creation_timestamp / 1000, tz=UTC),
        experiment_id=experiment_id,
        mlflow_run_id=tags.get("mlflow_run_id", version.run_id or ""),
        airflow_run_id=tags.get("airflow_run_id", ""),
        reason=tags.get("trigger_reason", ""),
        metrics=dict(sorted(metrics.items())),
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
    href = f"{airflow_url}/dags/{quote(run.dag_id)}/runs/{quote(run.run_id, safe='')}"
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
    metrics = ", ".join(f"{name} {value:.4f}" for name, value in champion.metrics.items())
    return (
        f'<td class="champion"><a href="{escape(version_href)}">'
        f"{escape(row.model_name)} v{escape(champion.version)}</a>"
        f"<br><small>since {_when(champion.registered_at)} · "
        f'<a href="{escape(run_href)}">MLflow run</a></small>'
        f"<br><small>by {escape(champion.airflow_run_id or '-')}: "
        f"{escape(champion.reason or '-')}</small></td>"
        f"<td>{escape(metrics or '-')}</td>"
    )


def _retrain_form(row: PipelineRow) -> str:
    action = f"{URL_PREFIX}/models/{quote(row.name)}/retrain"
    return (
        f'<form method="post" action="{escape(action)}" class="retrain">'
        f'<input name="reason" required placeholder="why retrain now?" '
        f'aria-label="reason to retrain {escape(row.name)}">'
        f'<button type="submit">Retrain now</button></form>'
    )


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1a202c; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #e2e8f0; padding: .5rem; text-align: left; vertical-align: top; }
small { color: #4a5568; }
.notice { background: #ebf8ff; padding: .5rem; margin-bottom: 1rem; }
.error { background: #fff5f5; padding: .5rem; margin-bottom: 1rem; }
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
        f"{_run_cell(row.last_training, airflow_url)}"
        f"{_run_cell(row.last_drift, airflow_url)}"
        f"<td>{_retrain_form(row)}</td></tr>"
        for row in rows
    )
    banner = ""
    if notice:
        banner += f'<p class="notice" role="status">{escape(notice)}</p>'
    if error:
        banner += f'<p class="error" role="alert">{escape(error)}</p>'
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>trainyard models</title>"
        f"<style>{_STYLE}</style></head><body><h1>Models</h1>{banner}"
        "<table><thead><tr><th>pipeline</th><th>champion</th><th>registered metrics</th>"
        "<th>last training</th><th>last drift check</th><th>actions</th></tr></thead>"
        f"<tbody>{body}</tbody></table></body></html>"
    )
