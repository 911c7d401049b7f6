"""Model cards: one Markdown page per registered version, written when it is registered.

A card says what the model is for (the spec's owner, ``description``, ``intended_use``,
``limitations``), what it was trained on (window, rows, features), how it did (metrics, every gate
check, the champion it was compared with), what the data checks and the drift monitor said, and
where it came from (lineage). It is stored three times, all with the same text:

- ``s3://<artifacts>/cards/<model>/v<version>.md`` (a deterministic key);
- ``model_card.md`` among the artifacts of the version's MLflow training run;
- the model version's description, so the MLflow UI shows it on the version's page (MLflow keeps
  at most 5,000 characters there; a longer card is cut and points to the full one).

:func:`render_card` is pure; :func:`publish` and :func:`read_card` are the I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainyard.core.settings import Settings
    from trainyard.core.spec import PipelineSpec
    from trainyard.data.snapshots import SnapshotRef
    from trainyard.data.validation import ValidationReport
    from trainyard.training.gate import GateDecision
    from trainyard.training.steps import TrainingResult

#: The longest model version description MLflow's SQL stores accept.
MLFLOW_DESCRIPTION_LIMIT = 5000

#: Where the card is among the training run's MLflow artifacts.
RUN_ARTIFACT = "model_card.md"
#: The card's last section once a reviewer has answered (``promotion.mode: approval``).
APPROVAL_HEADING = "## Approval"
_AWAITING = "awaiting approval in Airflow's Required Actions"

#: Lineage tags listed on the card, in this order, with their labels.
_LINEAGE = (
    ("mlflow_run_id", "MLflow run"),
    ("snapshot_uri", "Snapshot"),
    ("snapshot_sha256", "Snapshot sha256"),
    ("spec_sha256", "Spec sha256"),
    ("git_commit", "Git commit"),
    ("code_sha256", "Code sha256"),
    ("fingerprint", "Training fingerprint"),
    ("airflow_dag_id", "Airflow DAG"),
    ("airflow_run_id", "Airflow run"),
    ("trigger_reason", "Trigger reason"),
    ("triggered_by", "Triggered by"),
    ("drift_report_uri", "Triggering drift report"),
    ("training_sample", "Training sample"),
    ("replaced_incompatible_champion", "Replaced incompatible champion"),
    ("allowed_older_window", "Allowed older window"),
)


@dataclass(frozen=True)
class DriftStatus:
    """The pipeline's last drift check before the version was trained."""

    verdict: str
    checked_at: datetime
    current_window: str
    drifted_columns: tuple[str, ...]
    mlflow_run_id: str
    report_uri: str = ""


@dataclass(frozen=True)
class CardFacts:
    """Everything a card shows about one registered version."""

    spec: PipelineSpec
    version: str
    #: How it was registered: ``champion`` (auto promotion) or ``challenger`` (awaiting approval).
    alias: str
    snapshot: SnapshotRef
    validation: ValidationReport
    training: TrainingResult
    decision: GateDecision
    lineage: Mapping[str, str]
    drift: DriftStatus | None


def card_uri(settings: Settings, model_name: str, version: str) -> str:
    """The S3 key of a version's card."""
    return f"s3://{settings.artifacts_bucket}/cards/{model_name}/v{version}.md"


def _text(value: str) -> str:
    return " ".join(value.split()) or "_not stated in the spec_"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _window(snapshot: SnapshotRef) -> str:
    window = f"{snapshot.window_start} to {snapshot.window_end}"
    if (snapshot.window_first_hour, snapshot.window_last_hour) != (0, 23):
        window += (
            f" ({snapshot.window_first_hour:02d}:00 of the first day to "
            f"{snapshot.window_last_hour:02d}:59 of the last)"
        )
    return window


def _metrics_table(decision: GateDecision) -> list[str]:
    champion = decision.champion
    if champion is None:
        lines = ["| metric | this version |", "| --- | --- |"]
        lines += [f"| {name} | {_number(value)} |" for name, value in decision.challenger.items()]
        return lines
    header = f"champion v{decision.champion_version}"
    lines = [f"| metric | this version | {header} | difference |", "| --- | --- | --- | --- |"]
    for name, value in decision.challenger.items():
        theirs = champion.get(name)
        difference = f"{value - theirs:+.4f}" if theirs is not None else "-"
        lines.append(f"| {name} | {_number(value)} | {_number(theirs)} | {difference} |")
    return lines


