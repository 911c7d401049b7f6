"""Batch scoring with the champion: champion → batch → validate → score.

The champion is resolved once, at the start of a run, and every day of the run is scored with
that version (``models:/<name>/<version>``, never the alias again), so a promotion in the middle
of a run cannot mix two models in one run. Each day's rows are read from the spec's raw
partitions (the target may be absent or empty), snapshotted like training data, checked with the
pipeline's suite minus its expectations on the target, and scored. Predictions go to the
prediction log (:mod:`trainyard.data.predictions`) under a key per (pipeline, day, version):
an object that exists is never rewritten, and the day's manifest moves only when the current
object changes. Every run leaves a record (``scoring/<pipeline>/runs/<run id>.json``) saying
what it scored, or why it did not.

:func:`feature_problem` and :func:`predict` are pure; the rest is thin I/O around them.
"""

from __future__ import annotations

import json
import logging
import tempfile
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from trainyard.core.errors import DeterministicError
from trainyard.core.tracking import NoChampionError

if TYPE_CHECKING:
    from collections.abc import Iterable

    import pandas as pd

    from trainyard.core.settings import Settings
    from trainyard.core.spec import PipelineSpec
    from trainyard.data.snapshots import SnapshotFile, SnapshotRef

log = logging.getLogger(__name__)

Status = Literal["scored", "no_champion", "data_quality_failure"]


class ScoringInputError(DeterministicError):
    """The batch cannot be scored by the champion (a feature it needs is missing)."""


class ChampionRef(BaseModel):
    """The model version a scoring run uses, resolved once at its start."""

    model_config = ConfigDict(frozen=True)

    model_name: str
    version: str
    run_id: str | None = None

    @property
    def model_uri(self) -> str:
        """The exact version (not the alias, which may move during the run)."""
        return f"models:/{self.model_name}/{self.version}"


class ScoredDay(BaseModel):
    """One day's predictions: where, by which version, and what this run wrote."""

    model_config = ConfigDict(frozen=True)

    day: date
    uri: str
    rows: int
    written: bool
    manifest_moved: bool


class ScoringRecord(BaseModel):
    """What one scoring run did (stored per run, returned as XCom, printed by the CLI)."""

    model_config = ConfigDict(frozen=True)

    pipeline: str
    run_id: str
    status: Status
    message: str
    model_name: str
    model_version: str | None = None
    days: list[ScoredDay] = []

    def describe(self) -> str:
        """Human-readable lines."""
        lines = [f"scoring {self.pipeline} ({self.run_id}): {self.status}", f"  {self.message}"]
        for day in self.days:
            action = "written" if day.written else "already there, not rewritten"
            moved = "; manifest now points at it" if day.manifest_moved else ""
            lines.append(f"  {day.day}: {day.rows} rows -> {day.uri} ({action}{moved})")
        return "\n".join(lines)


# ---- pure parts -----------------------------------------------------------------------------


def scoring_days(
    spec: PipelineSpec, run_day: date, window_end: date | None = None, days: int | None = None
) -> list[date]:
    """The partition dates a run scores (pure).

    Args:
        spec: Its ``scoring`` section (days, end offset).
        run_day: The day the run is for.
        window_end: Last day to score (default: run day minus ``scoring.end_offset_days``).
        days: How many days (default ``scoring.days``).

    Returns:
        The dates, oldest first.

    Raises:
        trainyard.data.snapshots.WindowError: ``days`` below 1 or an end after the run day.
    """
    from datetime import timedelta

    from trainyard.data.snapshots import TrainingWindow

    scoring = _scoring(spec)
    end = window_end or run_day - timedelta(days=scoring.end_offset_days)
    return TrainingWindow.ending(end, scoring.days if days is None else days, run_day).days()


def needed_features(spec: PipelineSpec, model: Any) -> list[str]:
    """The columns the champion was fitted on (its ``feature_names_in_``), which may differ
    from today's spec if the spec changed after it was trained (pure)."""
    return [str(c) for c in getattr(model, "feature_names_in_", spec.schema_.features)]


def feature_problem(spec: PipelineSpec, model: Any, frame: pd.DataFrame) -> str | None:
    """Why the champion cannot score these rows, or None (pure).

    Only the frame's columns are looked at: a snapshot's empty header will do.
    """
    missing = [c for c in needed_features(spec, model) if c not in frame.columns]
    if missing:
        return f"the batch lacks feature column(s) {missing} the champion needs"
    return None


