"""The training steps: ingest → validate → train → evaluate → register, and :func:`run` doing all.

The CLI's step commands, the CLI's ``run`` and the Airflow tasks all call these functions. Each
step is a thin layer of I/O (S3, MLflow) around pure functions (:func:`fit`, :func:`score`,
:func:`~trainyard.training.gate.decide`) that run on data in memory and are unit-tested alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from trainyard.data.sources import ingest
from trainyard.data.validation import validate
from trainyard.training.gate import GateDecision, decide

if TYPE_CHECKING:
    import pandas as pd

    from trainyard.core.lineage import RunContext
    from trainyard.core.settings import Settings
    from trainyard.core.spec import PipelineSpec
    from trainyard.data.snapshots import SnapshotRef, TrainingWindow
    from trainyard.data.validation import ValidationReport
    from trainyard.training.modeling import Split
    from trainyard.training.outcome import Outcome

__all__ = ["evaluate", "fit", "ingest", "run", "score", "train", "validate"]

log = logging.getLogger(__name__)


class TrainingResult(BaseModel):
    """What XCom carries about a trained model."""

    model_config = ConfigDict(frozen=True)

    mlflow_run_id: str
    experiment_id: str
    model_uri: str
    rows_train: int
    rows_holdout: int
    dropped_unlabeled: int
    training_sample: str | None = None


# ---- pure parts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fitted:
    """A fitted pipeline and the split it was fitted on."""

    model: Any
    data: Split


def fit(spec: PipelineSpec, frame: pd.DataFrame | Split) -> Fitted:
    """Fit the spec's pipeline on the training side of a split (of a snapshot's rows, split here).

    Args:
        spec: Features, estimator, hyperparameters, split settings.
        frame: The snapshot's rows, or their split.

    Returns:
        The fitted pipeline and the split.
    """
    from trainyard.training import modeling

    data = frame if isinstance(frame, modeling.Split) else modeling.split(spec, frame)
    model = modeling.build_pipeline(spec)
    model.fit(data.x_train, data.y_train)
    return Fitted(model=model, data=data)


def training_params(spec: PipelineSpec, snapshot: SnapshotRef) -> dict[str, Any]:
    """The MLflow params of a training run: estimator, hyperparameters, split, window, features."""
    return {
        "estimator": spec.model.estimator,
        **{f"model.{k}": v for k, v in spec.model.params.items()},
        "split.test_size": spec.split.test_size,
        "split.seed": spec.split.seed,
        "max_training_rows": spec.model.max_training_rows,
        "window_start": snapshot.window_start.isoformat(),
        "window_end": snapshot.window_end.isoformat(),
        "features": ",".join(spec.schema_.features),
    }


def score(spec: PipelineSpec, model: Any, holdout: Split) -> dict[str, float]:
    """The spec's metrics of a model on the holdout side of a split."""
    from trainyard.core.metrics import compute_metrics

    return compute_metrics(spec.metrics, model, holdout.x_test, holdout.y_test)


def holdout_scores(spec: PipelineSpec, model: Any, holdout: Split) -> pd.DataFrame:
    """A model's own predictions on its holdout, the monitor's reference for prediction and
    target drift (pure).

    Scored like a batch (classifiers: the most probable class and every class's probability),
    on a seeded sample of at most :data:`~trainyard.data.predictions.HOLDOUT_SCORES_ROWS` rows.

    Returns:
        ``label``, ``prediction`` and, for classifiers with ``predict_proba``, ``proba_<class>``.
    """
    import numpy as np
    import pandas as pd

    from trainyard.data.predictions import HOLDOUT_SCORES_ROWS, proba_column
    from trainyard.drift.evidently import sample_rows

    rows = sample_rows(holdout.x_test, HOLDOUT_SCORES_ROWS, spec.split.seed)
    frame = pd.DataFrame({"label": holdout.y_test.loc[rows.index].to_numpy()})
    if spec.model.task == "classification" and hasattr(model, "predict_proba"):
        probabilities = model.predict_proba(rows)
        frame["prediction"] = np.asarray(model.classes_).take(probabilities.argmax(axis=1))
        for index, label in enumerate(model.classes_):
            frame[proba_column(label)] = probabilities[:, index]
    else:
        frame["prediction"] = np.asarray(model.predict(rows))
    return frame


