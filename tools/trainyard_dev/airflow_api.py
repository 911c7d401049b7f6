"""A small client for the Airflow 3 REST API v2 (token auth), on the standard library only."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

TERMINAL_STATES = frozenset({"success", "failed"})
#: Extra tries of a read that timed out or could not connect (5, 10, 15 s apart).
READ_RETRIES = 3


class AirflowApiError(RuntimeError):
    """The API answered with an error status; the message has the status and body."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


class AirflowApi:
    """Calls to ``/api/v2`` of one Airflow API server."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._credentials = {"username": username, "password": password}
        self._token: str | None = None

    def _send(self, method: str, path: str, body: Any = None, auth: bool = True) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if auth:
            request.add_header("Authorization", f"Bearer {self.token()}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")
            raise AirflowApiError(error.code, f"{method} {path}: {error.code} {detail}") from None
        return json.loads(raw) if raw else None

    def token(self) -> str:
        """A JWT from ``POST /auth/token`` (cached)."""
        if self._token is None:
            self._token = self._send("POST", "/auth/token", self._credentials, auth=False)[
                "access_token"
            ]
        return self._token

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """An authenticated call; retries once with a fresh token on 401.

        A read (GET) that times out or cannot connect is retried a few times: on a loaded
        host the API server can miss the 30 s timeout while a run it is polled for goes on.
        """
        retries = READ_RETRIES if method == "GET" else 0
        for attempt in range(1, retries + 1):
            try:
                return self._authorized(method, path, body)
            except (TimeoutError, ConnectionError, urllib.error.URLError):
                time.sleep(5 * attempt)
        return self._authorized(method, path, body)

    def _authorized(self, method: str, path: str, body: Any = None) -> Any:
        try:
            return self._send(method, path, body)
        except AirflowApiError as error:
            if error.status != 401:
                raise
            self._token = None
            return self._send(method, path, body)

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> dict:
        """Wait until the dag-processor has parsed and stored a DAG.

        Raises:
            TimeoutError: Listing the current import errors, which usually say why.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                return self.request("GET", f"/api/v2/dags/{dag_id}")
            except AirflowApiError as error:
                if error.status != 404:
                    raise
            time.sleep(2)
        errors = self.request("GET", "/api/v2/importErrors").get("import_errors", [])
        raise TimeoutError(
            f"DAG {dag_id} did not appear within {timeout:.0f} s; import errors: {errors}"
        )

    def set_paused(self, dag_id: str, paused: bool) -> None:
        """Pause or unpause a DAG."""
        self.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": paused})

    def trigger(self, dag_id: str, conf: dict | None = None, run_id: str | None = None) -> dict:
        """Create a manual DAG run; returns the run as the API describes it."""
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}}
        if run_id:
            body["dag_run_id"] = run_id
        return self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)

    def run(self, dag_id: str, run_id: str) -> dict:
        """One DAG run."""
        return self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{_quote(run_id)}")

    def runs(self, dag_id: str) -> list[dict]:
        """All runs of a DAG, oldest first."""
        page = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns?order_by=run_after&limit=100")
        return page["dag_runs"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 1800) -> dict:
        """Poll a run until it succeeds or fails.

        Raises:
            TimeoutError: The run is still going after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.run(dag_id, run_id)
            if run["state"] in TERMINAL_STATES:
                return run
            time.sleep(2)
        raise TimeoutError(f"run {run_id} of {dag_id} not finished after {timeout:.0f} s")

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        """Task id -> state for one run."""
        page = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{_quote(run_id)}/taskInstances")
        return {ti["task_id"]: ti["state"] for ti in page["task_instances"]}

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """A task's XCom value, decoded from JSON where it is a string."""
        entry = self.request(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/{_quote(run_id)}/taskInstances/{task_id}"
            f"/xcomEntries/{key}?deserialize=true&stringify=false",
        )
        value = entry.get("value")
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                return value
        return value


def _quote(run_id: str) -> str:
    return urllib.parse.quote(run_id, safe="")