def predict(
    spec: PipelineSpec,
    model: Any,
    frame: pd.DataFrame,
    champion: ChampionRef,
    run_id: str,
    scored_at: datetime,
) -> pd.DataFrame:
    """The prediction-log rows of a batch (pure).

    Classifiers are asked for ``predict_proba`` once; the predicted class is the most probable
    one (what ``predict`` returns for scikit-learn classifiers), so the work is not done twice.

    Args:
        spec: Features and the id column.
        model: The champion's fitted pipeline.
        frame: The batch (features, the id column; the target is ignored).
        champion: Which version this is.
        run_id: The scoring run.
        scored_at: When (one timestamp for the run).

    Returns:
        Rows in the layout of :func:`trainyard.data.predictions.prediction_frame`.
    """
    import numpy as np

    from trainyard.data.predictions import prediction_frame

    schema = spec.schema_
    needed = needed_features(spec, model)
    numeric = [c for c in schema.numeric_features if c in needed]
    # As in training: numeric features as float (the model imputes missing values).
    features = frame[needed].astype(dict.fromkeys(numeric, "float64"))
    probabilities, classes = None, None
    if spec.model.task == "classification" and hasattr(model, "predict_proba"):
        probabilities = model.predict_proba(features)
        classes = model.classes_
        predictions = np.asarray(classes).take(probabilities.argmax(axis=1))
    else:
        predictions = model.predict(features)
    return prediction_frame(
        frame[schema.id_column],
        predictions,
        probabilities,
        classes,
        model_name=champion.model_name,
        model_version=champion.version,
        run_id=run_id,
        source="batch",
        scored_at=scored_at,
    )


# ---- steps ----------------------------------------------------------------------------------


def _scoring(spec: PipelineSpec) -> Any:
    if spec.scoring is None:
        raise DeterministicError(f"pipeline {spec.name!r} has no scoring section")
    return spec.scoring


def resolve_champion(spec: PipelineSpec) -> ChampionRef:
    """The version holding ``champion`` now; the run uses it throughout.

    Raises:
        NoChampionError: No version holds the alias (the run is skipped, not failed).
    """
    from trainyard.core.tracking import champion_version

    name = spec.registered_model_name
    champion = champion_version(name)
    if champion is None:
        raise NoChampionError(
            f"no champion of model {name!r} yet: nothing to score with "
            f"(train {spec.training_dag_id} first)"
        )
    return ChampionRef(model_name=name, version=str(champion.version), run_id=champion.run_id)


def batch(spec: PipelineSpec, settings: Settings, day: date) -> SnapshotRef:
    """Snapshot one day's rows to score (the target may be absent or empty).

    Raises:
        trainyard.data.sources.MissingPartitionsError: The day's partition is not there.
        trainyard.data.sources.RawDataError: A file does not open or lacks a declared feature,
            or a feature holds values of the wrong type; naming the file, column and a value.
    """
    from trainyard.data.snapshots import TrainingWindow
    from trainyard.data.sources import ingest

    return ingest(spec, settings, TrainingWindow(start=day, end=day), require_target=False)


def validate(spec: PipelineSpec, settings: Settings, snapshot: SnapshotRef) -> Any:
    """The pipeline's suite minus its expectations on the target.

    Raises:
        trainyard.data.validation.ValidationFailed: Listing each failed expectation.
    """
    from trainyard.data.validation import validate as validate_snapshot

    return validate_snapshot(spec, settings, snapshot, without_target=True)


def score_day(
    spec: PipelineSpec,
    settings: Settings,
    champion: ChampionRef,
    model: Any,
    snapshot: SnapshotRef,
    run_id: str,
    scored_at: datetime,
) -> ScoredDay:
    """Score one day's snapshot, unless this version's object for the day exists; move the
    day's manifest to it if it is not current.

    Raises:
        ScoringInputError: The champion needs a column the batch lacks.
    """
    from trainyard.core import storage
    from trainyard.data import predictions
    from trainyard.data.snapshots import open_snapshot

    day = snapshot.window_end
    uri = predictions.batch_uri(settings, spec.name, day, champion.version)
    written = False
    rows = snapshot.rows
    if storage.exists(settings, uri):
        log.info("%s: %s exists; not rewritten", day, uri)
    else:
        with (
            open_snapshot(settings, snapshot.uri, snapshot.sha256) as file,
            tempfile.TemporaryDirectory(prefix="trainyard-scores-") as directory,
        ):
            problem = feature_problem(spec, model, file.header())
            if problem:
                raise ScoringInputError(
                    f"cannot score {spec.name} {day} with {champion.model_name} "
                    f"v{champion.version}: {problem}"
                )
            path = Path(directory) / "predictions.parquet"
            rows = score_file(spec, model, file, champion, run_id, scored_at, path)
            storage.put_file(settings, uri, path, "application/vnd.apache.parquet")
        written = True
    manifest = predictions.read_manifest(settings, spec.name, day)
    moved = manifest is None or manifest.current_uri != uri
    if moved:
        predictions.write_manifest(
            settings,
            predictions.BatchManifest(
                pipeline=spec.name,
                day=day,
                current_uri=uri,
                model_version=champion.version,
                run_id=run_id,
                rows=rows,
            ),
        )
    return ScoredDay(day=day, uri=uri, rows=rows, written=written, manifest_moved=moved)


