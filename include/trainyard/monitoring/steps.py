"""Performance monitoring on delayed labels: the champion's realised metrics against its holdout.

For each window whose labels are due (the newest ends ``labels.delay_days`` before the run day),
the logged predictions of the current champion's version (batch and online, read through
:mod:`trainyard.data.predictions`) are joined with the labels by id, and the spec's metrics are
computed on the matched rows. The watched metric is compared with the champion's own holdout
value at registration (its ``metric.<name>`` tag): a window *breaches* when it is worse by more
than ``performance.max_drop`` (relative or absolute). ``consecutive_windows`` breaching windows in
a row are **decay**, which asks for a retrain through the drift monitor's storm protection
(:mod:`trainyard.drift.policy`, one cooldown ledger for both monitors).

A window with fewer than ``min_labelled_rows`` matched rows gives **insufficient labels** and a
window without predictions **no predictions**: no verdict either way. Labels for rows the
champion never scored, and predictions of other versions, are ignored and counted.

The newest window with a verdict also gets Evidently's **prediction drift** (its scores against
the champion's holdout scores) and **target drift** (its labels against the holdout's), with the
classification / regression quality preset (:mod:`trainyard.monitoring.report`): reported, not
acted on. Every check leaves its outputs under a key derived from its inputs::

    s3://<artifacts>/performance/<pipeline>/v<version>/end-<date>/in-<sha16>/summary.json
    s3://<artifacts>/performance/<pipeline>/v<version>/end-<date>/in-<sha16>/report.html

and one MLflow run in ``<pipeline>-monitoring`` (metrics ``realised_<metric>``,
``baseline_<metric>``, ``labelled_rows``, ``prediction_drift_score``, ``target_drift_score``,
``evidently_<metric>``; tags ``model_version``, ``window_end``, ``report_uri``), so realised
performance per model version can be plotted there. :func:`join_window`, :func:`judge_window`,
:func:`evaluate_window`, :func:`drop_of` and :func:`verdict_of` are pure.

Memory is bounded by the labels, not the predictions: the prediction log is read in pieces of
its needed columns (:func:`trainyard.data.predictions.iter_predictions`), each piece joined with
the window's labels (id and label only) and dropped; only the matched rows' label, prediction
and probabilities are kept for the metrics. The labels' ids stay Arrow strings throughout (read
from Parquet, looked up with Arrow's hash join, hashed for the key a slice at a time): no Python
object per label, which used to double the labels' memory at 1M rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from trainyard.core.errors import DeterministicError
from trainyard.core.tracking import NoChampionError
from trainyard.monitoring.report import ShiftSummary

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    import pandas as pd

    from trainyard.core.lineage import RunContext
    from trainyard.core.settings import Settings
    from trainyard.core.spec import PipelineSpec

log = logging.getLogger(__name__)

Verdict = Literal["decay", "no_decay", "insufficient_labels", "no_predictions"]
WindowStatus = Literal["breach", "ok", "insufficient_labels", "no_predictions"]


class BaselineUnavailableError(DeterministicError):
    """The champion carries no holdout value of the watched metric (a ``metric.<name>`` tag)."""


class Baseline(BaseModel):
    """The champion and its holdout metrics at registration."""

    model_config = ConfigDict(frozen=True)

    model_name: str
    version: str
    metrics: dict[str, float]
    #: The MLflow run that trained it (keys its holdout scores).
    run_id: str | None = None


class WindowResult(BaseModel):
    """One window: what was predicted, labelled and matched, and how the champion did."""

    model_config = ConfigDict(frozen=True)

    start: date
    end: date
    status: WindowStatus
    predictions: int
    other_versions: int
    labels: int
    matched: int
    unmatched_labels: int
    metrics: dict[str, float]
    value: float | None = None
    drop: float | None = None


class PerformanceSummary(BaseModel):
    """The JSON summary of one check (and what the CLI prints)."""

    model_config = ConfigDict(frozen=True)

    pipeline: str
    verdict: Verdict
    message: str
    model_name: str
    model_version: str
    metric: str
    baseline: float
    max_drop: float
    drop_kind: str
    min_labelled_rows: int
    consecutive_windows: int
    windows: list[WindowResult]
    summary_uri: str
    report_uri: str | None = None
    #: Prediction and target drift of the newest window (None: see ``shift_note``).
    shift: ShiftSummary | None = None
    shift_note: str | None = None

    @property
    def newest(self) -> WindowResult:
        """The newest window (the one whose labels just came due)."""
        return self.windows[0]

    def describe(self) -> str:
        """Human-readable lines: the verdict, then realised vs registered per window."""
        lines = [
            f"performance of {self.model_name} v{self.model_version}: "
            f"{self.verdict.replace('_', ' ').upper()}",
            f"  {self.message}",
            f"  registered (holdout) {self.metric}: {self.baseline:.4f}; allowed drop "
            f"{self.max_drop:g} ({self.drop_kind})",
        ]
        for window in self.windows:
            realised = f"{window.value:.4f}" if window.value is not None else "n/a"
            drop = f", drop {window.drop:+.2%}" if window.drop is not None else ""
            if window.drop is not None and self.drop_kind == "absolute":
                drop = f", drop {window.drop:+.4f}"
            lines.append(
                f"    {window.start}..{window.end} {window.status:20} realised {self.metric} "
                f"{realised}{drop}; {window.matched} labelled of {window.predictions} "
                f"predictions, {window.unmatched_labels} label(s) for unscored rows ignored"
            )
        lines.append(self.shift.describe() if self.shift else f"  {self.shift_note}")
        lines.append(f"  summary: {self.summary_uri}")
        if self.report_uri:
            lines.append(f"  report : {self.report_uri}")
        return "\n".join(lines)

    def reference_for_xcom(self) -> dict[str, Any]:
        """The small part that travels through XCom (and that the decision reads)."""
        return {
            "pipeline": self.pipeline,
            "verdict": self.verdict,
            "message": self.message,
            "summary_uri": self.summary_uri,
            "report_uri": self.report_uri,
            "metric": self.metric,
            "value": self.newest.value,
            "baseline": self.baseline,
            "window_start": self.windows[-1].start.isoformat(),
            "window_end": self.newest.end.isoformat(),
            "model": f"{self.model_name} v{self.model_version}",
            "prediction_drift": self.shift.prediction.drifted if self.shift else None,
            "target_drift": self.shift.target.drifted if self.shift else None,
        }


# ---- pure parts -----------------------------------------------------------------------------


def _performance(spec: PipelineSpec) -> Any:
    if spec.performance is None or spec.labels is None:
        raise DeterministicError(f"pipeline {spec.name!r} has no performance/labels section")
    return spec.performance


def due_end(spec: PipelineSpec, run_day: date) -> date:
    """The last day whose labels are due on ``run_day``."""
    return run_day - timedelta(days=spec.labels.delay_days)


def monitor_windows(spec: PipelineSpec, newest_end: date) -> list[tuple[date, date]]:
    """The ``consecutive_windows`` windows ending at ``newest_end``, newest first (pure)."""
    performance = _performance(spec)
    length = timedelta(days=performance.window_days)
    windows = []
    for index in range(performance.consecutive_windows):
        end = newest_end - index * length
        windows.append((end - length + timedelta(days=1), end))
    return windows


def drop_of(metric: str, realised: float, baseline: float, kind: str) -> float:
    """How much worse ``realised`` is than ``baseline`` (positive: worse), pure.

    Args:
        metric: Its direction comes from the metric table.
        realised: The value on labelled predictions.
        baseline: The champion's holdout value.
        kind: ``relative`` (a fraction of the baseline) or ``absolute``.
    """
    from trainyard.core.metrics import greater_is_better

    worse = baseline - realised if greater_is_better(metric) else realised - baseline
    if kind == "absolute":
        return worse
    return worse / abs(baseline) if baseline else (float("inf") if worse > 0 else 0.0)


def as_classes(values: Any) -> Any:
    """Class labels in one form (whole numbers as int64, anything else as text), so labels,
    predictions and the ``proba_<class>`` column names compare equal."""
    import pandas as pd

    series = pd.Series(list(values) if not isinstance(values, pd.Series) else values)
    kind = series.dtype.kind
    if kind in "iuf" and not series.isna().any():
        # Numbers already: what their text would parse back to, without a string per row
        # (a million labels as text took ~100 MB).
        if kind != "f" or (series == series.round()).all():
            return series.to_numpy(dtype="int64")
        return series.astype(str).to_numpy(dtype=object)
    numbers = pd.to_numeric(series.astype(str), errors="coerce")
    if numbers.notna().all() and (numbers == numbers.round()).all():
        return numbers.astype("int64").to_numpy()
    return series.astype(str).to_numpy(dtype=object)


def realised_metrics(spec: PipelineSpec, joined: pd.DataFrame) -> dict[str, float]:
    """The spec's metrics on matched rows (``label`` joined to the prediction log), pure.

    A metric that cannot be computed on these rows (probabilities missing for some rows, one
    class only for roc_auc) is left out.
    """
    import numpy as np

    from trainyard.core.metrics import METRICS, Scored
    from trainyard.data.predictions import PROBA_PREFIX

    proba = [c for c in joined.columns if c.startswith(PROBA_PREFIX)]
    classification = spec.model.task == "classification"
    if classification:
        y_true, y_pred = as_classes(joined["label"]), as_classes(joined["prediction"])
        matrix = joined[proba].to_numpy(dtype="float64") if proba else None
        probabilities = matrix if matrix is not None and not np.isnan(matrix).any() else None
        classes = list(as_classes([c[len(PROBA_PREFIX) :] for c in proba]))
    else:
        y_true = joined["label"].astype("float64")
        y_pred = joined["prediction"].astype("float64")
        probabilities, classes = None, None
    scored = Scored(y_true=y_true, y_pred=y_pred, probabilities=probabilities, classes=classes)
    values = {}
    for name in spec.metrics:
        metric = METRICS[name]
        if metric.needs_probabilities and probabilities is None:
            continue
        try:
            value = float(metric.compute(scored))
        except ValueError as error:
            log.info("%s not computed on this window: %s", name, error)
            continue
        if math.isnan(value):  # e.g. roc_auc when the window holds one class
            log.info("%s is undefined on this window", name)
            continue
        values[name] = value
    return values


#: Columns of the prediction log the monitor reads (and every ``proba_<class>``).
JOIN_COLUMNS = ["row_id", "prediction", "model_version"]


@dataclass
class WindowJoin:
    """A window's predictions joined with its labels, and what did not join.

    Attributes:
        predictions: Rows predicted by the champion's version.
        other_versions: Rows predicted by other versions (ignored).
        labels: Labelled rows.
        unmatched_labels: Labels for rows the champion never scored (ignored).
        joined: The matched rows: ``label``, ``prediction`` and the ``proba_<class>`` columns.
    """

    predictions: int
    other_versions: int
    labels: int
    unmatched_labels: int
    joined: pd.DataFrame


def arrow_ids(ids: pd.Series) -> Any:
    """Ids as one Arrow ``large_string`` array (what ``string[pyarrow]`` holds), without a
    Python object per id when they are already Arrow strings (pure)."""
    import pyarrow as pa

    array = pa.array(ids, from_pandas=True)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return array.cast(pa.large_string())


def join_window(
    baseline: Baseline, pieces: Iterable[pd.DataFrame], labels: pd.DataFrame
) -> WindowJoin:
    """Join a window's predictions, piece by piece, with its labels by id (pure).

    Only one piece of predictions is in memory at a time besides the labels (id and label) and
    the matched rows' label, prediction and probabilities, so a window of any size joins in
    bounded memory. The result is an inner join in prediction order (a row predicted twice
    joins twice), as ``merge`` would give.

    Args:
        baseline: The champion: only its version's predictions count.
        pieces: The window's prediction log (any version, batch and online), in pieces with
            ``row_id``, ``prediction``, ``model_version`` and ``proba_<class>`` columns.
        labels: ``row_id`` (unique) and ``label`` of the window's labelled rows.

    Returns:
        The counts and the matched rows.
    """
    import numpy as np
    import pandas as pd
    import pyarrow.compute as pc

    from trainyard.data.predictions import PROBA_PREFIX

    # Arrow's hash lookup on the ids' own buffers: a pandas Index of string ids would first
    # turn every label's id into a Python object (~100 bytes each, twice the labels' size).
    ids = arrow_ids(labels["row_id"])
    values = labels["label"].reset_index(drop=True)
    scored = np.zeros(len(ids), dtype=bool)
    ours_rows = other_rows = 0
    parts = []
    for piece in pieces:
        ours = piece[piece["model_version"].astype(str) == baseline.version]
        ours_rows += len(ours)
        other_rows += len(piece) - len(ours)
        lookup = pc.index_in(arrow_ids(ours["row_id"]), value_set=ids)
        positions = lookup.fill_null(-1).to_numpy(zero_copy_only=False)
        hit = positions >= 0
        scored[positions[hit]] = True
        keep = ["prediction", *(c for c in ours.columns if c.startswith(PROBA_PREFIX))]
        part = ours.loc[hit, keep].reset_index(drop=True)
        parts.append(part.assign(label=values.take(positions[hit]).reset_index(drop=True)))
    parts = [part for part in parts if len(part)] or parts[:1]
    joined = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame({"prediction": [], "label": []})
    )
    return WindowJoin(
        predictions=ours_rows,
        other_versions=other_rows,
        labels=len(ids),
        unmatched_labels=int((~scored).sum()),
        joined=joined,
    )


def judge_window(
    spec: PipelineSpec, baseline: Baseline, window: tuple[date, date], join: WindowJoin
) -> WindowResult:
    """A joined window's realised metrics and status (pure).

    Args:
        spec: Metric, allowed drop, minimum labelled rows.
        baseline: The champion's holdout metrics.
        window: First and last day.
        join: The window's predictions joined with its labels.

    Returns:
        The window's counts, realised metrics and status.
    """
    performance = _performance(spec)
    counts = {
        "start": window[0],
        "end": window[1],
        "predictions": join.predictions,
        "other_versions": join.other_versions,
        "labels": join.labels,
        "matched": len(join.joined),
        "unmatched_labels": join.unmatched_labels,
    }
    if not join.predictions:
        return WindowResult(status="no_predictions", metrics={}, **counts)
    if len(join.joined) < performance.min_labelled_rows:
        return WindowResult(status="insufficient_labels", metrics={}, **counts)
    metrics = realised_metrics(spec, join.joined)
    value = metrics.get(performance.metric)
    if value is None:
        return WindowResult(status="insufficient_labels", metrics=metrics, **counts)
    drop = drop_of(
        performance.metric, value, baseline.metrics[performance.metric], performance.drop
    )
    status = "breach" if drop > performance.max_drop else "ok"
    return WindowResult(status=status, metrics=metrics, value=value, drop=drop, **counts)


def evaluate_window(
    spec: PipelineSpec,
    baseline: Baseline,
    window: tuple[date, date],
    predictions: pd.DataFrame,
    labels: pd.DataFrame,
) -> WindowResult:
    """Join one window's predictions (a frame) and labels by id and judge it (pure).

    Args:
        spec: Metric, allowed drop, minimum labelled rows.
        baseline: The champion (only its version's predictions count) and its holdout metrics.
        window: First and last day.
        predictions: The window's prediction log (any version, batch and online).
        labels: ``row_id`` and ``label`` of the window's labelled rows.

    Returns:
        The window's counts, realised metrics and status.
    """
    return judge_window(spec, baseline, window, join_window(baseline, [predictions], labels))


def verdict_of(spec: PipelineSpec, windows: list[WindowResult]) -> tuple[Verdict, str]:
    """The check's verdict from its windows, newest first (pure).

    Decay needs every one of the ``consecutive_windows`` windows to breach. The newest window
    without predictions or with too few labels gives no verdict.
    """
    performance = _performance(spec)
    newest = windows[0]
    span = f"{windows[-1].start}..{newest.end}"
    if newest.status == "no_predictions":
        return "no_predictions", (
            f"no predictions of the champion for {newest.start}..{newest.end}: no verdict"
        )
    if newest.status == "insufficient_labels":
        return "insufficient_labels", (
            f"insufficient labels for {newest.start}..{newest.end}: {newest.matched} labelled "
            f"prediction(s) < {performance.min_labelled_rows}: no verdict"
        )
    breached = [w for w in windows if w.status == "breach"]
    allowed = f"{performance.max_drop:g} {performance.drop}"
    if len(breached) == len(windows):
        values = ", ".join(f"{w.value:.4f}" for w in reversed(windows))
        return "decay", (
            f"decay: {performance.metric} {values} in {len(windows)} consecutive window(s) "
            f"{span}, each worse than the allowed drop ({allowed}) from the holdout value"
        )
    return "no_decay", (
        f"no decay: {len(breached)} of {len(windows)} window(s) in {span} breach the allowed "
        f"drop ({allowed}) of {performance.metric}"
    )


def decay_conf(summary: PerformanceSummary) -> dict[str, Any]:
    """The retrain's conf: the reason (metric, values, baseline, window, summary) and its window.

    The training window ends on the last labelled day, so the retrained model learns from the
    outcomes that showed the decay.
    """
    newest = summary.newest
    reason = (
        f"decay: {summary.metric} {newest.value:.4f} vs holdout {summary.baseline:.4f} "
        f"({-newest.drop:+.2%}) of {summary.model_name} v{summary.model_version} in "
        f"{summary.windows[-1].start}..{newest.end} ({summary.consecutive_windows} window(s) "
        f"below the allowed drop {summary.max_drop:g} {summary.drop_kind}); "
        f"report {summary.report_uri or summary.summary_uri}"
    )
    if summary.drop_kind == "absolute":
        reason = reason.replace(f"({-newest.drop:+.2%})", f"({-newest.drop:+.4f})")
    return {
        "reason": reason,
        "performance_summary_uri": summary.summary_uri,
        "window_end": newest.end.isoformat(),
    }


# ---- I/O ------------------------------------------------------------------------------------


def champion_baseline(spec: PipelineSpec) -> Baseline:
    """The champion and its holdout metrics (``metric.<name>`` tags set at registration).

    Raises:
        NoChampionError: No version holds ``champion``.
        BaselineUnavailableError: It lacks the watched metric's tag.
    """
    from trainyard.core.tracking import champion_version

    performance = _performance(spec)
    name = spec.registered_model_name
    champion = champion_version(name)
    if champion is None:
        raise NoChampionError(
            f"no champion of model {name!r} yet: no realised performance to check "
            f"(train {spec.training_dag_id} first)"
        )
    tags = champion.tags or {}
    metrics = {
        key[len("metric.") :]: float(value)
        for key, value in tags.items()
        if key.startswith("metric.")
    }
    if performance.metric not in metrics:
        raise BaselineUnavailableError(
            f"champion {name} v{champion.version} has no metric.{performance.metric} tag: its "
            "holdout value is unknown; retrain it through trainyard to fix this"
        )
    return Baseline(
        model_name=name, version=str(champion.version), metrics=metrics, run_id=champion.run_id
    )


def read_labels(spec: PipelineSpec, settings: Settings, days: list[date]) -> pd.DataFrame:
    """``row_id`` and ``label`` of the labelled rows of those days (later copies win).

    Labels are the source's own partitions (its layout and format, Parquet or CSV, read through
    :func:`trainyard.data.sources.file_columns`), or Parquet under ``labels.prefix`` with
    ``date=YYYY-MM-DD`` folders. A day whose labels have not landed yet contributes none, and so
    does a file without the id or target column.
    """
    import pandas as pd

    from trainyard.core import storage
    from trainyard.core.spec import FilesSource
    from trainyard.data.sources import file_columns, raw_bucket

    labels, schema = spec.labels, spec.schema_
    bucket = labels.bucket or raw_bucket(spec, settings)
    if labels.prefix:
        source = FilesSource(kind="files", prefix=labels.prefix, partitioning="date=YYYY-MM-DD")
    else:
        source = spec.source
    columns = [schema.id_column, schema.target]
    frames = []
    for day in days:
        folder = f"{source.prefix}/{source.layout.day_folder(day)}"
        for key in storage.list_keys(settings, bucket, folder):
            if not key.endswith(source.suffixes):
                continue
            uri = f"s3://{bucket}/{key}"
            body = storage.get_bytes(settings, uri)
            frames.extend(file_columns(spec, source, body, uri, columns))
    if not frames:
        return pd.DataFrame({"row_id": pd.Series(dtype="string[pyarrow]"), "label": pd.Series()})
    frame = pd.concat(frames, ignore_index=True)
    frame = frame[frame[schema.target].notna()]
    ids = frame[schema.id_column]
    if not isinstance(ids.dtype, pd.StringDtype):
        ids = ids.astype(str)  # numbers as their text, as the prediction log writes them
    return (
        pd.DataFrame({"row_id": ids.astype("string[pyarrow]"), "label": frame[schema.target]})
        .drop_duplicates("row_id", keep="last")
        .reset_index(drop=True)
    )  # fmt: skip


def _inputs_digest(spec: PipelineSpec, baseline: Baseline) -> Any:
    """The start of a check's identity: settings, the champion and what shapes the drift report
    (Evidently's version, the sample size); each window's data is added as it is read."""
    from trainyard.drift.evidently import evidently_version
    from trainyard.monitoring.report import REPORT_SAMPLE_ROWS

    digest = hashlib.sha256()
    digest.update(json.dumps(spec.performance.model_dump(mode="json"), sort_keys=True).encode())
    digest.update(baseline.model_dump_json().encode())
    digest.update(f"evidently {evidently_version()} sample {REPORT_SAMPLE_ROWS}".encode())
    return digest


def _hash_rows(digest: Any, frame: pd.DataFrame) -> None:
    """Add each row's hash (of its values as text) to ``digest``, a slice at a time: the text
    of a whole window's labels would be a Python object per value; the digest is the same."""
    import pandas as pd

    from trainyard.data.predictions import PIECE_ROWS

    for start in range(0, len(frame), PIECE_ROWS):
        piece = frame.iloc[start : start + PIECE_ROWS].astype(str)
        digest.update(pd.util.hash_pandas_object(piece, index=False).to_numpy().tobytes())


def _hashed(digest: Any, pieces: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """The pieces, each added to ``digest`` (its ids and versions) as it passes."""
    for piece in pieces:
        _hash_rows(digest, piece[["row_id", "model_version"]])
        yield piece


def prediction_target_drift(
    spec: PipelineSpec,
    settings: Settings,
    baseline: Baseline,
    newest: WindowResult,
    joined: pd.DataFrame,
) -> tuple[ShiftSummary | None, str | None, Any]:
    """Evidently's prediction and target drift of the newest window against the holdout scores.

    Returns:
        The drift summary, or None with the reason there is none (no verdict on the window,
        no holdout scores kept for the champion); and Evidently's snapshot, for the HTML.
    """
    from trainyard.core import storage
    from trainyard.data.predictions import holdout_scores_uri
    from trainyard.drift.evidently import UnreadableReportError
    from trainyard.monitoring.report import run_report

    if newest.status not in ("ok", "breach"):
        why = newest.status.replace("_", " ")
        return None, f"no prediction/target drift report: {why} in the newest window", None
    uri = baseline.run_id and holdout_scores_uri(settings, spec.name, baseline.run_id)
    if not uri or not storage.exists(settings, uri):
        return (
            None,
            (
                f"no prediction/target drift report: {baseline.model_name} v{baseline.version} has "
                "no holdout scores (trained before trainyard kept them; a retrain keeps them)"
            ),
            None,
        )
    try:
        shift, snapshot = run_report(spec, storage.read_parquet(settings, uri), joined)
    except (UnreadableReportError, ValueError) as error:
        # The report only informs; it must not hold back the decay verdict.
        log.warning("prediction/target drift report failed: %s", error)
        return None, f"no prediction/target drift report: Evidently failed ({error})", None
    return shift, None, snapshot


def check_performance(
    spec: PipelineSpec, settings: Settings, baseline: Baseline, newest_end: date
) -> PerformanceSummary:
    """Evaluate the windows ending at ``newest_end``; store the summary and report on S3.

    The same inputs (settings, champion, predictions and labels) give the same keys; a stored
    summary is reused.
    """
    import tempfile
    from pathlib import Path

    from trainyard.core import storage
    from trainyard.data.predictions import iter_predictions

    performance = _performance(spec)
    digest = _inputs_digest(spec, baseline)
    results, newest_joined = [], None
    for start, end in monitor_windows(spec, newest_end):
        days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
        labels = read_labels(spec, settings, days)
        pieces = iter_predictions(settings, spec.name, days, JOIN_COLUMNS)
        join = join_window(baseline, _hashed(digest, pieces), labels)
        _hash_rows(digest, labels)
        del labels
        results.append(judge_window(spec, baseline, (start, end), join))
        if newest_joined is None:
            newest_joined = join.joined
    verdict, message = verdict_of(spec, results)
    sha = digest.hexdigest()
    prefix = (
        f"s3://{settings.artifacts_bucket}/performance/{spec.name}/v{baseline.version}/"
        f"end-{newest_end}/in-{sha[:16]}"
    )
    uri = f"{prefix}/summary.json"
    if storage.exists(settings, uri):
        log.info("this check was done before; reusing %s", uri)
        return PerformanceSummary.model_validate_json(storage.get_bytes(settings, uri))
    shift, shift_note, snapshot = prediction_target_drift(
        spec, settings, baseline, results[0], newest_joined
    )
    report_uri = None
    if snapshot is not None:
        report_uri = f"{prefix}/report.html"
        with tempfile.TemporaryDirectory(prefix="trainyard-performance-") as workdir:
            html = Path(workdir) / "report.html"
            snapshot.save_html(str(html))
            storage.put_bytes(settings, report_uri, html.read_bytes(), "text/html; charset=utf-8")
    summary = PerformanceSummary(
        pipeline=spec.name,
        verdict=verdict,
        message=message,
        model_name=baseline.model_name,
        model_version=baseline.version,
        metric=performance.metric,
        baseline=baseline.metrics[performance.metric],
        max_drop=performance.max_drop,
        drop_kind=performance.drop,
        min_labelled_rows=performance.min_labelled_rows,
        consecutive_windows=performance.consecutive_windows,
        windows=results,
        summary_uri=uri,
        report_uri=report_uri,
        shift=shift,
        shift_note=shift_note,
    )
    # Written last: its presence marks the check as complete.
    storage.put_bytes(settings, uri, summary.model_dump_json(indent=1).encode(), "application/json")
    return summary


def log_check(
    spec: PipelineSpec, settings: Settings, summary: PerformanceSummary, context: RunContext
) -> str:
    """Log the check to ``<pipeline>-monitoring``: realised and registered metrics per window,
    prediction and target drift, the summary and the HTML report.

    Idempotent: a finished MLflow run of the same Airflow (or CLI) run and summary is reused.

    Returns:
        The MLflow run id.
    """
    from trainyard.core.tracking import log_check_files, log_monitoring_run

    newest = summary.newest
    tags = {
        "pipeline": spec.name,
        **context.identity(),
        "git_commit": context.git_commit,
        "monitor": "performance",
        "verdict": summary.verdict,
        "model_version": summary.model_version,
        "window_start": newest.start.isoformat(),
        "window_end": newest.end.isoformat(),
        "summary_uri": summary.summary_uri,
    }
    if summary.report_uri:
        tags["report_uri"] = summary.report_uri
    metrics = {
        f"baseline_{summary.metric}": summary.baseline,
        "labelled_rows": float(newest.matched),
        "predictions": float(newest.predictions),
        "unmatched_labels": float(newest.unmatched_labels),
        **{f"realised_{name}": value for name, value in newest.metrics.items()},
        **(summary.shift.metrics() if summary.shift else {}),
    }
    if newest.drop is not None:
        metrics[f"drop_{summary.metric}"] = newest.drop
    params = {
        "metric": summary.metric,
        "max_drop": summary.max_drop,
        "drop": summary.drop_kind,
        "min_labelled_rows": summary.min_labelled_rows,
        "consecutive_windows": summary.consecutive_windows,
    }

    return log_monitoring_run(
        spec.monitoring_experiment,
        f"{context.dag_id}/{context.run_id}",
        tags,
        params,
        metrics,
        lambda: log_check_files(
            settings, "performance", summary.model_dump(mode="json"), summary.report_uri
        ),
    )


def latest_check_run(spec: PipelineSpec) -> Any | None:
    """The newest finished performance check in the monitoring experiment (an MLflow run), or
    None when there is none (for the Models page's realised metrics)."""
    from trainyard.core.tracking import newest_finished_runs

    runs = newest_finished_runs(spec.monitoring_experiment, "tags.monitor = 'performance'", 1)
    return runs[0] if runs else None


def run_check(
    spec: PipelineSpec,
    settings: Settings,
    run_day: date,
    context: RunContext,
    window_end: date | None = None,
) -> tuple[PerformanceSummary, str]:
    """Baseline, windows, S3 and MLflow without Airflow (the CLI); the DAG runs the same steps.

    Raises:
        NoChampionError: Nothing to check yet.
    """
    baseline = champion_baseline(spec)
    summary = check_performance(spec, settings, baseline, window_end or due_end(spec, run_day))
    return summary, log_check(spec, settings, summary, context)
