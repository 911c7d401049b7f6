"""Training and evaluation, tracked in MLflow.

The tracking server comes from ``MLFLOW_TRACKING_URI`` (and ``MLFLOW_TRACKING_USERNAME`` /
``MLFLOW_TRACKING_PASSWORD`` when it has auth); MLflow reads them itself.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from trainyard.gate import GateDecision, decide

if TYPE_CHECKING:
    from trainyard.ingest import SnapshotRef
    from trainyard.lineage import RunContext
    from trainyard.settings import Settings
    from trainyard.spec import PipelineSpec
    from trainyard.validation import ValidationReport

log = logging.getLogger(__name__)

CHAMPION = "champion"
PREVIOUS = "previous"
#: Types our own preprocessing puts into every saved pipeline (OneHotEncoder's dtype).
BASE_TRUSTED_TYPES = frozenset({"numpy.dtype"})


class UntrustedModelTypesError(TypeError):
    """The fitted model holds types that neither skops nor the spec trusts."""


class TrainingResult(BaseModel):
    """What XCom carries about a trained model."""

    model_config = ConfigDict(frozen=True)

    mlflow_run_id: str
    experiment_id: str
    model_uri: str
    rows_train: int
    rows_holdout: int
    dropped_unlabeled: int


def _pip_requirements() -> list[str]:
    from importlib.metadata import version

    # Explicit: inferring requirements costs ~10 s per model (see STACK_NOTES.md).
    return [f"{p}=={version(p)}" for p in ("scikit-learn", "pandas", "numpy", "scipy", "skops")]


def trusted_types(spec: PipelineSpec, model: Any) -> list[str]:
    """The types to trust when MLflow saves the model with skops.

    Args:
        spec: Lists the extra types its author reviewed (``model.skops_trusted_types``).
        model: The fitted pipeline.

    Returns:
        The model's types that skops does not trust by default, all of them allowed.

    Raises:
        UntrustedModelTypesError: Naming types the spec would have to list first.
    """
    import skops.io

    found = set(skops.io.get_untrusted_types(data=skops.io.dumps(model)))
    unexpected = sorted(found - BASE_TRUSTED_TYPES - set(spec.model.skops_trusted_types))
    if unexpected:
        raise UntrustedModelTypesError(
            f"the fitted {spec.model.estimator} contains types skops does not trust by default: "
            f"{unexpected}. If you trust them, list them under model.skops_trusted_types in "
            f"the {spec.name!r} pipeline spec."
        )
    return sorted(found)


def _find_finished_run(experiment_id: str, context: RunContext, snapshot_sha: str) -> Any | None:
    from mlflow import MlflowClient

    runs = MlflowClient().search_runs(
        [experiment_id],
        filter_string=(
            f"tags.airflow_run_id = '{context.run_id}' and "
            f"tags.airflow_dag_id = '{context.dag_id}' and "
            f"tags.snapshot_sha256 = '{snapshot_sha}' and attributes.status = 'FINISHED'"
        ),
        max_results=1,
    )
    run = runs[0] if runs else None
    return run if run is not None and "model_uri" in run.data.tags else None


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
    same snapshot reuses the finished MLflow run instead of training again.

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
    """
    import mlflow
    from mlflow.models import infer_signature

    from trainyard import modeling
    from trainyard.ingest import load_snapshot

    if not validation.success:
        raise ValueError("refusing to train on a snapshot that failed validation")
    experiment = mlflow.set_experiment(spec.experiment_name)
    existing = _find_finished_run(experiment.experiment_id, context, snapshot.sha256)
    if existing is not None:
        log.info("reusing finished MLflow run %s of this Airflow run", existing.info.run_id)
        tags = existing.data.tags
        return TrainingResult(
            mlflow_run_id=existing.info.run_id,
            experiment_id=experiment.experiment_id,
            model_uri=tags["model_uri"],
            rows_train=int(tags["rows_train"]),
            rows_holdout=int(tags["rows_holdout"]),
            dropped_unlabeled=int(tags["dropped_unlabeled"]),
        )

    frame = load_snapshot(settings, snapshot)
    data = modeling.split(spec, frame)
    pipeline = modeling.build_pipeline(spec)
    tags = {
        "pipeline": spec.name,
        "airflow_dag_id": context.dag_id,
        "airflow_run_id": context.run_id,
        "trigger_reason": context.trigger_reason,
        "drift_report_uri": context.drift_report_uri or "",
        "git_commit": context.git_commit,
        "spec_sha256": spec.sha256(),
        "snapshot_uri": snapshot.uri,
        "snapshot_sha256": snapshot.sha256,
        "validation_result_uri": validation.result_uri,
        "rows_train": str(len(data.x_train)),
        "rows_holdout": str(len(data.x_test)),
        "dropped_unlabeled": str(data.dropped_unlabeled),
    }
    with mlflow.start_run(run_name=f"{context.dag_id}/{context.run_id}", tags=tags) as run:
        mlflow.log_params(
            {
                "estimator": spec.model.estimator,
                **{f"model.{k}": v for k, v in spec.model.params.items()},
                "split.test_size": spec.split.test_size,
                "split.seed": spec.split.seed,
                "window_start": snapshot.window_start.isoformat(),
                "window_end": snapshot.window_end.isoformat(),
                "features": ",".join(spec.schema_.features),
            }
        )
        dataset = mlflow.data.from_pandas(
            frame,
            source=snapshot.uri,
            name=f"{spec.name}-snapshot",
            targets=spec.schema_.target,
            # The tracking store limits digests to 36 characters; the full hash is a tag.
            digest=snapshot.sha256[:32],
        )
        mlflow.log_input(dataset, context="training")
        mlflow.log_dict(validation.model_dump(mode="json"), "validation/report.json")
        pipeline.fit(data.x_train, data.y_train)
        example = data.x_train.head(5)
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            signature=infer_signature(example, pipeline.predict(example)),
            input_example=example,
            pip_requirements=_pip_requirements(),
            skops_trusted_types=trusted_types(spec, pipeline),
        )
        # Set last: a run carrying model_uri is complete and can be reused by a retry.
        mlflow.set_tag("model_uri", info.model_uri)
    return TrainingResult(
        mlflow_run_id=run.info.run_id,
        experiment_id=experiment.experiment_id,
        model_uri=info.model_uri,
        rows_train=len(data.x_train),
        rows_holdout=len(data.x_test),
        dropped_unlabeled=data.dropped_unlabeled,
    )


