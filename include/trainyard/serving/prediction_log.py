"""The online half of the prediction log: buffered in memory, flushed to S3 as Parquet.

Each served row (its id, features, prediction, probabilities, model version, time) is kept in a
buffer and written under ``predictions/<pipeline>/online/date=<serving day>/<flush id>.parquet``
(the layout of :mod:`trainyard.data.predictions`, which the performance monitor reads) every
``flush_seconds``, as soon as ``flush_rows`` rows are waiting, and when the server stops
(uvicorn turns SIGTERM into a graceful shutdown, whose last step is :meth:`PredictionLog.close`).

A failed write (S3 unreachable) keeps its batch, with the same flush id, for the next flush:
serving goes on, and a write that succeeded but whose answer was lost is overwritten, not
duplicated. The backlog is bounded by ``max_backlog_rows``: past it the oldest batches are
dropped and counted (``trainyard_serving_prediction_log_dropped_rows``).

Rows S3 still refuses when the server stops are not lost: :meth:`PredictionLog.close` writes
each unwritten batch to ``spill_dir`` (``<pipeline>/date=<day>/<flush id>.parquet``, written to
a temporary name, synced, then renamed, so a file there is always whole) and counts them
(``..._spilled_rows``). The next server to start on that directory takes them back into its
backlog (``..._recovered_rows``) and uploads them under their original keys, deleting each file
once S3 has it; a file uploaded twice (two servers sharing the directory) lands on the same key.
The spill is bounded like the backlog it comes from.

The log is cheap on the request path: a request only appends a reference to its rows. The
flush, in its own thread, joins the waiting requests column by column (NumPy concatenation,
per model version) and hands them to an encoder process (:class:`Encoder`), which builds the
frame, encodes the Parquet file and puts it on S3. The server's threads share one GIL: building
a 10,000-row frame and its Parquet in process held it for about 40 ms per flush, and the
request answered beside it waited (a 1,000-row request's p99 doubled). A batch keeps its
encoded bytes until S3 has them; an error in the encoder process (or its death) counts as a
failed write, and the batch waits for the next flush like any other.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from collections import deque
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from trainyard.core.settings import Settings
    from trainyard.serving.metrics import ServingMetrics

log = logging.getLogger(__name__)

#: Seconds between retries of a failed write (at most the flush period).
RETRY_SECONDS = 5.0


@dataclass(frozen=True)
class Served:
    """The rows of one answered request, as the log keeps them until a flush."""

    pipeline: str
    model_name: str
    model_version: str
    scored_at: datetime
    row_ids: list[str]
    #: The checked request columns (:class:`trainyard.serving.schema.ParsedRequest`).
    features: dict[str, Any]
    predictions: Any
    probabilities: Any | None
    classes: tuple[Any, ...] | None

    @property
    def rows(self) -> int:
        return len(self.row_ids)


@dataclass(frozen=True)
class VersionRows:
    """The rows one model version answered, joined column by column: what the flush hands to
    the encoder process (plain arrays and lists, cheap to pickle)."""

    model_name: str
    model_version: str
    classes: tuple[Any, ...] | None
    row_ids: list[str]
    predictions: Any
    #: Rows x classes, or None when a request of this version had no probabilities.
    probabilities: Any | None
    #: When each request was answered, and how many rows it had.
    scored_at: list[datetime]
    request_rows: list[int]
    features: dict[str, Any]

    @property
    def rows(self) -> int:
        return len(self.row_ids)


@dataclass(eq=False)
class Batch:
    """Rows cut from the buffer for one file: one pipeline, one serving day, one flush id."""

    pipeline: str
    day: date
    flush_id: str
    rows: int
    #: The rows, until the encoder process has made them into :attr:`body`.
    parts: list[VersionRows] | None = None
    #: The Parquet file, kept (with the flush id) until S3 has it.
    body: bytes | None = None
    #: The local file holding this batch since a shutdown (deleted once S3 has it).
    spill_path: Path | None = None


def spill_file(spill_dir: Path, pipeline: str, day: date, flush_id: str) -> Path:
    """Where an unwritten batch waits on local disk for the next start."""
    return spill_dir / pipeline / f"date={day:%Y-%m-%d}" / f"{flush_id}.parquet"


def join_by_version(served: list[Served]) -> list[VersionRows]:
    """Some answered requests joined column by column, one part per model version (pure).

    Args:
        served: Requests of one pipeline, in the order they were answered.

    Returns:
        One :class:`VersionRows` per (model, version, classes), in order of first appearance.
    """
    import numpy as np

    from trainyard.serving.schema import join_columns

    by_version: dict[tuple[str, str, tuple[Any, ...] | None], list[Served]] = {}
    for item in served:
        by_version.setdefault((item.model_name, item.model_version, item.classes), []).append(item)
    parts = []
    for (model_name, model_version, classes), items in by_version.items():
        with_probabilities = classes is not None and all(
            item.probabilities is not None for item in items
        )
        parts.append(
            VersionRows(
                model_name=model_name,
                model_version=model_version,
                classes=classes,
                row_ids=[row_id for item in items for row_id in item.row_ids],
                predictions=np.concatenate([np.asarray(item.predictions) for item in items]),
                probabilities=np.concatenate([np.asarray(item.probabilities) for item in items])
                if with_probabilities
                else None,
                scored_at=[item.scored_at for item in items],
                request_rows=[item.rows for item in items],
                features=join_columns([item.features for item in items]),
            )
        )
    return parts


def log_frame(parts: list[VersionRows], instance_id: str) -> pd.DataFrame:
    """The prediction-log rows of some answered requests (pure).

    Args:
        parts: Requests of one pipeline, joined by :func:`join_by_version`.
        instance_id: This server instance (the ``run_id`` column of online rows).

    Returns:
        :func:`trainyard.data.predictions.prediction_frame`'s columns, then the features.
    """
    import pandas as pd

    from trainyard.data.predictions import prediction_frame

    frames = []
    for part in parts:
        frame = prediction_frame(
            part.row_ids,
            part.predictions,
            part.probabilities,
            part.classes,
            model_name=part.model_name,
            model_version=part.model_version,
            run_id=instance_id,
            source="online",
            scored_at=pd.to_datetime(part.scored_at, utc=True).repeat(part.request_rows),
        )
        features = pd.DataFrame(part.features)
        frames.append(
            pd.concat([frame, features.drop(columns=frame.columns, errors="ignore")], axis=1)
        )
    return pd.concat(frames, ignore_index=True)


def encode_batch(parts: list[VersionRows], instance_id: str) -> bytes:
    """The Parquet file of some joined requests (run in the encoder process)."""
    from trainyard.core import storage

    return storage.parquet_bytes(log_frame(parts, instance_id))


class EncoderError(RuntimeError):
    """What went wrong in the encoder process, in one line (its own exception may not pickle)."""


def _in_encoder(function: Any, *args: Any) -> Any:
    """Run ``function(*args)`` in the encoder process; an error comes back as one line."""
    try:
        return function(*args)
    except Exception as error:
        reason = str(error).splitlines()[0] if str(error) else ""
        raise EncoderError(f"{type(error).__name__}: {reason}") from None


def _prepare_encoder() -> None:
    """Start-up of the encoder process: import what it will use, before the first flush."""
    import boto3  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401


class Encoder:
    """One child process that encodes batches and puts them on S3, off the server's GIL.

    Started (spawned, not forked: the server runs threads) by :meth:`start`. A call that finds
    it dead (killed, or stopped by a Ctrl-C sent to the whole process group) raises, so the
    caller counts a failed write and retries; the next call starts a new process.
    """

    def __init__(self) -> None:
        self._pool: Any = None

    def start(self) -> None:
        """Spawn the process now, so its imports are paid at start and not at the first flush."""
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_prepare_encoder,
            )
            self._pool.submit(int)  # starts the worker and its imports without waiting

    def run(self, function: Any, *args: Any) -> Any:
        """``function(*args)`` in the encoder process; its exception is raised here.

        Raises:
            EncoderError: ``function`` raised (type and first line of its message).
            concurrent.futures.process.BrokenProcessPool: The process died (a new one is
                started for the next call).
        """
        from concurrent.futures.process import BrokenProcessPool

        self.start()
        try:
            return self._pool.submit(_in_encoder, function, *args).result()
        except BrokenProcessPool:
            self.stop()
            raise

    def stop(self) -> None:
        """End the process (after the calls in progress)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class PredictionLog:
    """Buffers served rows and flushes them to S3 in a background thread.

    Args:
        settings: The S3 endpoint and artifacts bucket.
        metrics: Where the backlog, failures and drops are counted.
        instance_id: Names this server's files and fills the ``run_id`` column.
        flush_seconds: Flush at least this often.
        flush_rows: Flush as soon as this many rows wait.
        max_backlog_rows: Most rows kept while S3 does not accept them.
        spill_dir: Where rows S3 refused at shutdown wait for the next start (None: nowhere,
            they are lost and counted as dropped).
    """

    def __init__(
        self,
        settings: Settings,
        metrics: ServingMetrics,
        instance_id: str,
        flush_seconds: float,
        flush_rows: int,
        max_backlog_rows: int,
        spill_dir: Path | None = None,
    ) -> None:
        self.settings = settings
        self.spill_dir = spill_dir
        self.metrics = metrics
        self.instance_id = instance_id
        self.flush_seconds = flush_seconds
        self.flush_rows = flush_rows
        self.max_backlog_rows = max_backlog_rows
        self._buffer: list[Served] = []
        self._buffered_rows = 0
        self._unwritten: deque[Batch] = deque()
        self._sequence = 0
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._encoder = Encoder()

    def record(self, served: Served) -> None:
        """Keep one answered request's rows for the next flush (cheap: no frame is built)."""
        with self._lock:
            self._buffer.append(served)
            self._buffered_rows += served.rows
            if self._buffered_rows >= self.flush_rows:
                self._wake.set()
        self._update_backlog()

    def backlog_rows(self) -> int:
        """Rows not yet written to S3 (buffered or waiting for a retry)."""
        with self._lock:
            return self._buffered_rows + sum(batch.rows for batch in self._unwritten)

    def _update_backlog(self) -> None:
        self.metrics.log_backlog_rows.set(self.backlog_rows())

    def _cut(self) -> None:
        """Move the buffer into batches (one per pipeline and serving day), with flush ids."""
        with self._lock:
            served, self._buffer, self._buffered_rows = self._buffer, [], 0
        groups: dict[tuple[str, date], list[Served]] = {}
        for item in served:
            groups.setdefault((item.pipeline, item.scored_at.astimezone(UTC).date()), []).append(
                item
            )
        batches = []
        for (pipeline, day), items in sorted(groups.items()):
            self._sequence += 1
            flush_id = f"{self.instance_id}-{self._sequence:06d}"
            parts = join_by_version(items)
            rows = sum(part.rows for part in parts)
            batches.append(Batch(pipeline, day, flush_id, rows, parts=parts))
        with self._lock:
            self._unwritten.extend(batches)
            dropped = 0
            while self._unwritten and sum(b.rows for b in self._unwritten) > self.max_backlog_rows:
                oldest = self._unwritten.popleft()
                dropped += oldest.rows
                if oldest.spill_path is not None:
                    oldest.spill_path.unlink(missing_ok=True)
        if dropped:
            log.error("prediction log backlog full: dropped the %d oldest rows", dropped)
            self.metrics.log_dropped_rows.inc(dropped)

    def flush(self) -> int:
        """Write every waiting row to S3, oldest batch first; stop at the first failure.

        Returns:
            The number of rows written.
        """
        from trainyard.core import storage
        from trainyard.data.predictions import online_uri

        written = 0
        with self._flush_lock:
            self._cut()
            while True:
                with self._lock:
                    if not self._unwritten:
                        break
                    batch = self._unwritten[0]
                uri = online_uri(self.settings, batch.pipeline, batch.day, batch.flush_id)
                try:
                    self._encode(batch)
                    self._encoder.run(storage.put_bytes, self.settings, uri, batch.body)
                except Exception as error:  # noqa: BLE001 (S3 down: keep the batch, retry later)
                    log.warning(
                        "prediction log: could not write %s (%s); %d rows wait for the next flush",
                        uri,
                        str(error).splitlines()[0] if str(error) else type(error).__name__,
                        self.backlog_rows(),
                    )
                    self.metrics.log_flush_failures.inc()
                    break
                with self._lock:
                    self._unwritten.popleft()
                if batch.spill_path is not None:
                    batch.spill_path.unlink(missing_ok=True)
                written += batch.rows
                self.metrics.log_written_rows.inc(batch.rows)
        self._update_backlog()
        return written

    def _encode(self, batch: Batch) -> None:
        """Make the batch's Parquet file in the encoder process, once (kept for retries)."""
        if batch.body is None:
            batch.body = self._encoder.run(encode_batch, batch.parts, self.instance_id)
            batch.parts = None

    def start(self) -> None:
        """Start the encoder process, take back rows spilled at the last shutdown, then flush
        every ``flush_seconds`` (or sooner when ``flush_rows`` rows wait) in a background thread.
        """
        self._encoder.start()
        recovered = self._recover()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()
        if recovered:
            self._wake.set()

    def _recover(self) -> int:
        """Queue every spilled batch found in ``spill_dir`` (oldest first); return its rows."""
        import pyarrow.parquet as pq

        if self.spill_dir is None or not self.spill_dir.is_dir():
            return 0
        batches = []
        for path in sorted(self.spill_dir.glob("*/date=*/*.parquet"), key=lambda p: p.name):
            try:
                day = date.fromisoformat(path.parent.name.removeprefix("date="))
                body = path.read_bytes()
                rows = pq.read_metadata(io.BytesIO(body)).num_rows
            except (ValueError, OSError) as error:
                log.error("prediction log: cannot read spilled %s (%s); left in place", path, error)
                continue
            batch = Batch(path.parent.parent.name, day, path.stem, rows, body=body, spill_path=path)
            batches.append(batch)
        if not batches:
            return 0
        rows = sum(batch.rows for batch in batches)
        with self._lock:
            self._unwritten.extendleft(reversed(batches))
        log.info("prediction log: %d rows spilled at a shutdown wait for S3", rows)
        self.metrics.log_recovered_rows.inc(rows)
        self._update_backlog()
        return rows

    def _spill(self) -> int:
        """Write every unwritten batch not already on disk to ``spill_dir``; return its rows."""
        if self.spill_dir is None:
            return 0
        spilled = 0
        with self._lock:
            batches = [batch for batch in self._unwritten if batch.spill_path is None]
        for batch in batches:
            path = spill_file(self.spill_dir, batch.pipeline, batch.day, batch.flush_id)
            partial = path.with_suffix(".partial")
            try:
                self._encode(batch)
            except Exception as error:  # noqa: BLE001 (counted as lost by close)
                log.error("prediction log: cannot encode %d rows to spill: %s", batch.rows, error)
                continue
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with partial.open("wb") as handle:
                    handle.write(batch.body)
                    handle.flush()
                    os.fsync(handle.fileno())
                partial.replace(path)
            except OSError as error:
                log.error("prediction log: cannot spill %d rows to %s: %s", batch.rows, path, error)
                continue
            with self._lock:
                self._unwritten.remove(batch)
            spilled += batch.rows
        if spilled:
            self.metrics.log_spilled_rows.inc(spilled)
        return spilled

    def _run(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                waiting = bool(self._unwritten)
            # After a failed write, retry sooner than a whole period.
            self._wake.wait(
                timeout=min(self.flush_seconds, RETRY_SECONDS) if waiting else self.flush_seconds
            )
            self._wake.clear()
            if not self._stopping.is_set():
                self.flush()

    def close(self) -> int:
        """Stop the flusher and write what is left (graceful shutdown): to S3, or, for what S3
        refuses, to ``spill_dir``.

        Returns:
            Rows neither in S3 nor spilled (lost); 0 when nothing was lost.
        """
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        written = self.flush()
        spilled = self._spill()
        self._encoder.stop()
        with self._lock:
            on_disk = sum(batch.rows for batch in self._unwritten if batch.spill_path is not None)
        left = self.backlog_rows() - on_disk
        log.info("prediction log: wrote %d rows to S3 at shutdown", written)
        if spilled or on_disk:
            log.warning(
                "prediction log: S3 refused %d rows at shutdown; they wait in %s for a restart",
                spilled + on_disk,
                self.spill_dir,
            )
        if left:
            log.error("prediction log: %d rows could not be written to S3 before stopping", left)
            self.metrics.log_dropped_rows.inc(left)
        return left