def _gate(decision: GateDecision) -> list[str]:
    verdict = "passed" if decision.passed else "rejected"
    lines = [f"Gate {verdict}:", ""]
    lines += [f"- `{check.describe()}`" for check in decision.checks]
    if decision.note:
        lines.append(f"- note: {decision.note}")
    return lines


def _validation(report: ValidationReport) -> list[str]:
    verdict = "passed" if report.success else "failed"
    lines = [
        f"Suite `{report.suite}` (sha256 {report.suite_sha256[:16]}) {verdict}: "
        f"{report.evaluated} expectations evaluated, {len(report.failures)} failed, "
        f"{len(report.warnings)} warning(s).",
    ]
    lines += [f"- warning: {warning.describe()}" for warning in report.warnings]
    lines.append(f"- result: `{report.result_uri}`")
    if report.data_docs_uri:
        lines.append(f"- Data Docs: `{report.data_docs_uri}`")
    return lines


def _drift(drift: DriftStatus | None, triggered_by: str) -> list[str]:
    lines = []
    if triggered_by:
        lines.append(f"This version was trained because drift was found: `{triggered_by}`.")
    if drift is None:
        lines.append("No drift check had run before this version was trained.")
        return lines
    drifted = ", ".join(drift.drifted_columns) or "none"
    lines.append(
        f"Last check before training: **{drift.verdict.replace('_', ' ')}** at "
        f"{drift.checked_at:%Y-%m-%d %H:%M} UTC on {drift.current_window}; drifted columns: "
        f"{drifted} (MLflow run `{drift.mlflow_run_id}`)."
    )
    if drift.report_uri:
        lines.append(f"Report: `{drift.report_uri}`")
    return lines


def render_card(facts: CardFacts) -> str:
    """A version's model card as Markdown (pure: the same facts give the same text).

    Args:
        facts: The version, its spec, data, checks, metrics and lineage.

    Returns:
        The card.
    """
    spec, snapshot, training = facts.spec, facts.snapshot, facts.training
    schema, model = spec.schema_, spec.model
    promotion = (
        "champion (promoted automatically after passing the gate)"
        if facts.alias == "champion"
        else f"{facts.alias} ({_AWAITING})"
    )
    params = ", ".join(f"{key}={value}" for key, value in sorted(model.params.items()))
    features = [f"- numeric: {', '.join(schema.numeric_features) or '-'}"]
    features.append(f"- categorical: {', '.join(schema.categorical_features) or '-'}")
    features.append(f"- target: {schema.target} ({model.task})")
    rows = (
        f"{snapshot.rows} rows in the snapshot: {training.rows_train} trained on, "
        f"{training.rows_holdout} held out"
    )
    if training.dropped_unlabeled:
        rows += f", {training.dropped_unlabeled} without a label dropped"
    lineage = [
        f"- {label}: `{facts.lineage[key]}`" for key, label in _LINEAGE if facts.lineage.get(key)
    ]
    sections = [
        f"# Model card: {spec.registered_model_name} v{facts.version}",
        "",
        f"Pipeline `{spec.name}` · owner **{_text(spec.owner)}** · registered as {promotion}.",
        "",
        "## Description",
        _text(spec.description),
        "",
        "## Intended use",
        _text(spec.intended_use),
        "",
        "## Limitations",
        _text(spec.limitations),
        "",
        "## Training data",
        f"- window: {_window(snapshot)}",
        f"- rows: {rows}",
        f"- snapshot: `{snapshot.uri}`",
        "",
        "## Model and features",
        f"- estimator: `{model.estimator}`" + (f" ({params})" if params else ""),
        *features,
        "",
        "## Metrics (holdout)",
        *_metrics_table(facts.decision),
        "",
        *_gate(facts.decision),
        "",
        "## Data validation",
        *_validation(facts.validation),
        "",
        "## Drift at training time",
        *_drift(facts.drift, facts.lineage.get("drift_report_uri", "")),
        "",
        "## Lineage",
        *lineage,
    ]
    return "\n".join(sections) + "\n"