def champion_version(model_name: str) -> Any | None:
    """The model version holding the ``champion`` alias, or None (also when no model exists)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return MlflowClient().get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException as error:
        if error.error_code in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"}:
            return None
        raise


def _split_mismatch(spec: PipelineSpec, champion_run_id: str | None) -> str:
    """A warning when the champion was trained with other split settings than this run's.

    The holdout is stable across runs only for the same settings; with others, some of today's
    holdout rows may be rows the champion trained on, flattering it.
    """
    from mlflow import MlflowClient

    if not champion_run_id:
        return ""
    params = MlflowClient().get_run(champion_run_id).data.params
    ours = {"split.seed": str(spec.split.seed), "split.test_size": str(spec.split.test_size)}
    theirs = {key: params.get(key) for key in ours}
    if theirs == ours:
        return ""
    message = (
        f"champion was trained with split {theirs}, this run uses {ours}: the holdout may "
        "include rows the champion trained on"
    )
    log.warning(message)
    return message


def evaluate(
    spec: PipelineSpec, settings: Settings, snapshot: SnapshotRef, training: TrainingResult
) -> GateDecision:
    """Score challenger and champion on this run's holdout and apply the gate.

    Every number and the decision are logged to the training run and returned.

    Returns:
        The gate decision.
    """
    import mlflow

    from trainyard import modeling
    from trainyard.ingest import load_snapshot

    data = modeling.split(spec, load_snapshot(settings, snapshot))
    challenger_model = mlflow.sklearn.load_model(training.model_uri)
    challenger = modeling.compute_metrics(spec.metrics, challenger_model, data.x_test, data.y_test)

    champion_metrics, note, current = None, "", champion_version(spec.registered_model_name)
    if current is None:
        note = "no champion yet: floors only"
    elif current.run_id == training.mlflow_run_id:
        champion_metrics = challenger
        note = f"champion v{current.version} is this run's model"
    else:
        try:
            champion_model = mlflow.sklearn.load_model(
                f"models:/{spec.registered_model_name}/{current.version}"
            )
            champion_metrics = modeling.compute_metrics(
                spec.metrics, champion_model, data.x_test, data.y_test
            )
        except Exception as error:  # a champion on an older schema cannot score this holdout
            note = (
                f"champion v{current.version} could not score this holdout ({error}); floors only"
            )
            log.warning(note)
        else:
            note = _split_mismatch(spec, current.run_id)
    decision = decide(
        spec.gate,
        challenger,
        champion_metrics,
        champion_version=current.version if current is not None else None,
        note=note,
    )
    client = mlflow.MlflowClient()
    run_id = training.mlflow_run_id
    for name, value in challenger.items():
        client.log_metric(run_id, f"holdout_{name}", value)
    for name, value in (champion_metrics or {}).items():
        client.log_metric(run_id, f"champion_holdout_{name}", value)
    client.log_metric(run_id, "gate_passed", float(decision.passed))
    client.set_tag(run_id, "gate_decision", "passed" if decision.passed else "rejected")
    client.log_dict(run_id, decision.model_dump(mode="json"), "gate/decision.json")
    client.log_text(run_id, decision.summary(), "gate/decision.txt")
    return decision