def champion_incompatibility(
    spec: PipelineSpec, champion: Any, challenger: Any, holdout: Split
) -> str | None:
    """Why the champion cannot be compared with the challenger on this holdout, or None.

    The task, the input columns and (for classifiers) the classes must match. (A champion that
    passes these can still fail to score; :func:`evaluate` treats that as incompatible too.)

    Args:
        spec: This run's task and metrics.
        champion: The champion's fitted pipeline.
        challenger: This run's fitted pipeline.
        holdout: This run's split.

    Returns:
        A one-line reason, or None when the champion can be compared.
    """
    from sklearn.base import is_classifier

    task = spec.model.task
    if is_classifier(champion) != (task == "classification"):
        kind = "a classifier" if is_classifier(champion) else "not a classifier"
        return f"it is {kind}, this run's task is {task}"
    needed = [str(c) for c in getattr(champion, "feature_names_in_", [])]
    missing = [c for c in needed if c not in holdout.x_test.columns]
    if missing:
        return f"it needs columns this holdout lacks: {missing}"
    if task == "classification":
        theirs = [_plain(c) for c in getattr(champion, "classes_", [])]
        ours = [_plain(c) for c in getattr(challenger, "classes_", [])]
        if theirs != ours:
            return f"it predicts classes {theirs}, the challenger {ours}"
    return None


def _first_line(what: str, error: Exception) -> str:
    return f"{what}: {type(error).__name__}: {error}".splitlines()[0]


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def older_window(
    spec: PipelineSpec,
    snapshot: SnapshotRef,
    champion_version: str,
    champion_window_end: str | None,
) -> str | None:
    """How this run's window is older than the champion's (by its last day), or None (pure).

    Static sources (a bundled dataset, files without partitioning, a query without the window's
    bound parameters) are exempt: their window selects no data.

    Args:
        spec: The pipeline (its source kind).
        snapshot: This run's snapshot (its window).
        champion_version: The champion's version, for the message.
        champion_window_end: The champion's ``window_end`` lineage tag (None: unknown).

    Returns:
        A one-line reason, or None when the window is not older (or there is nothing to compare).
    """
    from datetime import date

    if not spec.source.windowed or not champion_window_end:
        return None
    if snapshot.window_end >= date.fromisoformat(champion_window_end):
        return None
    return (
        f"older window: this run's window ends {snapshot.window_end}, before champion "
        f"v{champion_version}'s ({champion_window_end})"
    )


def split_mismatch(spec: PipelineSpec, champion_params: dict[str, str]) -> str:
    """A warning when the champion was trained with other split settings than this run's.

    The holdout is stable across runs only for the same settings; with others, some of today's
    holdout rows may be rows the champion trained on, flattering it.

    Args:
        spec: This run's split settings.
        champion_params: The MLflow params of the champion's training run.

    Returns:
        The warning, or "" when the settings match.
    """
    ours = {"split.seed": str(spec.split.seed), "split.test_size": str(spec.split.test_size)}
    theirs = {key: champion_params.get(key) for key in ours}
    if theirs == ours:
        return ""
    return (
        f"champion was trained with split {theirs}, this run uses {ours}: the holdout may "
        "include rows the champion trained on"
    )


# ---- steps (I/O around the pure parts) --------------------------------------------------------


