"""S3 and MLflow as services that can be down: bounded client retries, and one error naming them.

A step that cannot reach S3 or MLflow fails within seconds to a minute (see
:func:`bound_mlflow_client`, and :mod:`trainyard.core.storage` for S3) with a
:class:`ServiceUnavailableError` naming the service and its address. It is not deterministic:
Airflow retries the task with backoff, and the CLI exits with :data:`EXIT_UNAVAILABLE`.
Libraries are imported inside the functions (botocore, requests and MLflow are heavy or optional
at parse time).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from trainyard.core.errors import ServiceUnavailableError

if TYPE_CHECKING:
    from trainyard.core.settings import Settings

#: Exit code of the CLI when S3 or MLflow is unavailable (retrying later may work).
EXIT_UNAVAILABLE = 3

__all__ = ["EXIT_UNAVAILABLE", "ServiceUnavailableError", "is_transient", "service_errors"]


def bound_mlflow_client(settings: Settings) -> None:
    """Bound MLflow's HTTP retries and timeout unless the environment already sets them.

    MLflow's own defaults (7 retries, backoff factor 2, 120 s timeout) make an unreachable server
    fail only after about four minutes, and a hung one after far longer. MLflow reads these
    variables at each request, so setting them in this process is enough; a deployment that sets
    ``MLFLOW_HTTP_REQUEST_*`` itself keeps its values.

    Args:
        settings: The timeout and retry count (``TRAINYARD_SERVICE_TIMEOUT`` /
            ``TRAINYARD_SERVICE_RETRIES``).
    """
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(settings.service_retries))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(settings.service_timeout_seconds))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")


def unavailable(error: BaseException, settings: Settings) -> ServiceUnavailableError | None:
    """The :class:`ServiceUnavailableError` an exception means, or None if it means something else.

    S3: a connection refused, reset or timed out, or a 5xx answer after the client's retries.
    MLflow: a request that failed at the network level (MLflow wraps it in an ``MlflowException``
    whose cause is a ``requests`` error), or a 5xx answer.

    Args:
        error: Any exception a step raised.
        settings: Where S3 is (for the message).

    Returns:
        The error to raise instead, or None.
    """
    if isinstance(error, ServiceUnavailableError):
        return error
    reason = _s3_failure(error)
    if reason is not None:
        where = settings.s3_endpoint_url or "AWS"
        return ServiceUnavailableError(f"S3 unavailable ({where}): {reason}")
    reason = _mlflow_failure(error)
    if reason is not None:
        import mlflow

        return ServiceUnavailableError(
            f"MLflow unavailable ({mlflow.get_tracking_uri()}): {reason}"
        )
    return None


@contextmanager
def service_errors(settings: Settings) -> Iterator[None]:
    """Bound MLflow's retries; raise an unreachable S3 or MLflow as ServiceUnavailableError.

    Args:
        settings: Timeouts, retries and where S3 is.
    """
    bound_mlflow_client(settings)
    try:
        yield
    except Exception as error:
        translated = unavailable(error, settings)
        if translated is None or translated is error:
            raise
        raise translated from error


def is_transient(error: BaseException) -> bool:
    """Whether an error is S3 or MLflow failing (retry), not the request itself being wrong."""
    return _s3_failure(error) is not None or _mlflow_failure(error) is not None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    return line if len(line) <= 300 else line[:297] + "..."


def _s3_failure(error: BaseException) -> str | None:
    try:
        from botocore.exceptions import ClientError, HTTPClientError
        from botocore.exceptions import ConnectionError as BotoConnectionError
    except ImportError:  # pragma: no cover (boto3 is a runtime dependency)
        return None
    if isinstance(error, BotoConnectionError | HTTPClientError):
        return _first_line(error)
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        if status >= 500:
            return _first_line(error)
    return None


def _mlflow_failure(error: BaseException) -> str | None:
    try:
        import requests
        from mlflow.exceptions import MlflowException, RestException
    except ImportError:  # pragma: no cover (mlflow is a runtime dependency)
        return None
    if isinstance(error, requests.exceptions.RequestException):
        return _first_line(error)
    if not isinstance(error, MlflowException):
        return None
    cause = error.__cause__ or error.__context__
    if isinstance(cause, requests.exceptions.RequestException):
        return _network_reason(cause)
    # A 5xx from the server (its database or artifact store failing), either as MLflow's JSON
    # error or as a bare status after the retries; a client-side MlflowException also defaults to
    # code 500, so the origin is checked.
    from_server = isinstance(error, RestException) or "API request to" in error.message
    if from_server and error.get_http_status_code() >= 500:
        return _first_line(error)
    return None


def _network_reason(cause: BaseException) -> str:
    """The short reason of a ``requests`` failure (refused, timed out), else its first line."""
    import re

    text = str(cause)
    if "timed out" in text.lower():
        bound = re.search(r"\((?:read|connect) timeout=[\d.]+\)", text)
        return "no answer within the timeout" + (f" {bound.group(0)}" if bound else "")
    for marker in ("Connection refused", "Connection reset", "Name or service not known"):
        if marker in text:
            return marker.lower()
    return _first_line(cause)
