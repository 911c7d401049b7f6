"""The prediction log: one layout for batch scoring and the online server, read by the monitor.

Every prediction the champion makes, in a batch or online, is stored as Parquet under::

    s3://<artifacts>/predictions/<pipeline>/batch/date=YYYY-MM-DD/v<model version>.parquet
    s3://<artifacts>/predictions/<pipeline>/batch/date=YYYY-MM-DD/manifest.json
    s3://<artifacts>/predictions/<pipeline>/online/date=YYYY-MM-DD/<flush id>.parquet

A batch object is deterministic per (pipeline, date, model version); the manifest names the one
that is current for the date (a new champion scoring the same date writes a second object and
moves the manifest). Online files are appended by the server; their date is the serving day.

Each trained model's own predictions on its holdout (``label``, ``prediction``, ``proba_<class>``;
at most :data:`HOLDOUT_SCORES_ROWS` rows) are kept next to them, keyed by its MLflow run, as the
reference of the performance monitor's prediction and target drift::

    s3://<artifacts>/predictions/<pipeline>/holdout/run-<mlflow run id>.parquet

Columns, for both sources (:data:`BASE_COLUMNS` first):

- ``row_id`` (string): the spec's ``id_column`` value, or a generated request id online; the
  performance monitor joins labels to predictions on it;
- ``prediction``: the predicted class or value;
- ``proba_<class>`` (float, classification only): one column per class the model knows;
- ``model_name``, ``model_version`` (string);
- ``scored_at`` (timestamp, UTC);
- ``run_id`` (string): the scoring DAG run, or the server instance;
- ``source`` (string): ``batch`` or ``online``;
- online files also carry the request's feature columns, under their own names.
"""

from __future__ import annotations

import json
from datetime import date
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pandas as pd

    from trainyard.core.settings import Settings

Source = Literal["batch", "online"]
PROBA_PREFIX = "proba_"
#: At most this many holdout rows are kept per model (a seeded sample of larger holdouts).
HOLDOUT_SCORES_ROWS = 50_000
BASE_COLUMNS = (
    "row_id",
    "prediction",
    "model_name",
    "model_version",
    "scored_at",
    "run_id",
    "source",
)


class BatchManifest(BaseModel):
    """Which batch object is current for one (pipeline, date)."""

    model_config = ConfigDict(frozen=True)

    pipeline: str
    day: date
    current_uri: str
    model_version: str
    run_id: str
    rows: int


def prefix(settings: Settings, pipeline: str, source: Source, day: date) -> str:
    """The folder of one day's predictions from one source."""
    return f"s3://{settings.artifacts_bucket}/predictions/{pipeline}/{source}/date={day:%Y-%m-%d}"


def batch_uri(settings: Settings, pipeline: str, day: date, model_version: str) -> str:
    """The deterministic key of one day's batch predictions by one model version."""
    return f"{prefix(settings, pipeline, 'batch', day)}/v{model_version}.parquet"


def manifest_uri(settings: Settings, pipeline: str, day: date) -> str:
    """The manifest naming the current batch object of a day."""
    return f"{prefix(settings, pipeline, 'batch', day)}/manifest.json"


def online_uri(settings: Settings, pipeline: str, day: date, flush_id: str) -> str:
    """One flushed file of online predictions."""
    return f"{prefix(settings, pipeline, 'online', day)}/{flush_id}.parquet"


def holdout_scores_uri(settings: Settings, pipeline: str, mlflow_run_id: str) -> str:
    """The deterministic key of one trained model's holdout scores."""
    return f"s3://{settings.artifacts_bucket}/predictions/{pipeline}/holdout/run-{mlflow_run_id}.parquet"


def proba_column(label: object) -> str:
    """The column holding the probability of one class."""
    return f"{PROBA_PREFIX}{label}"