def description_of(card: str, uri: str) -> str:
    """The card as a model version description: whole, or cut to MLflow's limit with a pointer.

    Args:
        card: The Markdown card.
        uri: Where the whole card is.
    """
    if len(card) <= MLFLOW_DESCRIPTION_LIMIT:
        return card
    tail = f"\n\n… (cut to fit MLflow; the whole card: `{uri}`)\n"
    return card[: MLFLOW_DESCRIPTION_LIMIT - len(tail)] + tail


def with_approval(card: str, outcome: str) -> str:
    """The card with its approval section saying ``outcome`` (an earlier one is replaced).

    A card is rendered at registration, while an approval is still pending; the reviewer's
    answer arrives later and belongs on the same card.

    Args:
        card: The Markdown card.
        outcome: One line: who decided what, and why (``Verdict.describe``).

    Returns:
        The card ending with an ``## Approval`` section.
    """
    head = card.partition(f"\n{APPROVAL_HEADING}\n")[0].rstrip("\n")
    head = head.replace(_AWAITING, "answered: see Approval below")
    return f"{head}\n\n{APPROVAL_HEADING}\n{outcome}\n"


# ---- I/O ---------------------------------------------------------------------------------------


def drift_status_before(spec: PipelineSpec, moment_ms: int) -> DriftStatus | None:
    """The pipeline's last finished drift check that started before ``moment_ms``.

    Read from the monitoring experiment, where the performance monitor logs too (its runs carry
    ``monitor=performance`` and are skipped).

    Args:
        spec: The pipeline (its monitoring experiment).
        moment_ms: Epoch milliseconds (the training run's start): the card says what was known
            then, so a retry renders the same card.

    Returns:
        The check, or None when none ran before.
    """
    from trainyard.core.tracking import newest_finished_runs

    before = f"attributes.start_time < {moment_ms}"
    for run in newest_finished_runs(spec.monitoring_experiment, before, 50):
        tags = run.data.tags
        if tags.get("monitor", "drift") == "drift" and tags.get("verdict"):
            return DriftStatus(
                verdict=tags["verdict"],
                checked_at=datetime.fromtimestamp(run.info.start_time / 1000, tz=UTC),
                current_window=tags.get("current_window", "-").replace("..", " to "),
                drifted_columns=tuple(filter(None, tags.get("drifted_columns", "").split(","))),
                mlflow_run_id=run.info.run_id,
                report_uri=tags.get("report_uri", ""),
            )
    return None


def publish(settings: Settings, model_name: str, version: Any, card: str) -> str:
    """Store a version's card on S3 and with its MLflow run, and make it the description.

    Idempotent: each write puts the same text in the same place.

    Args:
        settings: The artifacts bucket.
        model_name: The registered model.
        version: MLflow's ``ModelVersion`` (its number and training run).
        card: The Markdown card.

    Returns:
        The card's S3 URI.
    """
    from mlflow import MlflowClient

    from trainyard.core import storage

    uri = card_uri(settings, model_name, str(version.version))
    storage.put_bytes(settings, uri, card.encode(), "text/markdown; charset=utf-8")
    client = MlflowClient()
    if version.run_id:
        client.log_text(version.run_id, card, RUN_ARTIFACT)
    # Last: a version with a description has its card everywhere (register checks this).
    client.update_model_version(model_name, version.version, description=description_of(card, uri))
    return uri


def record_approval(settings: Settings, model_name: str, version: str, outcome: str) -> str | None:
    """Write the reviewer's answer on a version's card, wherever the card is kept.

    Args:
        settings: The artifacts bucket.
        model_name: The registered model.
        version: The version the answer was about.
        outcome: One line: who decided what, and why.

    Returns:
        The card's S3 URI, or None when the version has no card (registered before cards).
    """
    from mlflow import MlflowClient

    card = read_card(settings, model_name, version)
    if card is None:
        return None
    found = MlflowClient().get_model_version(model_name, version)
    return publish(settings, model_name, found, with_approval(card, outcome))


def read_card(settings: Settings, model_name: str, version: str) -> str | None:
    """A version's whole card from S3, or None when it has none."""
    from trainyard.core import storage

    uri = card_uri(settings, model_name, version)
    if not storage.exists(settings, uri):
        return None
    return storage.get_bytes(settings, uri).decode()
