"""Dynamic batching: requests waiting for the same model are predicted together.

Most of a one-row prediction is fixed cost (scikit-learn's input checks, a Python call per
tree): predicting 50 waiting rows at once costs about as much as predicting one. So predictions
run in at most ``workers`` threads; a request that finds a thread free is predicted at once,
alone (no added wait: at low rates nothing changes), and requests that arrive while every
thread is busy queue; when a thread frees up, it takes every waiting request of the oldest
one's model (up to ``max_rows`` rows, and at least one request) and predicts them in one call.
Each request gets back exactly its own rows' answers.

Every request is still checked on its own before it queues (signature, 422), and logged on its
own after. If a joined prediction fails, each of its requests is predicted again alone, so one
request's failure is never reported to another.

The other way round, a large request that finds several threads free is cut into parts (at
least ``PART_MIN_ROWS`` rows each) predicted at once, when its model computes each row on its
own and mostly without the GIL (:attr:`ServedModel.parallel_rows`: the compiled transform and
one-pass trees of :mod:`trainyard.serving.compiled`). Each part's rows get the answers they get
in the whole request; the answer joins the parts in order. A 1,000-row HistGradientBoosting
prediction took 3.9 ms in two parts instead of 5.9 ms whole (load 5; OpenMP's own two threads
took 6.7 ms: its 150 per-tree parallel regions each wait for both cores).

All bookkeeping happens on the event loop (no locks); only the predictions run in threads.

Each prediction thread limits the native thread pools it uses (OpenMP, BLAS) to
``native_threads``: the server's parallelism is its prediction threads. Left to OpenMP, one
``HistGradientBoostingClassifier.predict_proba`` of one row started a parallel region over
both cores; on the shared 2-core host (load 11-18) that took 104-119 ms at the median and
3.3-5.4 s at p99, against 10-12 ms and 28-37 ms with one OpenMP thread, same process, same row
(spinning OpenMP workers wait for a core the other threads hold).
"""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trainyard.serving.schema import join_columns, split_columns

#: Fewest rows in each part of a request cut into parts predicted at once: the parts' fixed
#: cost (~0.7 ms of per-tree calls, paid by each part) must stay small against the work halved.
PART_MIN_ROWS = 256

if TYPE_CHECKING:
    from trainyard.serving.models import ServedModel
    from trainyard.serving.schema import ParsedRequest


@dataclass
class _Waiting:
    """One request's checked columns, waiting for a prediction thread."""

    model: ServedModel
    request: ParsedRequest
    answer: asyncio.Future = field(repr=False)


def split_answers(
    predictions: Any, probabilities: Any | None, sizes: list[int]
) -> list[tuple[Any, Any | None]]:
    """Cut a joined prediction back into each request's rows (pure).

    Args:
        predictions: One prediction per row of the joined requests.
        probabilities: The rows' class probabilities, or None.
        sizes: Each request's row count, in joining order.

    Returns:
        Each request's ``(predictions, probabilities)``.
    """
    parts, start = [], 0
    for size in sizes:
        end = start + size
        parts.append(
            (
                predictions[start:end],
                None if probabilities is None else probabilities[start:end],
            )
        )
        start = end
    return parts