def prediction_frame(
    row_ids: Any,
    predictions: Any,
    probabilities: Any | None,
    classes: Any | None,
    *,
    model_name: str,
    model_version: str,
    run_id: str,
    source: Source,
    scored_at: Any,
) -> pd.DataFrame:
    """Rows of the prediction log, in the layout above (pure).

    Args:
        row_ids: One id per row (as strings).
        predictions: The model's predictions, one per row.
        probabilities: ``predict_proba`` output (rows x classes), or None for regressors.
        classes: The model's ``classes_`` in column order (with ``probabilities``).
        model_name: The registered model.
        model_version: The version that predicted.
        run_id: The scoring run or server instance.
        source: ``batch`` or ``online``.
        scored_at: When (a UTC timestamp, one for all rows or one per row).

    Returns:
        The frame: :data:`BASE_COLUMNS` then one ``proba_<class>`` column per class.
    """
    import numpy as np
    import pandas as pd

    ids = np.asarray(row_ids, dtype=object)
    # Converting the objects is ~20x faster than through NumPy's fixed-width text; a missing id
    # is still the text "None" (as str() gives), never a null.
    row_id = pd.array(ids, dtype="string")
    if row_id.isna().any():
        row_id = pd.array(ids.astype(str), dtype="string")
    frame = pd.DataFrame(
        {
            "row_id": row_id,
            "prediction": np.asarray(predictions),
            "model_name": model_name,
            "model_version": str(model_version),
            # cache=False: the cache check walks every timestamp in Python (~9 ms per 10,000
            # rows, holding the GIL in the model server's log flush).
            "scored_at": pd.to_datetime(scored_at, utc=True, cache=False),
            "run_id": run_id,
            "source": source,
        }
    )
    if probabilities is not None and classes is not None:
        matrix = np.asarray(probabilities, dtype="float64")
        for index, label in enumerate(classes):
            frame[proba_column(label)] = matrix[:, index]
    return frame


def read_manifest(settings: Settings, pipeline: str, day: date) -> BatchManifest | None:
    """The manifest of a day's batch predictions, or None when the day was never scored."""
    from trainyard.core import storage

    uri = manifest_uri(settings, pipeline, day)
    if not storage.exists(settings, uri):
        return None
    return BatchManifest.model_validate_json(storage.get_bytes(settings, uri))


def write_manifest(settings: Settings, manifest: BatchManifest) -> str:
    """Point a day at its current batch object (written after the object itself)."""
    from trainyard.core import storage

    uri = manifest_uri(settings, manifest.pipeline, manifest.day)
    body = json.dumps(manifest.model_dump(mode="json"), indent=1).encode()
    storage.put_bytes(settings, uri, body, "application/json")
    return uri


#: Rows per piece when logged predictions are read in pieces (:func:`iter_predictions`).
PIECE_ROWS = 262_144


def _logged_uris(settings: Settings, pipeline: str, days: list[date]) -> list[str]:
    """Each day's current batch object and all its online files, in day order."""
    from trainyard.core import storage

    uris = []
    for day in days:
        manifest = read_manifest(settings, pipeline, day)
        if manifest is not None:
            uris.append(manifest.current_uri)
        folder = storage.S3Uri.parse(prefix(settings, pipeline, "online", day))
        for key in storage.list_keys(settings, folder.bucket, folder.key + "/"):
            if key.endswith(".parquet"):
                uris.append(f"s3://{folder.bucket}/{key}")
    return uris


def iter_predictions(
    settings: Settings,
    pipeline: str,
    days: list[date],
    columns: list[str] | None = None,
    rows: int = PIECE_ROWS,
) -> Iterator[pd.DataFrame]:
    """The logged predictions of the given days (as :func:`read_predictions`), in pieces of at
    most ``rows`` rows, reading only some columns: memory holds one object's compressed bytes
    and one piece, whatever the window's size.

    Args:
        settings: Endpoint and buckets.
        pipeline: Whose predictions.
        days: Which days.
        columns: Columns to read (those an object lacks are left out), and every
            ``proba_<class>`` column; None reads every column.
        rows: The most rows per piece.

    Yields:
        Pieces, in the order of the objects (day by day) and of their rows.
    """
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from trainyard.core import storage

    for uri in _logged_uris(settings, pipeline, days):
        parquet = pq.ParquetFile(io.BytesIO(storage.get_bytes(settings, uri)))
        names = parquet.schema_arrow.names
        if columns is not None:
            names = [c for c in names if c in columns or c.startswith(PROBA_PREFIX)]
        metadata = parquet.schema_arrow.metadata
        for batch in parquet.iter_batches(batch_size=rows, columns=names):
            # With the file's pandas metadata, pieces keep the dtypes a whole read gives.
            yield pa.Table.from_batches([batch]).replace_schema_metadata(metadata).to_pandas()


def read_predictions(settings: Settings, pipeline: str, days: list[date]) -> pd.DataFrame:
    """Every logged prediction of the given days: each day's current batch object and all its
    online files (empty frame with :data:`BASE_COLUMNS` when there are none).
    """
    import pandas as pd

    frames = list(iter_predictions(settings, pipeline, days))
    if not frames:
        return pd.DataFrame(columns=list(BASE_COLUMNS))
    return pd.concat(frames, ignore_index=True)