def _split(
    spec: PipelineSpec, settings: Settings, snapshot: SnapshotRef, holdout_only: bool = False
) -> Split:
    """The snapshot's split, read piece by piece: memory holds the rows kept, not the snapshot."""
    from trainyard.data.snapshots import open_snapshot
    from trainyard.training import modeling

    with open_snapshot(settings, snapshot.uri, snapshot.sha256) as rows:
        return modeling.split_rows(spec, rows.columns, rows.batches, holdout_only)


def _store_holdout_scores(
    spec: PipelineSpec, settings: Settings, mlflow_run_id: str, fitted: Fitted
) -> str:
    """Keep the model's holdout scores under their deterministic key (before ``model_uri`` is
    tagged, so a run reused by a retry always has them)."""
    from trainyard.core import storage
    from trainyard.data.predictions import holdout_scores_uri

    uri = holdout_scores_uri(settings, spec.name, mlflow_run_id)
    frame = holdout_scores(spec, fitted.model, fitted.data)
    storage.put_bytes(settings, uri, storage.parquet_bytes(frame))
    log.info("holdout scores (%d rows) stored in %s", len(frame), uri)
    return uri


def _pip_requirements() -> list[str]:
    from importlib.metadata import version

    # Explicit: inferring requirements costs ~10 s per model (see STACK_NOTES.md).
    return [f"{p}=={version(p)}" for p in ("scikit-learn", "pandas", "numpy", "scipy", "skops")]


def train(
    spec: PipelineSpec,
    settings: Settings,
    snapshot: SnapshotRef,
    validation: ValidationReport,
    context: RunContext,
) -> TrainingResult:
    """Fit the spec's pipeline on the snapshot's training split and log everything to MLflow.

    Logs params, the dataset input (S3 source and digest), the validation report and the model
    (signature, input example, explicit pip requirements). A retry of the same Airflow run on the
    same snapshot reuses the finished MLflow run instead of training again; runs of the same
    Airflow run left RUNNING by a killed attempt are closed as KILLED first
    (:func:`~trainyard.core.tracking.close_orphaned_runs`).

    Args:
        spec: The pipeline.
        settings: Buckets and endpoint.
        snapshot: The validated snapshot.
        validation: Its validation report (must be successful).
        context: DAG, run, reason and code version.

    Returns:
        The MLflow run and the logged model's URI.

    Raises:
        ValueError: The validation report is not a success.
        trainyard.core.spec.SpecError: The spec's model fails preflight (checked before the
            snapshot is read or an MLflow run is started).
        trainyard.training.modeling.TrainingDataError: The data cannot be trained on (e.g. a
            target that does not fit the task), found before fitting.
    """
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from trainyard.core.tracking import close_orphaned_runs, find_finished_run
    from trainyard.training.preflight import preflight, trusted_types

    if not validation.success:
        raise ValueError("refusing to train on a snapshot that failed validation")
    spec_path = settings.pipelines_dir / f"{spec.name}.yaml"
    preflight(spec, spec_path)
    experiment = mlflow.set_experiment(spec.experiment_name)
    closed = close_orphaned_runs(experiment.experiment_id, context.identity())
    if closed:
        log.warning("closed MLflow run(s) %s of an earlier, killed attempt as KILLED", closed)
    existing = find_finished_run(
        experiment.experiment_id, {**context.identity(), "snapshot_sha256": snapshot.sha256}
    )
    if existing is not None and "model_uri" in existing.data.tags:
        log.info("reusing finished MLflow run %s of this Airflow run", existing.info.run_id)
        tags = existing.data.tags
        return TrainingResult(
            mlflow_run_id=existing.info.run_id,
            experiment_id=experiment.experiment_id,
            model_uri=tags["model_uri"],
            rows_train=int(tags["rows_train"]),
            rows_holdout=int(tags["rows_holdout"]),
            dropped_unlabeled=int(tags["dropped_unlabeled"]),
            training_sample=tags.get("training_sample"),
        )

    fitted = fit(spec, _split(spec, settings, snapshot))
    data = fitted.data
    tags = {
        "pipeline": spec.name,
        **context.tags(),
        **snapshot.tags(),
        **validation.tags(),
        "spec_sha256": spec.sha256(),
        "rows_train": str(len(data.x_train)),
        "rows_holdout": str(len(data.x_test)),
        "dropped_unlabeled": str(data.dropped_unlabeled),
    }
    sample = data.sample_note(spec.split.seed)
    if sample:
        log.info("training on a sample: %s", sample)
        tags["training_sample"] = sample
    with mlflow.start_run(run_name=f"{context.dag_id}/{context.run_id}", tags=tags) as run:
        mlflow.log_params(training_params(spec, snapshot))
        dataset = mlflow.data.from_pandas(
            # The rows fitted on (sampled, when max_training_rows sampled), without a copy.
            pd.concat([data.x_train, data.y_train], axis=1, copy=False),
            source=snapshot.uri,
            name=f"{spec.name}-{snapshot.window_start}-{snapshot.window_end}",
            targets=spec.schema_.target,
            # The snapshot's own content hash, so MLflow's dataset digest equals (a prefix of)
            # the snapshot_sha256 lineage tag.
            digest=snapshot.sha256[:32],
        )
        mlflow.log_input(dataset, context="training")
        mlflow.log_dict(validation.model_dump(mode="json"), "validation/report.json")
        example = data.x_train.head(5)
        info = mlflow.sklearn.log_model(
            fitted.model,
            name="model",
            signature=infer_signature(example, fitted.model.predict(example)),
            input_example=example,
            pip_requirements=_pip_requirements(),
            skops_trusted_types=trusted_types(spec, fitted.model, spec_path),
        )
        _store_holdout_scores(spec, settings, run.info.run_id, fitted)
        # Set last: a run carrying model_uri is complete and can be reused by a retry.
        mlflow.set_tag("model_uri", info.model_uri)
    return TrainingResult(
        mlflow_run_id=run.info.run_id,
        experiment_id=experiment.experiment_id,
        model_uri=info.model_uri,
        rows_train=len(data.x_train),
        rows_holdout=len(data.x_test),
        dropped_unlabeled=data.dropped_unlabeled,
        training_sample=sample,
    )