class MicroBatcher:
    """Runs predictions in a bounded pool of threads, joining requests that wait.

    Args:
        workers: Predictions running at once.
        max_rows: Most rows joined into one prediction (a larger single request runs alone).
        native_threads: OpenMP / BLAS threads each prediction may use.
    """

    def __init__(self, workers: int, max_rows: int, native_threads: int = 1) -> None:
        self.workers = workers
        self.max_rows = max_rows
        self._pool = ThreadPoolExecutor(
            workers,
            thread_name_prefix="predict",
            initializer=_limit_native_threads,
            initargs=(native_threads,),
        )
        self._waiting: deque[_Waiting] = deque()
        self._free = workers

    async def predict(self, model: ServedModel, request: ParsedRequest) -> tuple[Any, Any | None]:
        """``model``'s predictions and probabilities for ``request`` (maybe joined with others').

        Raises:
            Exception: Whatever the model raised predicting these records alone.
        """
        answer = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(model, request, answer))
        self._dispatch()
        return await answer

    def _take(self) -> list[_Waiting]:
        """The oldest waiting request and every later one of the same model that fits."""
        first = self._waiting.popleft()
        taken, rows, kept = [first], first.request.rows, deque()
        while self._waiting:
            item = self._waiting.popleft()
            if item.model is first.model and rows + item.request.rows <= self.max_rows:
                taken.append(item)
                rows += item.request.rows
            else:
                kept.append(item)
        self._waiting = kept
        return taken

    def _parts(self, taken: list[_Waiting]) -> int:
        """Into how many parts, predicted at once in free threads, to cut what was taken."""
        if len(taken) != 1 or not taken[0].model.parallel_rows:
            return 1
        return max(1, min(self._free, taken[0].request.rows // PART_MIN_ROWS))

    def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while self._free and self._waiting:
            taken = self._take()
            parts = self._parts(taken)
            self._free -= parts
            if parts == 1:
                running = loop.run_in_executor(self._pool, _predict_joined, taken)
            else:
                model, columns = taken[0].model, taken[0].request.columns
                running = asyncio.gather(
                    *(
                        loop.run_in_executor(self._pool, _predict_part, model, part)
                        for part in split_columns(columns, parts)
                    )
                )
            running.add_done_callback(
                lambda done, taken=taken, parts=parts: self._finish(taken, parts, done)
            )

    def _finish(self, taken: list[_Waiting], parts: int, done: asyncio.Future) -> None:
        self._free += parts
        outcomes = done.result() if parts == 1 else [_joined_parts(done.result())]
        for item, outcome in zip(taken, outcomes, strict=True):
            if item.answer.done():  # the client went away
                continue
            if isinstance(outcome, BaseException):
                item.answer.set_exception(outcome)
            else:
                item.answer.set_result(outcome)
        self._dispatch()

    def shutdown(self) -> None:
        """Wait for running predictions, then stop the threads."""
        self._pool.shutdown(wait=True)


def _limit_native_threads(threads: int) -> None:
    """Cap the OpenMP and BLAS pools seen by the calling (prediction) thread."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)


def _predict_part(
    model: ServedModel, columns: dict[str, Any]
) -> tuple[Any, Any | None] | Exception:
    """Predict some rows of one request (in a pool thread); the answer or the error."""
    try:
        return model.predict(columns)
    except Exception as error:  # noqa: BLE001 (handed to the request it belongs to)
        return error


def _joined_parts(
    outcomes: list[tuple[Any, Any | None] | Exception],
) -> tuple[Any, Any | None] | Exception:
    """One request's answer from its parts' (in row order), or the first part's error."""
    import numpy as np

    for outcome in outcomes:
        if isinstance(outcome, Exception):
            return outcome
    predictions = np.concatenate([part[0] for part in outcomes])
    if outcomes[0][1] is None:
        return predictions, None
    return predictions, np.concatenate([part[1] for part in outcomes])


def _predict_joined(taken: list[_Waiting]) -> list[tuple[Any, Any | None] | BaseException]:
    """Predict the taken requests in one call (in a pool thread); each one's answer or error."""
    model = taken[0].model
    if len(taken) == 1:
        try:
            return [model.predict(taken[0].request.columns)]
        except Exception as error:  # noqa: BLE001 (handed to the request that caused it)
            return [error]
    try:
        predictions, probabilities = model.predict(
            join_columns([item.request.columns for item in taken])
        )
    except Exception:  # noqa: BLE001 (find whose rows fail: predict each request alone)
        return [_predict_joined([item])[0] for item in taken]
    return list(split_answers(predictions, probabilities, [item.request.rows for item in taken]))
