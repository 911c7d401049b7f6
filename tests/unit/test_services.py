"""Which errors mean "S3 or MLflow is unavailable", and how the task and CLI edges treat them.

No process and no network: the errors are built as the clients raise them (the fault tests in
tests/integration/test_service_faults.py provoke the real ones).
"""

from __future__ import annotations

import pytest
import requests
from airflow.sdk.exceptions import AirflowFailException
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from mlflow.exceptions import MlflowException, RestException

from tests.support import repo_spec
from trainyard.airflow.common import airflow_failures
from trainyard.core.errors import DeterministicError, ServiceUnavailableError
from trainyard.core.services import bound_mlflow_client, is_transient, unavailable
from trainyard.core.settings import Settings

SETTINGS = Settings(s3_endpoint_url="http://s3.example:8333")


def _mlflow_network_error(cause: Exception) -> MlflowException:
    """What MLflow's ``http_request`` raises when ``requests`` fails."""
    try:
        raise cause
    except Exception as error:
        try:
            raise MlflowException(f"API request to http://m/api failed with exception {error}")
        except MlflowException as wrapped:
            return wrapped


def _client_error(status: int, code: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject"
    )


@pytest.mark.parametrize(
    ("error", "service", "reason"),
    [
        (EndpointConnectionError(endpoint_url="http://s3.example:8333/raw"), "S3", "connect"),
        (ReadTimeoutError(endpoint_url="http://s3.example:8333/raw"), "S3", "Read timeout"),
        (_client_error(503, "SlowDown"), "S3", "SlowDown"),
        (
            _mlflow_network_error(requests.ConnectionError("[Errno 111] Connection refused")),
            "MLflow",
            "connection refused",
        ),
        (
            _mlflow_network_error(requests.ReadTimeout("read timed out")),
            "MLflow",
            "no answer within the timeout",
        ),
        (RestException({"error_code": "INTERNAL_ERROR", "message": "db gone"}), "MLflow", "db"),
    ],
)
def test_network_and_server_errors_mean_unavailable(
    error: Exception, service: str, reason: str
) -> None:
    translated = unavailable(error, SETTINGS)
    assert translated is not None and is_transient(error)
    message = str(translated)
    assert message.startswith(f"{service} unavailable (")
    assert reason in message and "\n" not in message
    if service == "S3":
        assert "(http://s3.example:8333)" in message


@pytest.mark.parametrize(
    "error",
    [
        _client_error(404, "NoSuchKey"),
        _client_error(403, "AccessDenied"),
        # A client-side MlflowException defaults to INTERNAL_ERROR (500) but is no server fault.
        MlflowException("Could not find an 'MLmodel' configuration file"),
        RestException({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such model"}),
        ValueError("a bug"),
    ],
)
def test_other_errors_are_not_unavailability(error: Exception) -> None:
    assert unavailable(error, SETTINGS) is None
    assert not is_transient(error)


def test_airflow_retries_an_unavailable_service_and_fails_bad_input_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://s3.example:8333")
    spec = repo_spec("breast_cancer")
    unavailable_s3 = pytest.raises(ServiceUnavailableError, match=r"^S3 unavailable \(http://s3")
    with unavailable_s3, airflow_failures(spec):
        raise EndpointConnectionError(endpoint_url="http://s3.example:8333/raw")
    with pytest.raises(AirflowFailException, match="bad column"), airflow_failures(spec):
        raise DeterministicError("bad column")


def test_mlflow_retries_are_bounded_unless_the_environment_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("TIMEOUT", "MAX_RETRIES", "BACKOFF_FACTOR"):
        monkeypatch.delenv(f"MLFLOW_HTTP_REQUEST_{name}", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")
    bound_mlflow_client(Settings(service_timeout_seconds=7, service_retries=1))
    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        MLFLOW_HTTP_REQUEST_TIMEOUT,
    )

    assert MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 7
    assert MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 5


def test_s3_client_timeouts_and_attempts_come_from_the_settings() -> None:
    from trainyard.core import storage

    config = storage.client(
        Settings(s3_endpoint_url="http://s3.example:8333", service_timeout_seconds=12)
    ).meta.config
    assert (config.connect_timeout, config.read_timeout) == (5, 12)
    assert config.retries["total_max_attempts"] == 3