def _score_champion(
    spec: PipelineSpec, model_uri: str, challenger: Any, holdout: Split
) -> tuple[dict[str, float] | None, str | None]:
    """The champion's metrics on this holdout, or why it cannot be scored there.

    Raises:
        Exception: A network or server error while loading it (the step is retried).
    """
    import mlflow

    from trainyard.core.services import is_transient

    try:
        model = mlflow.sklearn.load_model(model_uri)
    except Exception as error:
        if is_transient(error):
            raise
        return None, _first_line("loading it failed", error)
    incompatible = champion_incompatibility(spec, model, challenger, holdout)
    if incompatible is not None:
        return None, incompatible
    try:
        return score(spec, model, holdout), None
    except Exception as error:  # noqa: BLE001 (a champion that cannot score is incomparable)
        return None, _first_line("scoring it failed", error)


def evaluate(
    spec: PipelineSpec,
    settings: Settings,
    snapshot: SnapshotRef,
    training: TrainingResult,
    replace_incompatible_champion: bool = False,
    allow_older_window: bool = False,
) -> GateDecision:
    """Score challenger and champion on this run's holdout and apply the gate.

    A champion that cannot be loaded or scored on this holdout (other task, columns or classes)
    fails the gate, naming why, unless ``replace_incompatible_champion`` is set; then the
    replacement is recorded in the decision (and in the registered version's lineage). So does a
    run whose window ends before the champion's (:func:`older_window`), unless
    ``allow_older_window`` is set.
    Every number and the decision are logged to the training run and returned.

    Args:
        spec: The pipeline.
        settings: Buckets and endpoint.
        snapshot: The snapshot the challenger was trained on.
        training: The challenger's MLflow run and model.
        replace_incompatible_champion: Let an incompatible champion be replaced.
        allow_older_window: Let a run of an older window than the champion's replace it.

    Returns:
        The gate decision.
    """
    import mlflow

    from trainyard.core.tracking import champion_version

    holdout = _split(spec, settings, snapshot, holdout_only=True)
    challenger_model = mlflow.sklearn.load_model(training.model_uri)
    challenger = score(spec, challenger_model, holdout)
    current = champion_version(spec.registered_model_name)
    champion, note, incompatible, older = None, "", None, None
    if current is not None and current.run_id != training.mlflow_run_id:
        older = older_window(spec, snapshot, current.version, current.tags.get("window_end"))
    if current is None:
        note = "no champion yet: floors and leak checks only"
    elif current.run_id == training.mlflow_run_id:
        champion = challenger
        note = f"champion v{current.version} is this run's model"
    else:
        uri = f"models:/{spec.registered_model_name}/{current.version}"
        champion, incompatible = _score_champion(spec, uri, challenger_model, holdout)
        if incompatible is None:
            note = split_mismatch(spec, mlflow.MlflowClient().get_run(current.run_id).data.params)
        else:
            log.warning("champion v%s cannot score this holdout: %s", current.version, incompatible)
        if note:
            log.warning(note)
    decision = decide(
        spec.gate,
        challenger,
        champion,
        current and current.version,
        note,
        leak_bounds=spec.leak_bounds,
        incompatible=incompatible,
        replace_incompatible=replace_incompatible_champion,
        older_window=older,
        allow_older_window=allow_older_window,
    )
    _log_decision(training.mlflow_run_id, decision)
    return decision