#: Rows predicted at once: the model's intermediate arrays (imputed, scaled, one-hot encoded
#: features; probabilities) stay this size, whatever the batch's.
PREDICT_ROWS = 262_144


def score_file(
    spec: PipelineSpec,
    model: Any,
    snapshot: SnapshotFile,
    champion: ChampionRef,
    run_id: str,
    scored_at: datetime,
    path: Path,
    rows: int = PREDICT_ROWS,
) -> int:
    """Score a downloaded snapshot into a local Parquet file, piece by piece.

    Only the id column and the features the champion needs are read, ``rows`` rows at a time:
    memory holds one piece of those columns and its predictions, not the whole batch.

    Args:
        spec: Features and the id column.
        model: The champion's fitted pipeline.
        snapshot: The day's snapshot file.
        champion: Which version this is.
        run_id: The scoring run.
        scored_at: When (one timestamp for the run).
        path: The Parquet file to write.
        rows: Rows per piece.

    Returns:
        The number of rows written.
    """
    columns = [spec.schema_.id_column, *needed_features(spec, model)]
    pieces = snapshot.batches(columns, rows=rows)
    return write_predictions(
        path, (predict(spec, model, piece, champion, run_id, scored_at) for piece in pieces)
    )


def write_predictions(path: Path, pieces: Iterable[pd.DataFrame]) -> int:
    """Write pieces of prediction-log rows to one Parquet file as they come (zstd, one row
    group per piece): memory holds one piece.

    Returns:
        The number of rows written.

    Raises:
        ValueError: There was no piece (a snapshot is never empty).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer, rows = None, 0
    try:
        for piece in pieces:
            table = pa.Table.from_pandas(
                piece, schema=writer.schema if writer else None, preserve_index=False
            )
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema, compression="zstd")
            writer.write_table(table)
            rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        raise ValueError("no rows to write")
    return rows


def score(
    spec: PipelineSpec,
    settings: Settings,
    champion: ChampionRef,
    snapshots: list[SnapshotRef],
    run_id: str,
    scored_at: datetime,
) -> ScoringRecord:
    """Score every validated day with the champion resolved at the start of the run.

    The model is loaded only when some day still needs scoring.
    """
    from trainyard.core import storage
    from trainyard.data import predictions

    model = None
    days = []
    for snapshot in snapshots:
        day = snapshot.window_end
        if model is None and not storage.exists(
            settings, predictions.batch_uri(settings, spec.name, day, champion.version)
        ):
            model = load_model(champion)
        days.append(score_day(spec, settings, champion, model, snapshot, run_id, scored_at))
    written = sum(d.written for d in days)
    record = ScoringRecord(
        pipeline=spec.name,
        run_id=run_id,
        status="scored",
        message=(
            f"{len(days)} day(s) scored with {champion.model_name} v{champion.version}: "
            f"{written} object(s) written, {len(days) - written} already there"
        ),
        model_name=champion.model_name,
        model_version=champion.version,
        days=days,
    )
    write_record(settings, record)
    return record


def load_model(champion: ChampionRef) -> Any:
    """The champion's fitted scikit-learn pipeline, by exact version."""
    import mlflow

    return mlflow.sklearn.load_model(champion.model_uri)


def record_uri(settings: Settings, pipeline: str, run_id: str) -> str:
    """Where a scoring run's record is kept."""
    return f"s3://{settings.artifacts_bucket}/scoring/{pipeline}/runs/{run_id}.json"


def write_record(settings: Settings, record: ScoringRecord) -> str:
    """Store a scoring run's record under its run id.

    Returns:
        Its URI.
    """
    from trainyard.core import storage

    uri = record_uri(settings, record.pipeline, record.run_id)
    body = json.dumps(record.model_dump(mode="json"), indent=1).encode()
    storage.put_bytes(settings, uri, body, "application/json")
    return uri


def run(
    spec: PipelineSpec,
    settings: Settings,
    run_day: date,
    run_id: str,
    scored_at: datetime,
    window_end: date | None = None,
    days: int | None = None,
) -> ScoringRecord:
    """Every scoring step in one process (the CLI); the DAG runs the same steps as tasks.

    Raises:
        NoChampionError: Nothing to score with.
        trainyard.data.validation.ValidationFailed: A day failed the suite; nothing is written.
    """
    champion = resolve_champion(spec)
    days_to_score = scoring_days(spec, run_day, window_end, days)
    snapshots = [batch(spec, settings, day) for day in days_to_score]
    for snapshot in snapshots:
        validate(spec, settings, snapshot)
    return score(spec, settings, champion, snapshots, run_id, scored_at)