def _log_decision(run_id: str, decision: GateDecision) -> None:
    from mlflow import MlflowClient

    client = MlflowClient()
    for name, value in decision.challenger.items():
        client.log_metric(run_id, f"holdout_{name}", value)
    for name, value in (decision.champion or {}).items():
        client.log_metric(run_id, f"champion_holdout_{name}", value)
    client.log_metric(run_id, "gate_passed", float(decision.passed))
    for key, value in decision.tags().items():
        client.set_tag(run_id, key, value)
    client.log_dict(run_id, decision.model_dump(mode="json"), "gate/decision.json")
    client.log_text(run_id, decision.summary(), "gate/decision.txt")


def run(
    spec: PipelineSpec,
    settings: Settings,
    window: TrainingWindow,
    context: RunContext,
    replace_incompatible_champion: bool = False,
    allow_older_window: bool = False,
) -> Outcome:
    """Every step in one process: ingest, validate, train, evaluate, gate, register on a pass.

    The Airflow DAG runs the same steps as separate tasks. ``replace_incompatible_champion`` and
    ``allow_older_window`` are passed to :func:`evaluate`.

    Raises:
        trainyard.data.validation.ValidationFailed: The snapshot failed validation; nothing was
            trained.
    """
    from trainyard.core.tracking import champion_version
    from trainyard.training import registry
    from trainyard.training.outcome import outcome
    from trainyard.training.preflight import preflight

    # Before any data is read (train checks again: it also runs alone, as a task).
    preflight(spec, settings.pipelines_dir / f"{spec.name}.yaml")
    snapshot = ingest(spec, settings, window)
    log.info("snapshot %s (%d rows)", snapshot.uri, snapshot.rows)
    report = validate(spec, settings, snapshot)
    trained = train(spec, settings, snapshot, report, context)
    decision = evaluate(
        spec, settings, snapshot, trained, replace_incompatible_champion, allow_older_window
    )
    log.info("%s", decision.summary())
    registration = None
    if decision.passed:
        registration = registry.register(
            spec, settings, snapshot, report, trained, decision, context
        )
    champion = champion_version(spec.registered_model_name)
    return outcome(spec, snapshot, trained, decision, registration, champion and champion.version)
